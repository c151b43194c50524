"""The geometry cache: one documented, DA3-compatible ``.npz`` plus a JSON sidecar.

Keys (the ones the ``depth-anything-3`` package's npz export writes):
  depth       [N, h, w] float  z-depth in scene units (metres for metric DA3 models);
              finite everywhere; > 0 = a surface, 0 = no surface at that pixel (negative is an error)
  extrinsics  [N, 3, 4] or [N, 4, 4] world-to-camera, OpenCV axes (held here as [N, 4, 4] float64)
  intrinsics  [N, 3, 3] pixels at the depth resolution (h, w); pixel centres at integer coordinates
  conf        [N, h, w] float, optional, higher = more confident
  image       [N, h, w, 3] uint8, optional, colour at the depth resolution
The sidecar ``<name>.json`` records the source video, its content hash, fps, frame count, producer
and the format version. A cache without a sidecar (e.g. a user's own DA3 export) loads with unknown
metadata: empty strings and zeros in :class:`GeometryMeta`, ``frame_count`` taken from the arrays.
``load_geometry`` holds every array in memory; ``open_geometry`` streams the per-frame arrays
(depth, conf, image) so that memory does not grow with the number of frames.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Optional

import numpy as np

from geometry.frames import FrameArray, npz_members, write_frames

FORMAT_VERSION = 1
SIDECAR_FORMAT = "inspatio-geometry"
REQUIRED_KEYS = ("depth", "extrinsics", "intrinsics")
OPTIONAL_KEYS = ("conf", "image")
FRAME_KEYS = ("depth", "conf", "image")  # the per-frame arrays, [N, h, w, ...]
ROTATION_TOLERANCE = 1e-3
FIX_HINT = "rerun the geometry stage with --force"


class GeometryCacheError(ValueError):
    """A geometry cache file is missing, malformed or does not match its video.

    ``problem`` is the finding alone, without the file name and the suggested fix, so that a
    producer (e.g. the DA3 stage) can report it in its own terms.
    """

    def __init__(self, message: str, problem: str = "") -> None:
        super().__init__(message)
        self.problem = problem or message


@dataclass(frozen=True)
class GeometryMeta:
    source_video: str = ""
    video_sha256: str = ""
    fps: float = 0.0
    frame_count: int = 0
    producer: str = ""
    format_version: int = FORMAT_VERSION
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class GeometryCache:
    """Per-frame depth and cameras of one video (see module docstring for shapes and conventions).
    depth, conf and image are arrays in memory, or :class:`FrameArray` (frames read when indexed)
    from :func:`open_geometry`."""

    depth: np.ndarray | FrameArray
    extrinsics: np.ndarray
    intrinsics: np.ndarray
    conf: Optional[np.ndarray | FrameArray] = None
    image: Optional[np.ndarray | FrameArray] = None
    meta: GeometryMeta = field(default_factory=GeometryMeta)

    @property
    def num_frames(self) -> int:
        return int(self.depth.shape[0])

    @property
    def resolution(self) -> tuple[int, int]:
        """(h, w) of the depth maps."""
        return int(self.depth.shape[1]), int(self.depth.shape[2])

    @property
    def c2w(self) -> np.ndarray:
        """[N, 4, 4] camera-to-world."""
        return np.linalg.inv(self.extrinsics)


def sidecar_path(path: str | Path) -> Path:
    """The JSON sidecar beside a cache: ``<stem>.json``."""
    return Path(path).with_suffix(".json")


def _fail(source: str, problem: str, fix: str = FIX_HINT) -> GeometryCacheError:
    return GeometryCacheError(f"{source}: {problem}; {fix}", problem)


def _float_array(source: str, name: str, value: np.ndarray, dtype: type) -> np.ndarray:
    value = np.asarray(value)
    _check_floating(source, name, value.dtype)
    return _one(_checked_frames(source, name, [value], dtype))


def _check_floating(source: str, name: str, dtype: np.dtype) -> None:
    if not np.issubdtype(dtype, np.floating):
        raise _fail(source, f"'{name}' must be a floating-point array, got dtype {dtype}")


def _one(chunks: Iterator[np.ndarray]) -> np.ndarray:
    (array,) = chunks
    return array


def _checked_frames(
    source: str, name: str, chunks: Iterable[np.ndarray], dtype: type, surface: bool = False
) -> Iterator[np.ndarray]:
    """Each chunk of a floating-point array, in order, as C-contiguous ``dtype``, checked for
    finiteness (and, with ``surface``, for depth's sign and for some positive value anywhere). The
    problems are counted over all chunks and raised after the last one, with the first frame affected
    (frames = the leading axis), so a streamed and an in-memory check say the same."""
    nonfinite = negative = 0
    first_nonfinite = first_negative = -1
    any_positive = False
    frame = 0
    for chunk in chunks:
        bad = ~np.isfinite(chunk)
        count = int(np.count_nonzero(bad))
        if count and first_nonfinite < 0:
            first_nonfinite = frame + int(np.flatnonzero(bad.reshape(len(chunk), -1).any(1))[0])
        nonfinite += count
        out = np.ascontiguousarray(chunk, dtype=dtype)
        if surface:
            below = out < 0
            count = int(np.count_nonzero(below))
            if count and first_negative < 0:
                first_negative = frame + int(np.flatnonzero(below.reshape(len(chunk), -1).any(1))[0])
            negative += count
            any_positive = any_positive or bool((out > 0).any())
        frame += len(chunk)
        yield out
    if nonfinite:
        raise _fail(source, f"'{name}' has {nonfinite} non-finite values (NaN or inf), the first in frame {first_nonfinite}")
    if negative:
        raise _fail(source, f"'{name}' has {negative} negative values (0 marks 'no surface'), the first in frame {first_negative}")
    if surface and not any_positive:
        raise _fail(source, f"'{name}' has no positive value: no frame has any surface")


def _check_extrinsics(source: str, extrinsics: np.ndarray, n: int) -> np.ndarray:
    if extrinsics.shape not in ((n, 3, 4), (n, 4, 4)):
        raise _fail(source, f"'extrinsics' must be [{n},3,4] or [{n},4,4] (N from 'depth'), got {list(extrinsics.shape)}")
    full = np.tile(np.eye(4), (n, 1, 1))
    full[:, :3, :] = extrinsics[:, :3, :]
    if extrinsics.shape[1] == 4 and not np.allclose(extrinsics[:, 3, :], [0, 0, 0, 1], atol=1e-6):
        raise _fail(source, "'extrinsics' 4x4 matrices must have the bottom row [0, 0, 0, 1]")
    rot = full[:, :3, :3]
    ortho_err = np.abs(rot @ rot.transpose(0, 2, 1) - np.eye(3)).max(axis=(1, 2))
    det = np.linalg.det(rot)
    bad = np.flatnonzero((ortho_err > ROTATION_TOLERANCE) | (det <= 0))
    if bad.size:
        i = int(bad[0])
        raise _fail(
            source,
            f"'extrinsics' rotation of frame {i} is not a proper rotation (|R R^T - I| = {ortho_err[i]:.2e}, "
            f"det = {det[i]:.4f}); {bad.size} frame(s) affected",
        )
    return full


def _check_intrinsics(source: str, intrinsics: np.ndarray, n: int, h: int, w: int) -> None:
    if intrinsics.shape != (n, 3, 3):
        raise _fail(source, f"'intrinsics' must be [{n},3,3] (N from 'depth'), got {list(intrinsics.shape)}")
    fx, fy = intrinsics[:, 0, 0], intrinsics[:, 1, 1]
    cx, cy = intrinsics[:, 0, 2], intrinsics[:, 1, 2]
    problems = [
        ("the last row must be [0, 0, 1]", np.abs(intrinsics[:, 2] - [0, 0, 1]).max(axis=1) > 1e-6),
        ("K[1,0] must be 0", np.abs(intrinsics[:, 1, 0]) > 1e-6),
        (
            f"focal lengths must lie in (0, {100 * max(h, w)}] pixels",
            (fx <= 0) | (fy <= 0) | (np.maximum(fx, fy) > 100 * max(h, w)),
        ),
        (
            f"the principal point must lie within half an image of the {w}x{h} depth grid",
            (cx < -w / 2) | (cx > 1.5 * w) | (cy < -h / 2) | (cy > 1.5 * h),
        ),
    ]
    for message, bad in problems:
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise _fail(source, f"'intrinsics' of frame {i} are implausible: {message} (K = {intrinsics[i].tolist()})")


def _check_layout(source: str, shapes: dict[str, tuple[int, ...]], dtypes: dict[str, np.dtype]) -> tuple[int, int, int]:
    """Shapes and dtypes of the per-frame arrays present (depth, conf, image); returns (N, h, w)."""
    shape = shapes["depth"]
    if len(shape) != 3 or min(shape) == 0:
        raise _fail(source, f"'depth' must be a non-empty [N,h,w] array, got shape {list(shape)}")
    n, h, w = shape
    _check_floating(source, "depth", dtypes["depth"])
    if "conf" in shapes:
        _check_floating(source, "conf", dtypes["conf"])
        if shapes["conf"] != (n, h, w):
            raise _fail(source, f"'conf' must match 'depth' [{n},{h},{w}], got {list(shapes['conf'])}")
    if "image" in shapes:
        if dtypes["image"] != np.uint8:
            raise _fail(source, f"'image' must be uint8, got dtype {dtypes['image']}")
        if shapes["image"] != (n, h, w, 3):
            raise _fail(source, f"'image' must be [{n},{h},{w},3] like 'depth', got {list(shapes['image'])}")
    return n, h, w


def _check_cameras(source: str, extrinsics, intrinsics, n: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """(extrinsics [N,4,4] float64, intrinsics [N,3,3] float64), checked."""
    extrinsics = _check_extrinsics(source, _float_array(source, "extrinsics", extrinsics, np.float64), n)
    intrinsics = _float_array(source, "intrinsics", intrinsics, np.float64)
    _check_intrinsics(source, intrinsics, n, h, w)
    return extrinsics, intrinsics


def validate_geometry(cache: GeometryCache, source: str = "geometry cache") -> GeometryCache:
    """Check shapes, dtypes, finiteness and plausibility; return a normalised copy.

    Normalised: depth/conf float32, extrinsics [N,4,4] float64 (3x4 accepted), intrinsics float64,
    image uint8. Raises :class:`GeometryCacheError` naming ``source`` and the problem.
    """
    frames = {k: np.asarray(getattr(cache, k)) for k in FRAME_KEYS if getattr(cache, k) is not None}
    n, h, w = _check_layout(source, {k: a.shape for k, a in frames.items()}, {k: a.dtype for k, a in frames.items()})
    depth = _one(_checked_frames(source, "depth", [frames["depth"]], np.float32, surface=True))
    extrinsics, intrinsics = _check_cameras(source, cache.extrinsics, cache.intrinsics, n, h, w)
    conf = _one(_checked_frames(source, "conf", [frames["conf"]], np.float32)) if "conf" in frames else None
    meta = cache.meta
    if meta.frame_count and meta.frame_count != n:
        raise _fail(source, f"metadata says {meta.frame_count} frames but the arrays hold {n}")
    return GeometryCache(depth=depth, extrinsics=extrinsics, intrinsics=intrinsics, conf=conf, image=frames.get("image"), meta=meta)


def _meta_to_json(meta: GeometryMeta) -> dict:
    return {"format": SIDECAR_FORMAT, **dataclasses.asdict(meta)}


def _meta_from_json(path: Path, n: int) -> GeometryMeta:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _fail(str(path), f"unreadable sidecar ({exc})") from exc
    if not isinstance(data, dict) or data.get("format") != SIDECAR_FORMAT:
        raise _fail(str(path), f"not a geometry sidecar (expected \"format\": \"{SIDECAR_FORMAT}\")")
    version = data.get("format_version")
    if not isinstance(version, int):
        raise _fail(str(path), "sidecar has no integer 'format_version'")
    if version > FORMAT_VERSION:
        raise _fail(
            str(path),
            f"format_version {version} is newer than this toolkit supports ({FORMAT_VERSION})",
            f"upgrade the toolkit or {FIX_HINT}",
        )
    if version < FORMAT_VERSION:
        raise _fail(str(path), f"format_version {version} is older than the supported {FORMAT_VERSION}")
    names = {f.name for f in dataclasses.fields(GeometryMeta)}
    unknown = sorted(set(data) - names - {"format"})
    if unknown:
        raise _fail(str(path), f"unknown sidecar fields {unknown}")
    try:
        meta = GeometryMeta(
            source_video=str(data.get("source_video", "")),
            video_sha256=str(data.get("video_sha256", "")),
            fps=float(data.get("fps", 0.0)),
            frame_count=int(data.get("frame_count", 0)),
            producer=str(data.get("producer", "")),
            format_version=version,
            extra=dict(data.get("extra", {})),
        )
    except (TypeError, ValueError) as exc:
        raise _fail(str(path), f"malformed sidecar field ({exc})") from exc
    if meta.frame_count != n:
        raise _fail(str(path), f"sidecar says {meta.frame_count} frames but {path.with_suffix('.npz').name} holds {n}")
    return meta


def save_geometry(path: str | Path, cache: GeometryCache, depth_dtype: type = np.float32) -> None:
    """Validate and write ``<stem>.npz`` (DA3 keys; extrinsics [N,3,4]) and the sidecar ``<stem>.json``.

    ``depth_dtype`` np.float16 stores depth at half precision (relative error <= 2^-11, at most
    65504 scene units; compresses ~10x better); loading always returns float32. Both writes are
    atomic. Any old sidecar is removed first and the new one written last, so a sidecar always
    describes a complete npz beside it.
    """
    from pipeline.fsutil import atomic_write

    path = Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"{path}: a geometry cache path must end in .npz")
    if depth_dtype not in (np.float16, np.float32):
        raise ValueError(f"{path}: depth_dtype must be numpy.float16 or numpy.float32, got {depth_dtype}")
    try:
        cache = validate_geometry(cache, source=str(path))
    except GeometryCacheError as exc:
        raise GeometryCacheError(
            f"geometry to be saved at {path}: {exc.problem}; nothing was written (the producer's output is invalid)",
            exc.problem,
        ) from None
    if depth_dtype == np.float16 and cache.depth.max() > np.finfo(np.float16).max:
        raise GeometryCacheError(f"{path}: depth up to {cache.depth.max():.4g} does not fit float16; save as float32")
    meta = dataclasses.replace(cache.meta, frame_count=cache.num_frames, format_version=FORMAT_VERSION)
    depth = cache.depth.astype(depth_dtype)
    arrays = {"depth": depth, "extrinsics": cache.extrinsics[:, :3, :], "intrinsics": cache.intrinsics}
    arrays.update({k: getattr(cache, k) for k in OPTIONAL_KEYS if getattr(cache, k) is not None})
    sidecar_path(path).unlink(missing_ok=True)
    with atomic_write(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
    with atomic_write(sidecar_path(path)) as tmp:
        tmp.write_text(json.dumps(_meta_to_json(meta), indent=1))


def _unreadable(path: Path, exc: Exception) -> GeometryCacheError:
    return _fail(str(path), f"not a readable .npz file ({exc})")


_READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)


def _read_npz(path: Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The arrays ``keys`` (those present) of the npz at ``path``, after checking it holds the required ones."""
    if not path.is_file():
        raise _fail(str(path), "geometry cache not found", "run the geometry stage first or check the path")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in REQUIRED_KEYS if k not in data.files]
            if missing:
                raise _fail(str(path), f"missing key(s) {missing}; the file holds {sorted(data.files)}")
            return {k: data[k] for k in keys if k in data.files}
    except _READ_ERRORS as exc:
        if isinstance(exc, GeometryCacheError):
            raise
        raise _unreadable(path, exc) from exc


def _with_meta(path: Path, cache: GeometryCache, expect_frames: int | None, expect_video_sha256: str | None) -> GeometryCache:
    """The cache with its sidecar's metadata, checked against the video's frame count and hash."""
    side = sidecar_path(path)
    meta = _meta_from_json(side, cache.num_frames) if side.is_file() else GeometryMeta(frame_count=cache.num_frames)
    cache = dataclasses.replace(cache, meta=meta)
    if expect_frames is not None and cache.num_frames != expect_frames:
        raise _fail(str(path), f"holds {cache.num_frames} frames but the video has {expect_frames}")
    if expect_video_sha256 and meta.video_sha256 and meta.video_sha256 != expect_video_sha256:
        raise _fail(
            str(path),
            f"was computed from a different video (sha256 {meta.video_sha256[:12]}… recorded, "
            f"{expect_video_sha256[:12]}… now; source {meta.source_video or 'unknown'})",
        )
    return cache


def load_geometry(
    path: str | Path, expect_frames: int | None = None, expect_video_sha256: str | None = None
) -> GeometryCache:
    """Load and validate a cache; extrinsics come back as [N,4,4] float64 world-to-camera.

    ``expect_frames``: the video's frame count, which must equal N. ``expect_video_sha256``: the
    video's hash, checked against the sidecar's (a cache without a sidecar cannot be checked).
    Holds every array in memory; :func:`open_geometry` reads frames on demand instead.
    """
    path = Path(path)
    cache = validate_geometry(GeometryCache(**_read_npz(path, REQUIRED_KEYS + OPTIONAL_KEYS)), source=str(path))
    return _with_meta(path, cache, expect_frames, expect_video_sha256)


@contextlib.contextmanager
def open_geometry(
    path: str | Path,
    expect_frames: int | None = None,
    expect_video_sha256: str | None = None,
    scratch_dir: str | Path | None = None,
    image: bool = True,
) -> Iterator[GeometryCache]:
    """:func:`load_geometry` with memory that does not grow with the video: depth, conf and image are
    decompressed chunk by chunk, checked as they pass (every frame, the same checks and messages),
    and written uncompressed into a temporary folder under ``scratch_dir`` (default: the system's
    temporary folder); the cache yielded holds them as :class:`geometry.frames.FrameArray` (a frame
    is read when indexed). The folder is removed on exit.
    ``image=False``: for readers that take colour from the video (the render stage). The ``image``
    member's layout is still checked (uint8 has no values to check) but it is not decompressed, and
    the cache's ``image`` is None."""
    path = Path(path)
    small = _read_npz(path, ("extrinsics", "intrinsics"))
    source = str(path)
    with tempfile.TemporaryDirectory(prefix=".geometry-frames-", dir=scratch_dir) as tmp:
        try:
            members = npz_members(path, FRAME_KEYS)
            _check_layout(source, {k: m.shape for k, m in members.items()}, {k: m.dtype for k, m in members.items()})
            frames = {}
            for key, member in members.items():
                if key == "image" and not image:
                    continue
                dtype = np.uint8 if key == "image" else np.float32
                chunks = member.chunks() if key == "image" else _checked_frames(source, key, member.chunks(), dtype, key == "depth")
                frames[key] = write_frames(Path(tmp) / f"{key}.npy", member.shape, dtype, chunks)
        except _READ_ERRORS as exc:
            if isinstance(exc, GeometryCacheError):
                raise
            raise _unreadable(path, exc) from exc
        n, h, w = frames["depth"].shape
        extrinsics, intrinsics = _check_cameras(source, small["extrinsics"], small["intrinsics"], n, h, w)
        cache = GeometryCache(frames["depth"], extrinsics, intrinsics, frames.get("conf"), frames.get("image"))
        yield _with_meta(path, cache, expect_frames, expect_video_sha256)
