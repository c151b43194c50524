"""Video IO: round trip fidelity and fps, frame-accurate random access, resize policies, bad input."""

from __future__ import annotations

import hashlib

import av
import numpy as np
import pytest
import torch

from pipeline.video_io import (
    EncodeOptions,
    VideoError,
    VideoReader,
    VideoWriter,
    file_sha256,
    planes_shape,
    probe_video,
    read_video,
    write_video,
    yuv_planes,
)

# Measured on this small, chroma-heavy clip: default options (crf 10, yuv420p, AREA conversion)
# 33.3 dB; crf 18 31.1 dB; yuv444p crf 10 37.6 dB; yuv444p crf 0 52.2 dB.
ROUND_TRIP_PSNR = 32.5


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


def _clip(n: int = 12, h: int = 48, w: int = 64) -> np.ndarray:
    """Smooth moving texture, every frame distinct (frame number encoded in a flat patch)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    frames = []
    for t in range(n):
        r = 0.5 + 0.3 * np.sin((x + 2 * t) / 5.0)
        g = 0.5 + 0.3 * np.cos((y - t) / 4.0)
        b = 0.5 + 0.2 * np.sin((x + y) / 7.0 + t)
        f = np.stack([r, g, b], -1)
        f[:8, :8] = t / n
        frames.append(np.round(np.clip(f, 0, 1) * 255).astype(np.uint8))
    return np.stack(frames)


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("v") / "clip.mp4"
    frames = _clip()
    write_video(path, frames, fps=30000 / 1001)
    return path, frames


def test_round_trip_keeps_fps_count_and_fidelity(clip_file):
    path, frames = clip_file
    info = probe_video(path)
    assert (info.width, info.height, info.num_frames) == (64, 48, len(frames))
    assert info.fps == pytest.approx(30000 / 1001, rel=1e-6)
    back = read_video(path)
    assert back.shape == frames.shape
    assert _psnr(back, frames) >= ROUND_TRIP_PSNR


def test_lossless_option_is_near_exact(tmp_path):
    frames = _clip(4)
    write_video(tmp_path / "l.mp4", frames, fps=25, options=EncodeOptions(crf=0, pix_fmt="yuv444p"))
    assert _psnr(read_video(tmp_path / "l.mp4"), frames) >= 48.0


def test_random_access_equals_sequential(clip_file):
    path, _ = clip_file
    sequential = read_video(path)
    order = [7, 2, 11, 0, 5, 5, 6, 1, 10]
    with VideoReader(path) as r:
        np.testing.assert_array_equal(r.get_batch(order), sequential[order])
        np.testing.assert_array_equal(r[-1], sequential[-1])
        with pytest.raises(IndexError):
            r[len(sequential)]
    with VideoReader(path) as r:  # fresh reader, jump straight to the end and back
        np.testing.assert_array_equal(r[11], sequential[11])
        np.testing.assert_array_equal(r[3], sequential[3])


def test_resize_policies(tmp_path):
    h, w = 40, 80
    frame = np.zeros((h, w, 3), np.uint8)
    frame[:, :20] = (255, 0, 0)
    frame[:, 20:60] = (0, 255, 0)
    frame[:, 60:] = (0, 0, 255)
    write_video(tmp_path / "b.mp4", np.stack([frame, frame]), fps=10, options=EncodeOptions(crf=0, pix_fmt="yuv444p"))
    crop = read_video(tmp_path / "b.mp4", size=(20, 20), resize="crop")
    stretch = read_video(tmp_path / "b.mp4", size=(40, 20), resize="stretch")
    assert crop.shape == (2, 20, 20, 3) and stretch.shape == (2, 20, 40, 3)
    assert np.abs(crop[0].astype(int) - (0, 255, 0)).max() <= 3  # only the green middle survives
    assert stretch[0, 10, 2, 0] > 240 and stretch[0, 10, 37, 2] > 240  # red and blue borders kept


def test_writer_validates_and_is_atomic(tmp_path):
    with pytest.raises(VideoError, match="odd"):
        VideoWriter(tmp_path / "odd.mp4", 24, 65, 48)
    write_video(tmp_path / "odd444.mp4", _clip(3, 47, 65), fps=24, options=EncodeOptions(pix_fmt="yuv444p"))
    assert probe_video(tmp_path / "odd444.mp4").width == 65
    target = tmp_path / "partial.mp4"
    with pytest.raises(RuntimeError):
        with VideoWriter(target, 24, 64, 48) as w:
            w.write(_clip(1)[0])
            raise RuntimeError("killed")
    assert list(tmp_path.glob("*partial*")) == []
    with pytest.raises(VideoError, match="uint8"):
        with VideoWriter(tmp_path / "bad.mp4", 24, 64, 48) as w:
            w.write(np.zeros((48, 64, 3), np.float32))
    assert not (tmp_path / "bad.mp4").exists()


def _one_frame(tmp_path):
    p = tmp_path / "one.mp4"
    write_video(p, _clip(1), fps=24)
    return p


def _truncated(tmp_path):
    src = tmp_path / "full.mp4"
    write_video(src, _clip(12), fps=24)
    p = tmp_path / "trunc.mp4"
    p.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    return p


def _text(tmp_path):
    p = tmp_path / "notes.mp4"
    p.write_text("this is not a video\n" * 10)
    return p


def _empty(tmp_path):
    p = tmp_path / "empty.mp4"
    p.write_bytes(b"")
    return p


@pytest.mark.parametrize(
    "make, problem",
    [
        (_empty, "empty"),
        (_text, "not a readable video"),
        (_truncated, "truncated"),
        (_one_frame, "1 frame"),
        (lambda p: p / "missing.mp4", "does not exist"),
    ],
)
def test_bad_inputs_raise_video_error_naming_file(tmp_path, make, problem):
    path = make(tmp_path)
    for call in (probe_video, VideoReader, read_video):
        if call is read_video and problem == "1 frame":
            continue  # read_video accepts stills
        with pytest.raises(VideoError) as err:
            call(path)
        assert str(path) in str(err.value) and problem in str(err.value)


def test_file_sha256(tmp_path):
    p = tmp_path / "x.bin"
    data = np.random.default_rng(0).bytes(3 << 20)
    p.write_bytes(data)
    assert file_sha256(p) == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("pix_fmt, h, w", [("yuv420p", 48, 64), ("yuv444p", 47, 65)])
def test_grey_frames_write_luma_directly(tmp_path, pix_fmt, h, w):
    """[H, W] frames skip the RGB conversion: a binary mask decodes back exactly at crf 0, other
    grey levels within 1 (limited-range luma rounding), and the colour stays neutral."""
    rng = np.random.default_rng(0)
    mask = (rng.random((3, h, w)) > 0.5).astype(np.uint8) * 255
    grey = rng.integers(0, 256, (3, h, w)).astype(np.uint8)
    opts = EncodeOptions(crf=0, preset="ultrafast", pix_fmt=pix_fmt)
    write_video(tmp_path / "m.mp4", list(mask), fps=10, options=opts)
    np.testing.assert_array_equal(read_video(tmp_path / "m.mp4"), np.repeat(mask[..., None], 3, -1))
    write_video(tmp_path / "g.mp4", list(grey), fps=10, options=opts)
    back = read_video(tmp_path / "g.mp4").astype(int)
    assert np.abs(back - grey[..., None]).max() <= 1


def test_unverified_reader_skips_the_counting_decode(clip_file, tmp_path):
    path, frames = clip_file
    with VideoReader(path, verify=False) as r:
        assert len(r) == len(frames)
        np.testing.assert_array_equal(r.get_batch(range(len(r))), read_video(path))
    trunc = _truncated(tmp_path)
    with pytest.raises(VideoError) as err:
        with VideoReader(trunc, verify=False) as r:
            r.get_batch(range(len(r)))
    assert str(trunc) in str(err.value)


def test_reading_backwards_seeks_once_per_cache_length(clip_file, monkeypatch):
    """After a seek the frames decoded on the way are cached too, so reading a clip backwards seeks
    (and decodes from the keyframe) once per ``cache_frames`` frames instead of once per frame."""
    path, _ = clip_file
    sequential = read_video(path)
    seeks = []
    restart = VideoReader._restart
    monkeypatch.setattr(VideoReader, "_restart", lambda self, i: seeks.append(i) or restart(self, i))
    with VideoReader(path, cache_frames=4) as r:
        back = r.get_batch(range(len(r) - 1, -1, -1))
    np.testing.assert_array_equal(back, sequential[::-1])
    assert seeks == [11, 7, 3]


@pytest.mark.parametrize("pix_fmt, h, w", [("yuv420p", 48, 64), ("yuv444p", 47, 65)])
def test_yuv_planes_match_swscale(pix_fmt, h, w):
    """The torch conversion agrees with swscale's AREA RGB -> YUV (the writer's RGB path) to 1 level."""
    rgb = np.concatenate([_clip(1, h, w)[0], np.random.default_rng(1).integers(0, 256, (h, w, 3)).astype(np.uint8)], axis=1)
    expected = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24").reformat(format=pix_fmt, interpolation="AREA").to_ndarray()
    planes = yuv_planes(torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255, pix_fmt)[0].numpy()
    assert planes.shape == planes_shape(pix_fmt, h, 2 * w) == expected.shape
    assert np.abs(planes.astype(int) - expected.astype(int)).max() <= 1


def test_written_planes_decode_like_written_rgb(tmp_path):
    """write_planes(yuv_planes(x)) decodes to x as faithfully as write(x) does (both lossless YUV)."""
    frames = _clip(3)
    opts = EncodeOptions(crf=0, preset="ultrafast")
    write_video(tmp_path / "rgb.mp4", frames, fps=10, options=opts)
    with VideoWriter(tmp_path / "yuv.mp4", 10, 64, 48, opts) as wr:
        for p in yuv_planes(torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255).numpy():
            wr.write_planes(p)
    via_rgb, via_planes = read_video(tmp_path / "rgb.mp4"), read_video(tmp_path / "yuv.mp4")
    assert np.abs(via_planes.astype(int) - via_rgb.astype(int)).max() <= 2
    assert _psnr(via_planes, frames) >= _psnr(via_rgb, frames) - 0.05


def test_write_planes_validates_layout(tmp_path):
    with pytest.raises(VideoError, match=r"yuv420p planes must be uint8 \[72, 64\]"):
        with VideoWriter(tmp_path / "x.mp4", 10, 64, 48) as wr:
            wr.write_planes(np.zeros((48, 64, 3), np.uint8))
    assert not (tmp_path / "x.mp4").exists()
    with pytest.raises(VideoError, match="even width and height"):
        yuv_planes(torch.zeros(1, 3, 47, 64))


def _timed_clip(path, steps_ms):
    """12 frames whose timestamps are the cumulative sums of ``steps_ms`` (milliseconds)."""
    from pipeline_inputs import write_lossless

    frames = np.repeat(np.arange(0, 120, 10, dtype=np.uint8)[:, None, None, None], 48 * 64 * 3).reshape(12, 48, 64, 3)
    return write_lossless(path, frames, times=np.cumsum([0, *steps_ms]) / 1000)


def test_variable_frame_rate_is_detected_and_logged(tmp_path, caplog):
    import logging

    from pipeline.stages.source import open_source

    steady = probe_video(_timed_clip(tmp_path / "cfr.mp4", [40] * 11))
    assert not steady.variable_rate and steady.num_frames == 12
    vfr_path = _timed_clip(tmp_path / "vfr.mp4", [40, 40, 40, 120, 40, 40, 200, 40, 40, 40, 40])
    vfr = probe_video(vfr_path)
    assert vfr.variable_rate and vfr.num_frames == 12
    with caplog.at_level(logging.WARNING, logger="pipeline"):
        open_source(vfr_path)
    assert "variable frame rate" in caplog.text and "vfr.mp4" in caplog.text
