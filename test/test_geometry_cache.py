import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest

from geometry import frames
from geometry.cache import (
    FORMAT_VERSION,
    GeometryCache,
    GeometryCacheError,
    GeometryMeta,
    load_geometry,
    open_geometry,
    save_geometry,
    sidecar_path,
    validate_geometry,
)


def _rotation(yaw_deg: float) -> np.ndarray:
    c, s = np.cos(np.deg2rad(yaw_deg)), np.sin(np.deg2rad(yaw_deg))
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def make_cache(n: int = 3, h: int = 6, w: int = 10) -> GeometryCache:
    rng = np.random.default_rng(0)
    w2c = np.tile(np.eye(4), (n, 1, 1))
    for i in range(n):
        w2c[i, :3, :3] = _rotation(5.0 * i)
        w2c[i, :3, 3] = [0.1 * i, -0.02 * i, 0.3]
    K = np.array([[8.0, 0, (w - 1) / 2], [0, 8.0, (h - 1) / 2], [0, 0, 1]])
    return GeometryCache(
        depth=rng.uniform(1, 5, (n, h, w)).astype(np.float32),
        extrinsics=w2c,
        intrinsics=np.tile(K, (n, 1, 1)),
        conf=rng.uniform(1, 3, (n, h, w)).astype(np.float32),
        image=rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8),
        meta=GeometryMeta(source_video="clip.mp4", video_sha256="ab" * 32, fps=24.0, frame_count=n, producer="test"),
    )


def write_npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def da3_arrays(cache: GeometryCache) -> dict:
    """The arrays as the depth-anything-3 npz export writes them (float32, extrinsics [N,3,4])."""
    return {
        "image": cache.image,
        "depth": cache.depth,
        "conf": cache.conf,
        "extrinsics": cache.extrinsics[:, :3, :].astype(np.float32),
        "intrinsics": cache.intrinsics.astype(np.float32),
    }


def test_round_trip_keeps_arrays_and_meta(tmp_path: Path):
    cache = make_cache()
    path = tmp_path / "geo" / "clip.npz"
    save_geometry(path, cache)
    assert sorted(p.name for p in path.parent.iterdir()) == ["clip.json", "clip.npz"]
    with np.load(path) as raw:
        assert sorted(raw.files) == ["conf", "depth", "extrinsics", "image", "intrinsics"]
        assert raw["extrinsics"].shape == (3, 3, 4)
    loaded = load_geometry(path, expect_frames=3, expect_video_sha256="ab" * 32)
    assert loaded.extrinsics.shape == (3, 4, 4) and loaded.extrinsics.dtype == np.float64
    np.testing.assert_array_equal(loaded.extrinsics, cache.extrinsics)
    np.testing.assert_array_equal(loaded.intrinsics, cache.intrinsics)
    np.testing.assert_array_equal(loaded.depth, cache.depth)
    np.testing.assert_array_equal(loaded.conf, cache.conf)
    np.testing.assert_array_equal(loaded.image, cache.image)
    assert loaded.meta == dataclasses.replace(cache.meta, format_version=FORMAT_VERSION)
    np.testing.assert_allclose(loaded.c2w @ loaded.extrinsics, np.tile(np.eye(4), (3, 1, 1)), atol=1e-12)


def test_optional_keys_may_be_absent(tmp_path: Path):
    cache = dataclasses.replace(make_cache(), conf=None, image=None)
    save_geometry(tmp_path / "g.npz", cache)
    loaded = load_geometry(tmp_path / "g.npz")
    assert loaded.conf is None and loaded.image is None


def test_user_da3_export_without_sidecar_loads(tmp_path: Path):
    cache = make_cache()
    path = write_npz(tmp_path / "results.npz", **da3_arrays(cache))
    loaded = load_geometry(path, expect_frames=3, expect_video_sha256="cd" * 32)
    assert loaded.meta.video_sha256 == "" and loaded.meta.frame_count == 3
    np.testing.assert_allclose(loaded.extrinsics, cache.extrinsics, atol=1e-6)
    assert loaded.depth.dtype == np.float32 and loaded.intrinsics.dtype == np.float64


def test_4x4_extrinsics_accepted(tmp_path: Path):
    cache = make_cache()
    arrays = da3_arrays(cache) | {"extrinsics": cache.extrinsics}
    loaded = load_geometry(write_npz(tmp_path / "g.npz", **arrays))
    np.testing.assert_array_equal(loaded.extrinsics, cache.extrinsics)


def test_zero_depth_marks_missing_surface(tmp_path: Path):
    cache = make_cache()
    depth = cache.depth.copy()
    depth[0, :2] = 0
    loaded = load_geometry(write_npz(tmp_path / "g.npz", **(da3_arrays(cache) | {"depth": depth})))
    assert (loaded.depth[0, :2] == 0).all()


def _broken(cache: GeometryCache, key: str, value) -> dict:
    arrays = da3_arrays(cache)
    if value is None:
        del arrays[key]
    else:
        arrays[key] = value
    return arrays


def _nan_at(a: np.ndarray, index) -> np.ndarray:
    a = a.astype(np.float32).copy()
    a[index] = np.nan
    return a


def _bad_rotation(cache: GeometryCache) -> np.ndarray:
    e = cache.extrinsics[:, :3, :].copy()
    e[1, :3, :3] *= 1.1
    return e


def _reflection(cache: GeometryCache) -> np.ndarray:
    e = cache.extrinsics[:, :3, :].copy()
    e[2, :3, 0] *= -1
    return e


def _bad_K(cache: GeometryCache, i: int, j: int, value: float) -> np.ndarray:
    K = cache.intrinsics.copy()
    K[1, i, j] = value
    return K


CACHE = make_cache()
BROKEN = {
    "missing depth": (_broken(CACHE, "depth", None), "missing key(s) ['depth']"),
    "missing extrinsics": (_broken(CACHE, "extrinsics", None), "missing key(s) ['extrinsics']"),
    "missing intrinsics": (_broken(CACHE, "intrinsics", None), "missing key(s) ['intrinsics']"),
    "depth not 3-D": (_broken(CACHE, "depth", CACHE.depth[0]), "'depth' must be a non-empty [N,h,w]"),
    "integer depth": (_broken(CACHE, "depth", CACHE.depth.astype(np.int32)), "floating-point"),
    "NaN depth": (_broken(CACHE, "depth", _nan_at(CACHE.depth, (1, 2, 3))), "'depth' has 1 non-finite"),
    "inf depth": (_broken(CACHE, "depth", np.where(CACHE.depth > 4, np.inf, CACHE.depth)), "'depth' has"),
    "negative depth": (_broken(CACHE, "depth", -CACHE.depth), "negative values"),
    "all-zero depth": (_broken(CACHE, "depth", 0 * CACHE.depth), "no positive value"),
    "NaN pose": (_broken(CACHE, "extrinsics", _nan_at(CACHE.extrinsics[:, :3], (0, 1, 3))), "'extrinsics' has 1 non-finite"),
    "extrinsics frame count": (_broken(CACHE, "extrinsics", CACHE.extrinsics[:2, :3]), "'extrinsics' must be [3,3,4] or [3,4,4]"),
    "extrinsics 3x3": (_broken(CACHE, "extrinsics", CACHE.extrinsics[:, :3, :3]), "'extrinsics' must be"),
    "bad bottom row": (_broken(CACHE, "extrinsics", CACHE.extrinsics + np.eye(4)[3] * 0.5), "bottom row"),
    "scaled rotation": (_broken(CACHE, "extrinsics", _bad_rotation(CACHE)), "rotation of frame 1 is not a proper rotation"),
    "reflection": (_broken(CACHE, "extrinsics", _reflection(CACHE)), "rotation of frame 2 is not a proper rotation"),
    "intrinsics shape": (_broken(CACHE, "intrinsics", CACHE.intrinsics[:, :2]), "'intrinsics' must be [3,3,3]"),
    "negative focal": (_broken(CACHE, "intrinsics", _bad_K(CACHE, 0, 0, -8.0)), "frame 1 are implausible: focal"),
    "principal point": (_broken(CACHE, "intrinsics", _bad_K(CACHE, 1, 2, 500.0)), "frame 1 are implausible: the principal point"),
    "K last row": (_broken(CACHE, "intrinsics", _bad_K(CACHE, 2, 2, 2.0)), "frame 1 are implausible: the last row"),
    "NaN intrinsics": (_broken(CACHE, "intrinsics", _nan_at(CACHE.intrinsics, (0, 0, 0))), "'intrinsics' has 1 non-finite"),
    "conf shape": (_broken(CACHE, "conf", CACHE.conf[:, :3]), "'conf' must match 'depth' [3,6,10]"),
    "NaN conf": (_broken(CACHE, "conf", _nan_at(CACHE.conf, (2, 0, 0))), "'conf' has 1 non-finite"),
    "image dtype": (_broken(CACHE, "image", CACHE.image.astype(np.float32)), "'image' must be uint8"),
    "image shape": (_broken(CACHE, "image", CACHE.image[:, :, :5]), "'image' must be [3,6,10,3]"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_invalid_cache_names_file_and_problem(tmp_path: Path, case: str):
    arrays, message = BROKEN[case]
    path = write_npz(tmp_path / "bad.npz", **arrays)
    with pytest.raises(GeometryCacheError) as err:
        load_geometry(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_missing_and_corrupt_files(tmp_path: Path):
    with pytest.raises(GeometryCacheError, match="not found"):
        load_geometry(tmp_path / "none.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip at all")
    with pytest.raises(GeometryCacheError, match="junk.npz: not a readable .npz"):
        load_geometry(tmp_path / "junk.npz")
    obj = np.empty(3, dtype=object)
    write_npz(tmp_path / "pickle.npz", **(da3_arrays(CACHE) | {"depth": obj}))
    with pytest.raises(GeometryCacheError, match="pickle.npz: not a readable"):
        load_geometry(tmp_path / "pickle.npz")


def test_frame_count_and_hash_mismatch(tmp_path: Path):
    path = tmp_path / "clip.npz"
    save_geometry(path, make_cache())
    with pytest.raises(GeometryCacheError, match=r"clip.npz: holds 3 frames but the video has 4.*--force"):
        load_geometry(path, expect_frames=4)
    with pytest.raises(GeometryCacheError, match=r"clip.npz: was computed from a different video.*--force"):
        load_geometry(path, expect_video_sha256="cd" * 32)


def _edit_sidecar(path: Path, **changes) -> None:
    side = sidecar_path(path)
    side.write_text(json.dumps(json.loads(side.read_text()) | changes))


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"format_version": FORMAT_VERSION + 1}, "newer than this toolkit supports.*upgrade the toolkit or rerun"),
        ({"format_version": FORMAT_VERSION - 1}, "older than the supported.*rerun the geometry stage with --force"),
        ({"format_version": "1"}, "no integer 'format_version'"),
        ({"frame_count": 5}, "sidecar says 5 frames but clip.npz holds 3"),
        ({"format": "other"}, "not a geometry sidecar"),
        ({"colour": "blue"}, r"unknown sidecar fields \['colour'\]"),
        ({"fps": "fast"}, "malformed sidecar field"),
    ],
)
def test_bad_sidecar(tmp_path: Path, changes: dict, message: str):
    path = tmp_path / "clip.npz"
    save_geometry(path, make_cache())
    _edit_sidecar(path, **changes)
    with pytest.raises(GeometryCacheError, match=message) as err:
        load_geometry(path)
    assert str(sidecar_path(path)) in str(err.value)


def test_unreadable_sidecar(tmp_path: Path):
    path = tmp_path / "clip.npz"
    save_geometry(path, make_cache())
    sidecar_path(path).write_text("{")
    with pytest.raises(GeometryCacheError, match="clip.json: unreadable sidecar"):
        load_geometry(path)


def test_save_validates_and_replaces_atomically(tmp_path: Path):
    path = tmp_path / "clip.npz"
    save_geometry(path, make_cache())
    bad = dataclasses.replace(make_cache(), depth=_nan_at(make_cache().depth, (0, 0, 0)))
    with pytest.raises(GeometryCacheError, match="to be saved"):
        save_geometry(path, bad)
    assert load_geometry(path).num_frames == 3
    with pytest.raises(GeometryCacheError, match="metadata says 7 frames"):
        save_geometry(path, dataclasses.replace(make_cache(), meta=GeometryMeta(frame_count=7)))
    with pytest.raises(ValueError, match="must end in .npz"):
        save_geometry(tmp_path / "clip.npy", make_cache())
    save_geometry(path, make_cache(n=2))
    assert load_geometry(path).num_frames == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.json", "clip.npz"]


def test_validate_normalises_in_memory():
    cache = make_cache()
    out = validate_geometry(dataclasses.replace(cache, extrinsics=cache.extrinsics[:, :3].astype(np.float32)))
    assert out.extrinsics.shape == (3, 4, 4) and out.extrinsics.dtype == np.float64
    np.testing.assert_allclose(out.extrinsics, cache.extrinsics, atol=1e-6)


def test_float16_depth_round_trip(tmp_path: Path):
    cache = make_cache()
    save_geometry(tmp_path / "g.npz", cache, depth_dtype=np.float16)
    with np.load(tmp_path / "g.npz") as raw:
        assert raw["depth"].dtype == np.float16
    loaded = load_geometry(tmp_path / "g.npz")
    assert loaded.depth.dtype == np.float32
    np.testing.assert_allclose(loaded.depth, cache.depth, rtol=2.0**-11)
    far = dataclasses.replace(cache, depth=cache.depth * 1e5)
    with pytest.raises(GeometryCacheError, match="does not fit float16"):
        save_geometry(tmp_path / "far.npz", far, depth_dtype=np.float16)
    with pytest.raises(ValueError, match="depth_dtype"):
        save_geometry(tmp_path / "g.npz", cache, depth_dtype=np.float64)


def test_interrupted_save_never_leaves_a_stale_sidecar(tmp_path: Path, monkeypatch):
    """A crash after the new npz is in place but before its sidecar: the old sidecar must be gone."""
    import geometry.cache as cache_module

    path = tmp_path / "clip.npz"
    save_geometry(path, make_cache())
    newer = dataclasses.replace(make_cache(n=2), meta=GeometryMeta(video_sha256="cd" * 32))

    def crash(meta):
        raise KeyboardInterrupt

    monkeypatch.setattr(cache_module, "_meta_to_json", crash)
    with pytest.raises(KeyboardInterrupt):
        save_geometry(path, newer)
    assert not sidecar_path(path).exists()
    loaded = load_geometry(path, expect_video_sha256="ab" * 32)
    assert loaded.num_frames == 2 and loaded.meta.video_sha256 == ""


@pytest.fixture
def one_frame_chunks(monkeypatch):
    """Stream npz members one frame at a time, so every check has to span chunks."""
    monkeypatch.setattr(frames, "CHUNK_BYTES", 1)


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_streamed_cache_finds_the_same_problems(tmp_path: Path, case: str, one_frame_chunks):
    arrays, message = BROKEN[case]
    path = tmp_path / "bad.npz"
    np.savez_compressed(path, **arrays)
    with pytest.raises(GeometryCacheError) as err:
        with open_geometry(path, scratch_dir=tmp_path):
            pass
    assert str(path) in str(err.value) and message in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.npz"]  # no scratch left behind


def test_streamed_cache_checks_every_frame(tmp_path: Path, one_frame_chunks):
    cache = make_cache(n=5)
    depth, conf = cache.depth.copy(), cache.conf.copy()
    depth[4, 5, 9] = np.inf
    conf[3, 0, 0] = np.nan
    for arrays, message in [({"depth": depth}, "'depth' has 1 non-finite values (NaN or inf), the first in frame 4"),
                            ({"conf": conf}, "'conf' has 1 non-finite values (NaN or inf), the first in frame 3"),
                            ({"depth": np.where(np.arange(5)[:, None, None] == 2, -cache.depth, cache.depth)},
                             f"'depth' has {depth[2].size} negative values (0 marks 'no surface'), the first in frame 2")]:
        path = tmp_path / "bad.npz"
        np.savez_compressed(path, **(da3_arrays(cache) | arrays))
        with pytest.raises(GeometryCacheError, match=re.escape(message)):
            with open_geometry(path):
                pass
        with pytest.raises(GeometryCacheError, match=re.escape(message)):
            load_geometry(path)


@pytest.mark.parametrize("depth_dtype", [np.float32, np.float16])
def test_streamed_cache_equals_the_loaded_one(tmp_path: Path, depth_dtype, one_frame_chunks):
    path = tmp_path / "clip.npz"
    save_geometry(path, make_cache(n=4), depth_dtype=depth_dtype)
    loaded = load_geometry(path, expect_frames=4, expect_video_sha256="ab" * 32)
    with open_geometry(path, expect_frames=4, expect_video_sha256="ab" * 32, scratch_dir=tmp_path) as streamed:
        assert isinstance(streamed.depth, frames.FrameArray) and streamed.meta == loaded.meta
        for key in ("depth", "conf", "image"):
            a, b = getattr(streamed, key), getattr(loaded, key)
            assert a.shape == b.shape and a.dtype == b.dtype and a.nbytes == b.nbytes
            np.testing.assert_array_equal(np.asarray(a), b)
            np.testing.assert_array_equal(a[2], b[2])
            np.testing.assert_array_equal(a[-1], b[-1])
            np.testing.assert_array_equal(a[1:3], b[1:3])
            np.testing.assert_array_equal(a[::2], b[::2])
        np.testing.assert_array_equal(streamed.extrinsics, loaded.extrinsics)
        np.testing.assert_array_equal(streamed.intrinsics, loaded.intrinsics)
        with pytest.raises(IndexError):
            streamed.depth[4]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.json", "clip.npz"]  # scratch removed
    with pytest.raises(GeometryCacheError, match="holds 4 frames but the video has 5"):
        with open_geometry(path, expect_frames=5):
            pass


def test_streamed_cache_without_image_still_checks_it(tmp_path: Path, one_frame_chunks):
    path = tmp_path / "clip.npz"
    cache = make_cache(n=4)
    save_geometry(path, cache)
    with open_geometry(path, scratch_dir=tmp_path, image=False) as streamed:
        assert streamed.image is None
        np.testing.assert_array_equal(np.asarray(streamed.depth), cache.depth)
        np.testing.assert_array_equal(np.asarray(streamed.conf), cache.conf)
        assert sorted(p.name for p in next(tmp_path.glob(".geometry-frames-*")).iterdir()) == ["conf.npy", "depth.npy"]
    for case in ("image dtype", "image shape"):
        arrays, message = BROKEN[case]
        np.savez_compressed(path, **arrays)
        with pytest.raises(GeometryCacheError, match=re.escape(message)):
            with open_geometry(path, image=False):
                pass


def test_streamed_cache_reads_fortran_order_members(tmp_path: Path, one_frame_chunks):
    cache = make_cache(n=4)
    arrays = da3_arrays(cache) | {"depth": np.asfortranarray(cache.depth), "conf": np.asfortranarray(cache.conf)}
    path = tmp_path / "f.npz"
    np.savez_compressed(path, **arrays)
    with open_geometry(path) as streamed:
        np.testing.assert_array_equal(np.asarray(streamed.depth), cache.depth)
        np.testing.assert_array_equal(streamed.conf[3], cache.conf[3])
