"""Videos with display rotation (phone portrait clips): every stage sees the upright frames a player shows.

The oracle is the display matrix's documented meaning (FFmpeg ``av_display_rotation_get``, PyAV
``VideoStream.set_display_rotation`` / ``VideoFrame.rotation``): the stored picture is turned
counter-clockwise by the angle to be shown. The test clips store ``np.rot90(upright, -k)`` with angle
90 k, so the upright frames are known exactly.
"""

from __future__ import annotations

import av
import numpy as np
import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.video_io import VideoReader, probe_video, read_video
from pipeline_inputs import ARGS, add_video, frames_of, write_lossless, write_traj


def _upright(n: int = 10, h: int = 48, w: int = 64) -> np.ndarray:
    """Frames with no symmetry: a horizontal and a vertical ramp, a corner marker and a moving bar."""
    y, x = np.mgrid[0:h, 0:w]
    frames = np.zeros((n, h, w, 3), np.uint8)
    frames[..., 0] = (x * 255 // (w - 1))[None]
    frames[..., 1] = (y * 255 // (h - 1))[None]
    frames[:, :8, :12, 2] = 255
    for i in range(n):
        frames[i, :, 2 * i : 2 * i + 3, 2] = 200
    return frames


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_reader_returns_upright_frames(tmp_path, degrees):
    upright = _upright()
    path = write_lossless(tmp_path / f"r{degrees}.mp4", upright, degrees)
    with av.open(str(path)) as c:  # the file really is stored turned, with the display matrix
        frame = next(c.decode(video=0))
        assert (frame.width, frame.height) == ((48, 64) if degrees % 180 else (64, 48))
        assert frame.rotation % 360 == degrees
    info = probe_video(path)
    assert (info.width, info.height, info.rotation) == (64, 48, degrees)
    got = read_video(path)
    assert got.shape == upright.shape
    assert _psnr(got, upright) > 40
    with VideoReader(path) as r:  # random access (seek) is upright too
        assert _psnr(r[7], upright[7]) > 40 and _psnr(r[2], upright[2]) > 40
        assert r.frame_size == (64, 48)
    with VideoReader(path, size=(32, 24), resize="crop") as r:
        with VideoReader(write_lossless(tmp_path / "plain.mp4", upright), size=(32, 24), resize="crop") as plain:
            assert _psnr(r[3], plain[3]) > 40


def test_unrotated_file_reports_no_rotation(tmp_path):
    path = write_lossless(tmp_path / "plain.mp4", _upright())
    assert probe_video(path).rotation == 0


@pytest.mark.parametrize("degrees", [90, 270])
def test_rotated_clip_renders_like_the_upright_clip(tmp_path, degrees):
    """The same scene stored upright and stored turned + display matrix: every output agrees."""
    inp = tmp_path / "in"
    add_video(inp, "upright", rotation=0)  # same codec settings as the turned file
    add_video(inp, "turned", rotation=degrees)
    (inp / "captions.json").write_text('{"upright.mp4": "a room", "turned.mp4": "a room"}')
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["run", "--input_dir", str(inp), "--traj_txt_path",
                                      str(write_traj(tmp_path / "orbit.txt")), "--output_folder", str(out),
                                      "--work_dir", str(tmp_path / "work"), "--checkpoints_dir",
                                      str(tmp_path / "no-weights"), *ARGS])
    assert result.exit_code == 3, result.output  # only the generation weights are missing
    for name in ("source.mp4", "render.mp4", "mask.mp4", "preview.mp4"):
        want, got = frames_of(out / "upright" / name), frames_of(out / "turned" / name)
        assert got.shape == want.shape, name
        assert _psnr(got, want) > 30, name


def test_stage_keys_tell_a_rotated_video_from_its_old_sideways_caches(tmp_path):
    """Caches made before rotation was applied (key: the content hash alone) are stale for a rotated
    video and still valid for an upright one."""
    from pipeline.stages import caption, geometry
    from pipeline.stages.config import GeometrySettings, OutputSettings
    from pipeline.stages.source import open_source

    turned = open_source(add_video(tmp_path, "turned", rotation=90, geometry=False))
    upright = open_source(add_video(tmp_path, "upright", geometry=False))
    for source, extra in ((turned, {"rotation": 90}), (upright, {})):
        want = {"video": source.sha256, **extra}
        assert caption.caption_key(source, "text", tmp_path).inputs == want
        assert geometry.geometry_key(source, None, tmp_path, OutputSettings(), GeometrySettings()).inputs == want
