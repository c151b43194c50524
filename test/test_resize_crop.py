"""--resize crop: crop window and intrinsics, the render of the identity path equals the cropped source,
the published source lines up with the render, and geometry does not depend on the policy."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.ndimage import gaussian_filter
from typer.testing import CliRunner

from geometry.cache import GeometryMeta, save_geometry
from geometry.metrics import psnr
from geometry.synthetic import SyntheticScene, make_geometry, make_source_clip
from geometry.unproject import cover_hw, crop_box, crop_intrinsics, scale_intrinsics
from pipeline.cli import app
from pipeline.render_folder import RenderFolder, load_mask
from pipeline.stages import geometry as geometry_stage
from pipeline.stages.config import GeometrySettings, OutputSettings
from pipeline.stages.render import colour_size, produce_render
from pipeline.stages.source import open_source
from pipeline.video_io import EncodeOptions, VideoInfo, VideoReader, file_sha256, read_video, write_video
from pipeline_inputs import add_video, table, write_traj
from trajectories import PathOptions, load_trajectory
from trajectories.camera_path import CameraPath

IDENTITY = "# the source camera\n0\n0\n0\n"
OUT_W, OUT_H = 64, 48


def _K(fx, fy, cx, cy):
    return torch.tensor([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=torch.float64)


def test_crop_box_and_intrinsics_against_hand_values():
    assert crop_box((72, 120), (48, 64)) == (0, 12, 72, 96)  # wider: columns cropped, exact window
    assert crop_box((51, 67), (480, 832)) == (6, 0, 39, 67)  # taller: rows cropped, 38.65 rounds to 39
    assert crop_box((59, 100), (48, 64)) == (0, 10, 59, 79)  # 78.67 rounds to 79, odd margin's extra pixel right
    assert crop_box((48, 64), (480, 640)) == (0, 0, 48, 64)  # same aspect: nothing cropped
    assert cover_hw((72, 120), (48, 64)) == (48, 80) and cover_hw((51, 67), (480, 832)) == (633, 832)
    K = _K(100.0, 90.0, 59.5, 35.5)
    # Exact window: scale by s = max(48/72, 64/120) = 2/3 so the frame covers 64x48 (80x48), drop 8 px a side.
    s = 2 / 3
    expected = _K(100.0 * s, 90.0 * s, 59.5 * s - 8, 35.5 * s)
    torch.testing.assert_close(crop_intrinsics(K, (72, 120), (48, 64)), expected, rtol=0, atol=1e-12)
    # Rounded window (rows 6..44 of 51, scaled 480/39 in y, 832/67 in x), DA3's convention:
    # x' = x * 832/67, y' = (y - 6) * 480/39.
    K = _K(40.0, 40.0, 33.0, 25.0)
    point = torch.tensor([0.3, -0.2, 1.7], dtype=torch.float64)
    x, y, z = K @ point
    x, y = x / z, y / z
    xo, yo, zo = crop_intrinsics(K, (51, 67), (480, 832)) @ point
    torch.testing.assert_close(torch.stack([xo / zo, yo / zo]),
                               torch.stack([x * 832 / 67, (y - 6) * 480 / 39]))
    torch.testing.assert_close(crop_intrinsics(K, (48, 64), (480, 640)), scale_intrinsics(K, (48, 64), (480, 640)))
    # The renderer reads the whole frame at the crop's pixel density (stretch: at the output size).
    info = VideoInfo(width=199, height=121, fps=8.0, num_frames=9)
    assert colour_size(info, OutputSettings(128, 96, "crop")) == (158, 96)
    assert colour_size(info, OutputSettings(128, 96, "stretch")) == (128, 96)


@pytest.mark.parametrize("source_hw, box", [((51, 67), (3, 0, 45, 67)),  # rows: 44.67 rounds to 45
                                             ((59, 100), (0, 6, 59, 88))])  # columns: 88.5 rounds to even
def test_crop_box_is_the_video_readers_window(tmp_path, source_hw, box):
    """The reader's crop and (full frame cut to crop_box, then resized) agree; a window 1 px off does not."""
    rng = np.random.default_rng(0)
    frame = gaussian_filter(rng.uniform(0, 255, (*source_hw, 3)), sigma=(1.2, 1.2, 0))
    frame = np.clip((frame - frame.mean()) * 4 + 128, 0, 255).astype(np.uint8)
    video = tmp_path / "odd.mp4"
    write_video(video, np.stack([frame, frame]), 8.0, EncodeOptions(crf=0, pix_fmt="yuv444p"))
    full = read_video(video)[0]
    size = (96, 64)
    cropped = read_video(video, size=size, resize="crop")[0].astype(np.float64) / 255

    def cut(y0, x0, h, w):
        img = Image.fromarray(full[y0:y0 + h, x0:x0 + w]).resize(size, Image.Resampling.BICUBIC)
        return np.asarray(img, np.float64) / 255

    y0, x0, h, w = crop_box(source_hw, (64, 96))
    assert (y0, x0, h, w) == box
    same = psnr(cropped, cut(y0, x0, h, w))
    assert same > 35, same
    if h < source_hw[0]:
        assert psnr(cropped, cut(y0 + 1, x0, h, w)) < same - 10
        assert psnr(cropped, cut(y0, x0, h + 1, w)) < same - 8
    else:
        assert psnr(cropped, cut(y0, x0 + 1, h, w)) < same - 10
        assert psnr(cropped, cut(y0, x0, h, w + 1)) < same - 8


@pytest.fixture(scope="module")
def odd_clip(tmp_path_factory):
    """9 frames of the synthetic room at 199x121 (crop to 128x96: columns 19..179, 161.33 rounds to 161) and
    its analytic geometry at another aspect (72x112), as a provided cache."""
    root = tmp_path_factory.mktemp("crop")
    scene = SyntheticScene()
    clip = make_source_clip(scene, 9, 199, 121, 8.0)
    video = root / "room.mp4"
    write_video(video, clip.frames, 8.0, EncodeOptions(crf=0, pix_fmt="yuv444p"))
    cache = make_geometry(scene, clip, depth_hw=(72, 112))
    meta = GeometryMeta(source_video=video.name, video_sha256=file_sha256(video), fps=8.0, frame_count=9, producer="test")
    geometry = root / "room.npz"
    save_geometry(geometry, dataclasses.replace(cache, meta=meta))
    return dict(root=root, clip=clip, video=video, geometry=geometry, traj=write_traj(root / "identity.txt", IDENTITY))


def test_identity_render_with_crop_is_the_cropped_source(odd_clip):
    clip, video = odd_clip["clip"], odd_clip["video"]
    width, height = 2 * OUT_W, 2 * OUT_H
    assert crop_box((121, 199), (height, width)) == (0, 19, 121, 161)
    source = open_source(video)
    spec = load_trajectory(odd_clip["traj"])
    options = PathOptions(adaptive_frames=False, n_frames=3)
    renders = {}
    for policy in ("crop", "stretch"):
        out = odd_clip["root"] / policy
        produce_render(out, source, odd_clip["geometry"], spec, options, OutputSettings(width, height, policy), "cpu")
        assert sorted(p.name for p in out.iterdir()) == sorted(RenderFolder.OUTPUTS)  # the streamed cache's scratch is gone
        renders[policy] = (read_video(out / "render.mp4")[0].astype(np.float64) / 255, load_mask(out / "mask.npz")[0],
                           CameraPath.load(out / "cameras.json"))

    fx, fy, cx, cy = clip.K[0, 0], clip.K[1, 1], clip.K[0, 2], clip.K[1, 2]
    sx, sy = width / 161, height / 121
    expected = np.array([[fx * sx, 0, (cx - 19) * sx], [0, fy * sy, cy * sy], [0, 0, 1]])
    render, mask, path = renders["crop"]
    np.testing.assert_allclose(path.intrinsics, np.broadcast_to(expected, (3, 3, 3)), rtol=0, atol=1e-9)
    assert (path.width, path.height) == (width, height)

    with VideoReader(video, size=(width, height), resize="crop") as r:
        cropped = r[0].astype(np.float64) / 255
    with VideoReader(video, size=(width, height)) as r:
        stretched = r[0].astype(np.float64) / 255
    assert mask.mean() > 0.98
    assert psnr(render, cropped, mask) > 30, psnr(render, cropped, mask)
    assert psnr(render, stretched, mask) < psnr(render, cropped, mask) - 8
    assert psnr(renders["stretch"][0], stretched, renders["stretch"][1]) > 30  # the stretch path is unchanged


def test_pipeline_crop_lines_up_source_and_render_and_reuses_geometry(tmp_path):
    inp = tmp_path / "in"
    add_video(inp, "a", n_frames=9, size=(192, 96))  # 2:1 source, 4:3 output: columns 32..159
    width, height = 2 * OUT_W, 2 * OUT_H
    traj = write_traj(tmp_path / "identity.txt", IDENTITY)
    out = tmp_path / "out"

    def run(policy: str):
        return CliRunner().invoke(app, [
            "run", "--input_dir", str(inp), "--traj_txt_path", str(traj), "--output_folder", str(out),
            "--checkpoints_dir", str(tmp_path / "no-weights"), "--caption", "A synthetic room.",
            "--width", str(width), "--height", str(height), "--disable_adaptive_frame", "--resize", policy])

    crop = run("crop")
    assert crop.exit_code == 3, crop.output  # generation weights are missing here
    assert table(crop.output)["a.mp4"] == ["ran", "ran", "ran", "missing weights"]
    published = read_video(out / "a" / "source.mp4").astype(np.float64) / 255
    render = read_video(out / "a" / "render.mp4").astype(np.float64) / 255
    preview = read_video(out / "a" / "preview.mp4")
    mask = read_video(out / "a" / "mask.mp4")[..., 0] > 127
    reference = read_video(inp / "a.mp4", size=(width, height), resize="crop").astype(np.float64) / 255
    assert published.shape == render.shape == (9, height, width, 3) and preview.shape == (9, height, 3 * width, 3)
    assert psnr(published, reference) > 35
    assert mask.mean() > 0.9
    assert min(psnr(published[i], render[i], mask[i]) for i in range(9)) > 28
    K = np.array(json.loads((out / "a" / "cameras.json").read_text())["frames"][0]["K"])
    assert K[0, 2] == pytest.approx(95.5 - 32)  # centre of a 192x96 frame, cut at column 32, not scaled

    stretch = run("stretch")
    assert table(stretch.output)["a.mp4"] == ["reused", "reused", "ran", "missing weights"], stretch.output
    assert psnr(read_video(out / "a" / "source.mp4").astype(np.float64) / 255, reference) < 25


def test_da3_geometry_reads_the_whole_frame_whatever_the_policy(monkeypatch, tmp_path):
    video = add_video(tmp_path, "tall", n_frames=9, size=(48, 64), geometry=False)
    source = open_source(video)
    keys = [geometry_stage.geometry_key(source, None, tmp_path / "DA3", OutputSettings(OUT_W, OUT_H, p),
                                        GeometrySettings()) for p in ("stretch", "crop")]
    assert keys[0] == keys[1]
    seen = []

    class Stop(Exception):
        pass

    def fake_estimate(frames, *args, **kwargs):
        seen.append(np.asarray(frames[0]))
        raise Stop

    monkeypatch.setattr("geometry.da3.estimate_geometry", fake_estimate)
    for policy in ("stretch", "crop"):
        with pytest.raises(Stop):
            geometry_stage.estimate(tmp_path / "g", None, source, OutputSettings(OUT_W, OUT_H, policy), GeometrySettings())
    # A 48x64 portrait frame covering 64x48: 64x85, aspect kept, nothing cropped.
    assert seen[0].shape == seen[1].shape == (85, 64, 3)
    np.testing.assert_array_equal(seen[0], seen[1])
    whole = read_video(video, size=(64, 85))[0]
    np.testing.assert_array_equal(seen[0], whole)
