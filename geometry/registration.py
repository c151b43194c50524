"""Registration of overlapping chunks of per-frame cameras and depth into one world frame.

Conventions: cameras are camera-to-world (``c2w``) [n, 4, 4] with OpenCV axes (x right, y down,
z forward); depth is z-depth [n, h, w] in the chunk's own units. A similarity transform
``Sim3(s, R, t)`` maps a point ``x`` of one world to ``s·R·x + t`` in another. Applied to a camera,
its rotation becomes ``R·Rc``, its centre ``s·R·c + t`` and its depth is multiplied by ``s``.

Long videos are estimated in chunks of at most ``chunk_size`` frames that overlap by at least
``overlap`` frames (``chunk_ranges``). Each chunk is mapped onto the already registered previous
chunk from the frames both contain (``estimate_sim3``): the rotation is the chordal mean of the
relative camera rotations, the scale the median per-pixel depth ratio (or, without depth, the
least-squares ratio of the centred camera centres), and the translation follows from the centres.
Unlike centre-only alignment (Umeyama on camera positions) this stays well posed for a static or
purely rotating camera. ``ChunkStitcher`` keeps frame 0 as the world origin (its c2w = identity)
and, in every overlap, takes the first half of the frames from the earlier chunk and the rest from
the later one (frames near a chunk's middle have the most context).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np


class RegistrationError(ValueError):
    """Two chunks cannot be aligned (too few shared frames, or no usable depth or motion)."""


@dataclass(frozen=True)
class Sim3:
    """x ↦ scale · rotation · x + translation."""

    scale: float
    rotation: np.ndarray
    translation: np.ndarray

    def apply_c2w(self, c2w: np.ndarray) -> np.ndarray:
        """Cameras [n, 4, 4] expressed in the target world (rotation stays orthonormal)."""
        out = np.array(c2w, dtype=np.float64, copy=True)
        out[:, :3, :3] = self.rotation @ c2w[:, :3, :3]
        out[:, :3, 3] = self.scale * c2w[:, :3, 3] @ self.rotation.T + self.translation
        return out

    def inverse(self) -> "Sim3":
        r_inv = self.rotation.T
        return Sim3(1.0 / self.scale, r_inv, -(r_inv @ self.translation) / self.scale)


def chunk_ranges(n_frames: int, chunk_size: int, overlap: int) -> list[range]:
    """Frame ranges of at most ``chunk_size`` frames; consecutive ranges share ≥ ``overlap`` frames.

    The last range is shifted back to end at ``n_frames`` so every range has ``chunk_size`` frames
    (when the video has that many).
    """
    if n_frames < 1:
        raise ValueError(f"need at least one frame, got {n_frames}")
    if chunk_size < 2:
        raise ValueError(f"chunk_size must be ≥ 2, got {chunk_size}")
    if not 1 <= overlap < chunk_size:
        raise ValueError(f"overlap must be in [1, chunk_size), got {overlap} (chunk_size {chunk_size})")
    if n_frames <= chunk_size:
        return [range(0, n_frames)]
    starts = list(range(0, n_frames - chunk_size, chunk_size - overlap)) + [n_frames - chunk_size]
    return [range(s, s + chunk_size) for s in starts]


def _project_to_rotation(m: np.ndarray) -> np.ndarray:
    u, _, vt = np.linalg.svd(m)
    d = np.sign(np.linalg.det(u @ vt))
    return u @ np.diag([1.0, 1.0, d]) @ vt


def _depth_scale(
    depth_src: np.ndarray,
    depth_dst: np.ndarray,
    conf_src: Optional[np.ndarray],
    conf_dst: Optional[np.ndarray],
) -> float:
    """Median of dst/src over pixels valid in both (and, with conf, at least median-confident)."""
    valid = np.isfinite(depth_src) & np.isfinite(depth_dst) & (depth_src > 0) & (depth_dst > 0)
    if conf_src is not None and conf_dst is not None and valid.any():
        confident = valid & (conf_src >= np.median(conf_src[valid])) & (conf_dst >= np.median(conf_dst[valid]))
        if confident.sum() >= 16:
            valid = confident
    if valid.sum() < 16:
        raise RegistrationError(f"only {int(valid.sum())} pixels with valid depth in the overlap")
    return float(np.exp(np.median(np.log(depth_dst[valid]) - np.log(depth_src[valid]))))


def mean_rotation(c2w_src: np.ndarray, c2w_dst: np.ndarray) -> np.ndarray:
    """Chordal L2 mean [3, 3] of ``Rdst_i · Rsrc_iᵀ`` over matching cameras [m, 4, 4]: the rotation nearest
    (Frobenius) to their sum; defined for any camera motion, including none."""
    return _project_to_rotation(np.einsum("nij,nkj->ik", c2w_dst[:, :3, :3], c2w_src[:, :3, :3]))


def estimate_sim3(
    c2w_src: np.ndarray,
    c2w_dst: np.ndarray,
    depth_src: Optional[np.ndarray] = None,
    depth_dst: Optional[np.ndarray] = None,
    conf_src: Optional[np.ndarray] = None,
    conf_dst: Optional[np.ndarray] = None,
) -> Sim3:
    """Similarity taking the cameras ``c2w_src`` [m, 4, 4] onto ``c2w_dst`` (the same m frames).

    Rotation: chordal L2 mean of ``Rdst_i · Rsrc_iᵀ``. Scale: median depth ratio when both depths
    [m, h, w] are given, else least squares on the centred camera centres (needs camera motion).
    Translation: mean of ``c_dst − s·R·c_src``. Exact for noise-free input.
    """
    c2w_src = np.asarray(c2w_src, dtype=np.float64)
    c2w_dst = np.asarray(c2w_dst, dtype=np.float64)
    if c2w_src.shape != c2w_dst.shape or c2w_src.shape[1:] != (4, 4) or len(c2w_src) < 1:
        raise RegistrationError(f"need matching [m,4,4] camera sets, got {c2w_src.shape} and {c2w_dst.shape}")
    rot = mean_rotation(c2w_src, c2w_dst)
    c_src, c_dst = c2w_src[:, :3, 3], c2w_dst[:, :3, 3]
    mu_src, mu_dst = c_src.mean(0), c_dst.mean(0)
    if depth_src is not None and depth_dst is not None:
        scale = _depth_scale(np.asarray(depth_src), np.asarray(depth_dst), conf_src, conf_dst)
    else:
        a = (c_src - mu_src) @ rot.T
        denom = float((a * a).sum())
        spread = float(np.sqrt(((c_dst - mu_dst) ** 2).sum(1).mean()))
        if len(c2w_src) < 2 or denom <= (1e-9 * max(spread, 1e-12)) ** 2:
            raise RegistrationError("the camera does not move in the overlap: scale needs depth")
        scale = float(((c_dst - mu_dst) * a).sum() / denom)
        if scale <= 0:
            raise RegistrationError(f"camera centres give a non-positive scale ({scale:.3g})")
    return Sim3(scale, rot, mu_dst - scale * rot @ mu_src)


def pose_errors(c2w_a: np.ndarray, c2w_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame rotation angle (degrees) and centre distance between two camera sets [n, 4, 4]."""
    rel = np.einsum("nji,njk->nik", c2w_a[:, :3, :3], c2w_b[:, :3, :3])
    cos = np.clip((np.trace(rel, axis1=1, axis2=2) - 1.0) / 2.0, -1.0, 1.0)
    return np.degrees(np.arccos(cos)), np.linalg.norm(c2w_a[:, :3, 3] - c2w_b[:, :3, 3], axis=1)


@dataclass
class ChunkStitcher:
    """Collect chunks in order into one world whose origin is frame 0's camera.

    ``add(frames, c2w, depth, conf, intrinsics)``: ``frames`` the chunk's frame range, ``c2w``
    [n, 4, 4], ``depth``/``conf`` [n, h, w], ``intrinsics`` [n, 3, 3] (pixels at (h, w)).
    Memory: the output arrays plus the previous chunk.
    """

    n_frames: int
    depth: Optional[np.ndarray] = None
    conf: Optional[np.ndarray] = None
    c2w: Optional[np.ndarray] = None
    intrinsics: Optional[np.ndarray] = None
    transforms: list[Sim3] = field(default_factory=list)
    overlap_errors: list[dict] = field(default_factory=list)
    _prev: Optional[tuple] = None
    _filled: int = 0

    def add(
        self,
        frames: range,
        c2w: np.ndarray,
        depth: np.ndarray,
        conf: Optional[np.ndarray],
        intrinsics: np.ndarray,
    ) -> None:
        n = len(frames)
        if c2w.shape != (n, 4, 4) or depth.shape[0] != n or intrinsics.shape != (n, 3, 3):
            raise ValueError(f"chunk {frames}: inconsistent shapes {c2w.shape}, {depth.shape}, {intrinsics.shape}")
        if self.depth is None:
            if frames.start != 0:
                raise ValueError("the first chunk must start at frame 0")
            self.depth = np.empty((self.n_frames, *depth.shape[1:]), np.float32)
            self.conf = None if conf is None else np.empty((self.n_frames, *depth.shape[1:]), np.float32)
            self.c2w = np.empty((self.n_frames, 4, 4))
            self.intrinsics = np.empty((self.n_frames, 3, 3))
            origin = np.linalg.inv(np.asarray(c2w[0], np.float64))
            to_world = Sim3(1.0, origin[:3, :3], origin[:3, 3])
            c2w = to_world.apply_c2w(c2w)
            keep_from = 0
        else:
            p_frames, p_c2w, p_depth, p_conf = self._prev
            lo, hi = frames.start, p_frames.stop
            if lo < p_frames.start or hi <= lo or frames.stop <= hi:
                raise ValueError(f"chunk {frames} must overlap the end of the previous chunk {p_frames}")
            mine, theirs = slice(0, hi - lo), slice(lo - p_frames.start, hi - p_frames.start)
            to_world = estimate_sim3(
                c2w[mine], p_c2w[theirs], depth[mine], p_depth[theirs],
                None if conf is None else conf[mine], None if p_conf is None else p_conf[theirs],
            )
            c2w = to_world.apply_c2w(c2w)
            rot_err, pos_err = pose_errors(c2w[mine], p_c2w[theirs])
            self.overlap_errors.append(
                {"frames": [lo, hi], "rot_deg_mean": float(rot_err.mean()), "centre_mean": float(pos_err.mean())}
            )
            keep_from = (lo + hi) // 2
        depth = (depth * to_world.scale).astype(np.float32)
        keep = slice(keep_from - frames.start, n)
        self.depth[keep_from:frames.stop] = depth[keep]
        if self.conf is not None:
            self.conf[keep_from:frames.stop] = conf[keep]
        self.c2w[keep_from:frames.stop] = c2w[keep]
        self.intrinsics[keep_from:frames.stop] = intrinsics[keep]
        self.transforms.append(to_world)
        self._prev = (frames, c2w, depth, conf)
        self._filled = frames.stop

    @property
    def complete(self) -> bool:
        return self._filled == self.n_frames
