"""Photos, photo sets, InSpatio-World 1.5 scene folders and matrix trajectories through the pipeline's
``render`` command, checked against analytic ground truth (union visibility over the views)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from da3_models import tiny_da3, write_da3_folder
from geometry.cache import load_geometry, save_geometry
from geometry.da3 import estimate_geometry, load_da3
from geometry.metrics import mask_iou, psnr
from geometry.synthetic import SourceClip, SyntheticScene, make_geometry
from pipeline.cli import app
from pipeline.generate_output import frame_blocks
from pipeline.render_output import load_mask
from pipeline.stages.render import STATIC_FRAMES
from pipeline.video_io import read_video
from pipeline_inputs import add_video, write_traj
from scene15_writer import write_scene
from static_scenes import photo_set, union_ground_truth
from trajectories import CameraPath, format_matrix_trajectory
from trajectories.orbit import orbit_c2w

W, H = 320, 192
ORBIT = "0 3 6\n0 8 16\n1\n"
ARGS = ["--width", str(W), "--height", str(H), "--disable_adaptive_frame", "--num_frames", "10", "--caption", "a room"]


def cli(input_dir: Path, root: Path, traj: Path, *extra: str, command: str = "render"):
    args = [command, "--input_dir", str(input_dir), "--traj_txt_path", str(traj), "--output_folder", str(root / "out"),
            "--work_dir", str(root / "work"), "--checkpoints_dir", str(root / "no-weights"), *ARGS, *extra]
    return CliRunner().invoke(app, args)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> dict:
    """photo.png (one view) and room/ (four views), with analytic geometry caches in geometry/."""
    root = tmp_path_factory.mktemp("photos")
    inp = root / "in"
    scenes = {}
    for name, n in (("photo", 1), ("room", 4)):
        scene, clip = photo_set(n, W, H)
        folder = inp if n == 1 else inp / name
        folder.mkdir(parents=True, exist_ok=True)
        for v, frame in enumerate(clip.frames):
            Image.fromarray(frame).save(folder / (f"{name}.png" if n == 1 else f"view_{v:02d}.png"))
        save_geometry(inp / "geometry" / f"{name}.npz", make_geometry(scene, clip, (H, W)))
        scenes[name] = (scene, clip)
    result = cli(inp, root, write_traj(root / "orbit.txt", ORBIT), command="run")
    return dict(root=root, inp=inp, scenes=scenes, result=result)


@pytest.mark.parametrize("name, n_views", [("photo", 1), ("room", 4)])
def test_photos_render_against_ground_truth(photos, name, n_views):
    result = photos["result"]
    assert result.exit_code == 3, result.output  # everything but generation (no weights here) ran
    render = photos["root"] / "work" / name / "renders" / "orbit"
    path = CameraPath.load(render / "cameras.json")
    assert len(path) == 10 and path.fps == 16.0  # image scenes: no source frame rate, 16 fps by default
    scene, clip = photos["scenes"][name]
    gt, visible, depth = union_ground_truth(scene, clip, path)
    mask = load_mask(render / "mask.npz")
    rgb = read_video(render / "render.mp4").astype(np.float32) / 255
    sel = mask & visible
    assert mask_iou(mask, visible) > 0.97
    assert (mask & ~visible).sum() < 0.01 * mask.sum()
    assert psnr(rgb, gt, sel) > 28  # H.264 crf 10 with 4:2:0 chroma
    # time stands still; the reference view of each generation block is the one covering most of it
    blocks = frame_blocks(len(path))
    if n_views == 1:
        assert path.source_index.tolist() == [0] * 10
    else:
        assert set(path.source_index.tolist()) <= set(range(4))
        assert np.all(path.source_index == path.source_index[np.searchsorted(blocks, blocks)])  # constant per block
    np.testing.assert_allclose(path.c2w[0], clip.c2w[0], atol=1e-9)  # planned around view 0


def test_the_plan_shows_a_photo_scenes_frame_count(photos, tmp_path):
    """Without --num_frames a keyframe path over photos has STATIC_FRAMES frames, and the plan says so."""
    args = ["run", "--input_dir", str(photos["inp"]), "--traj_txt_path", str(photos["root"] / "orbit.txt"),
            "--output_folder", str(tmp_path / "out"), "--work_dir", str(tmp_path / "work"), "--checkpoints_dir",
            str(tmp_path / "none"), "--width", str(W), "--height", str(H), "--disable_adaptive_frame",
            "--caption", "a room", "--dry_run"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert f"photo.mp4: {STATIC_FRAMES} output frames" in result.output
    assert f"room.mp4: {STATIC_FRAMES} output frames" in result.output


def test_photos_use_da3_when_no_cache_is_given(photos, tmp_path):
    inp = tmp_path / "in"
    (inp / "room").mkdir(parents=True)
    for p in (photos["inp"] / "room").iterdir():
        (inp / "room" / p.name).write_bytes(p.read_bytes())
    (inp / "photo.png").write_bytes((photos["inp"] / "photo.png").read_bytes())
    model = write_da3_folder(tmp_path / "DA3", tiny_da3().net)
    result = cli(inp, tmp_path, photos["root"] / "orbit.txt", "--da3_model_path", str(model), "--da3_process_res", "42",
                 command="geometry")
    assert result.exit_code == 0, result.output
    for name, n in (("photo", 1), ("room", 4)):
        cache = load_geometry(tmp_path / "work" / name / "geometry" / "geometry.npz")
        frames = read_video(tmp_path / "work" / name / "input" / f"{name}.mp4")
        assert len(frames) == n == cache.num_frames
        direct = estimate_geometry(frames, load_da3(model), process_res=42, progress=False)
        assert np.array_equal(cache.depth, direct.depth)


def test_views_of_different_sizes_are_an_error_naming_the_files(tmp_path):
    (tmp_path / "in" / "set").mkdir(parents=True)
    Image.new("RGB", (64, 48)).save(tmp_path / "in" / "set" / "a.png")
    Image.new("RGB", (48, 64)).save(tmp_path / "in" / "set" / "b.png")
    result = cli(tmp_path / "in", tmp_path, write_traj(tmp_path / "o.txt", ORBIT), command="run")
    assert result.exit_code == 1 and "the views differ in size (a.png 64x48, b.png 48x64)" in result.output
    assert "Traceback" not in result.output


def test_scene_folder_runs_with_its_own_geometry_target_and_prompt(tmp_path):
    truth = write_scene(tmp_path / "in" / "hall", "image", 3, 13, 10)
    result = cli(tmp_path / "in", tmp_path, write_traj(tmp_path / "orbit.txt", ORBIT), command="run")
    assert result.exit_code == 3, result.output  # generation weights are missing here
    work = tmp_path / "work" / "hall"
    assert (work / "caption" / "caption.txt").read_text().strip() == "a room"  # --caption wins over prompt.txt
    path = CameraPath.load(work / "renders" / "orbit" / "cameras.json")
    assert len(path) == 10 and path.fps == 12.0  # valid_frames of the scene's target_tcw.txt, its fps
    np.testing.assert_allclose(path.c2w, truth["target_c2w"][:10], atol=1e-9)  # world = the first view's frame
    clip = SourceClip(truth["rgb"], truth["c2w"], truth["K"], 1e9)
    gt, visible, _ = union_ground_truth(SyntheticScene(), clip, path)
    mask = load_mask(work / "renders" / "orbit" / "mask.npz")
    assert mask_iou(mask, visible) > 0.95
    rgb = read_video(work / "renders" / "orbit" / "render.mp4").astype(np.float32) / 255
    # 24.9 dB measured: the 160x96 views are upsampled 2x for colour, and the colour camera follows DA3's plain
    # intrinsics scaling while the resampling aligns pixel centres (a half-pixel offset at this scale).
    assert psnr(rgb, gt, mask & visible) > 24.5


def test_scene_prompt_is_the_caption_without_caption_flags(tmp_path):
    write_scene(tmp_path / "in" / "hall", "image", 1, 9, 9)
    args = [a for a in ARGS if a not in ("--caption", "a room")]
    result = CliRunner().invoke(app, ["caption", "--input_dir", str(tmp_path / "in"), "--traj", str(write_traj(tmp_path / "o.txt", ORBIT)),
                                      "--work_dir", str(tmp_path / "work"), "--output_folder", str(tmp_path / "out"),
                                      "--checkpoints_dir", str(tmp_path / "none"), *args])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "work" / "hall" / "caption" / "caption.txt").read_text().strip() == "a small room with a red ball"


def test_video_with_a_matrix_trajectory(tmp_path):
    add_video(tmp_path / "in", "clip", n_frames=12, size=(64, 48))
    w2c = np.linalg.inv(orbit_c2w(np.zeros(7), np.linspace(0, 6, 7), np.ones(7) * 0.5))
    traj = tmp_path / "target_tcw.txt"
    traj.write_text(format_matrix_trajectory(w2c, "a short orbit"))
    result = CliRunner().invoke(app, ["run", "--input_dir", str(tmp_path / "in"), "--traj", str(traj),
                                      "--work_dir", str(tmp_path / "work"), "--output_folder", str(tmp_path / "out"),
                                      "--checkpoints_dir", str(tmp_path / "none"), "--width", "64", "--height", "48",
                                      "--caption", "x"])
    assert result.exit_code == 3, result.output
    render = tmp_path / "work" / "clip" / "renders" / "target_tcw"
    path = CameraPath.load(render / "cameras.json")
    cache = load_geometry(tmp_path / "in" / "geometry" / "clip.npz")
    assert len(path) == 7 and len(read_video(render / "render.mp4")) == 7 and path.fps == 8.0
    np.testing.assert_allclose(path.w2c, w2c @ np.linalg.inv(cache.c2w[0]), atol=1e-9)
    assert path.source_index.tolist() == np.round(np.linspace(0, 11, 7) + 1e-6).astype(int).tolist()
