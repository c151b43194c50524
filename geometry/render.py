"""Pure-torch forward renderer: source depth + colour -> target views with a hard z-buffer.

Every source pixel (at colour resolution) is a small quad of surface. Its projection into the
target is approximated by the local affine map J (finite differences of projected neighbours on the
same surface; a fronto-parallel estimate where it has none). A target pixel centre is covered by
the quad when J^-1 (p - q) lies inside the quad, so continuous surfaces tile the target without
cracks at any magnification up to ``max_footprint`` and silhouettes stay at their exact position.
Among the quads covering a pixel the nearest wins (packed depth|index keys reduced with
``scatter_reduce(amin)``). The winner's colour is sampled from the full-resolution source frame at
the exact sub-pixel preimage: bicubically inside a surface (keeps the contrast of fine texture that
bilinear resampling halves), and near depth edges bilinearly over taps of the same surface only, so
nothing bleeds across depth edges. The mask is exactly the set of covered pixels.

Conventions: OpenCV camera axes; ``w2c`` world-to-camera, ``c2w`` camera-to-world [B,4,4];
K [B,3,3] in pixels of the image they describe (pixel centres at integer coordinates; moved
between resolutions by ``scale_intrinsics``, DA3's convention); images are
float [B,3,H,W] in [0,1].
"""

from __future__ import annotations

import functools
import sys
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F

from geometry.unproject import depth_slopes, flying_pixels, gather_pixels, relative_jump, scale_intrinsics, upsample_depth, valid_depth

# z-buffer keys (int64, nonnegative, smaller = nearer): bits 40-61 the target depth's float32 bits
# without the sign and the lowest _Z_DROP bits (relative depth resolution 2^-14), bits 17-39 the
# source pixel index, bit 16 set when the source pixel is not interior (its colour is resampled on
# its own surface), bits 8-15 and 0-7 the preimage inside the quad (q_x, q_y).
_Z_DROP, _KEY_Z, _KEY_PIX, _KEY_EDGE = 9, 40, 17, 16
_MAX_PIXELS = 1 << (_KEY_Z - _KEY_PIX)
_LOW_WORD = 0 if sys.byteorder == "little" else 1  # the int32 half of an int64 holding bits 0-31
# No candidate: the largest finite depth, pixel 0.
_EMPTY = (0x7F7FFFFF >> _Z_DROP) << _KEY_Z
_MISS = 1 << 62  # added to the key of a candidate outside its quad: above every key and _EMPTY
_A_MAX = float(1 << 20)  # bound of the prescaled inverse quad maps (a quad < 1/4000 px)
_FAR = 1e8  # start of rejected quads' test values, far outside [256, 512)


@dataclass(frozen=True)
class RenderSettings:
    """rel_jump: relative depth jump that separates two surfaces (edge test, flying pixels).
    min_conf_ratio: drop depth whose confidence is below this fraction of the frame's median ...
    conf_reach: ... unless it lies within this many depth pixels of confident depth (edge bands).
    max_footprint: largest projected quad extent (target pixels) rasterised; beyond it, cracks.
    coverage_eps: tolerance (in source pixels) of the quad-coverage test, closing rounding seams.
    near: smallest target z-depth drawn."""

    rel_jump: float = 0.04
    min_conf_ratio: float = 0.1
    conf_reach: int = 4
    max_footprint: int = 4
    coverage_eps: float = 0.02
    near: float = 1e-3


@dataclass(frozen=True)
class SourceViews:
    """Source frames ready to render, all at colour resolution (H, W).

    colour [B,3,H,W] float in [0,1]; depth [B,H,W] (0 where invalid); valid [B,H,W] bool;
    slope_x, slope_y [B,H,W] depth derivatives per pixel on the same surface; interior [B,H,W] bool
    (3x3 neighbourhood on one surface); K [B,3,3] at (H, W); c2w [B,4,4]; key [B,H,W] int64 the
    static part of the pixel's z-buffer keys (pixel index and edge flag).
    """

    colour: torch.Tensor
    depth: torch.Tensor
    valid: torch.Tensor
    slope_x: torch.Tensor
    slope_y: torch.Tensor
    interior: torch.Tensor
    K: torch.Tensor
    c2w: torch.Tensor
    key: torch.Tensor

    def select(self, idx: torch.Tensor) -> "SourceViews":
        return SourceViews(*(getattr(self, f.name)[idx] for f in fields(self)))

    @staticmethod
    def cat(views: "list[SourceViews]") -> "SourceViews":
        """The views' frames in order, as one batch (no copy for a single view)."""
        if len(views) == 1:
            return views[0]
        return SourceViews(*(torch.cat([getattr(v, f.name) for v in views]) for f in fields(SourceViews)))


@dataclass(frozen=True)
class RenderedViews:
    """rgb [B,3,H,W] float in [0,1] (0 where uncovered); mask [B,H,W] bool; depth [B,H,W] target
    z-depth (0 where uncovered)."""

    rgb: torch.Tensor
    mask: torch.Tensor
    depth: torch.Tensor


def prepare_sources(
    colour: torch.Tensor,
    depth: torch.Tensor,
    K_depth: torch.Tensor,
    c2w: torch.Tensor,
    conf: torch.Tensor | None = None,
    settings: RenderSettings = RenderSettings(),
) -> SourceViews:
    """colour uint8 [B,H,W,3] (the full-resolution frames); depth [B,h,w] with K_depth [B,3,3] at
    (h, w); c2w [B,4,4]. Removes invalid/low-confidence depth and flying pixels at depth resolution,
    then upsamples depth edge-aware to the colour resolution."""
    rgb = colour.permute(0, 3, 1, 2).contiguous().float().div_(255.0)  # permuting bytes is cheaper
    depth = depth.float()
    valid = valid_depth(depth, conf, settings.min_conf_ratio, settings.conf_reach)
    valid &= ~flying_pixels(depth, valid, settings.rel_jump)
    H, W = rgb.shape[-2:]
    if H * W > _MAX_PIXELS:
        raise ValueError(f"source frames of {W}x{H} exceed {_MAX_PIXELS} pixels; read the video at a smaller colour size")
    d_up, v_up = upsample_depth(depth, valid, rgb, settings.rel_jump)
    K = scale_intrinsics(K_depth.float(), tuple(depth.shape[1:]), (H, W))
    sx, sy, interior = depth_slopes(d_up, settings.rel_jump)
    pixel = _pixel_keys(H, W, rgb.device)
    key = pixel.add(~interior, alpha=1 << _KEY_EDGE)
    return SourceViews(rgb, d_up, v_up, sx, sy, interior, K, c2w.float(), key)


@functools.lru_cache(maxsize=4)
def _pixel_keys(height: int, width: int, device: torch.device) -> torch.Tensor:
    """The source pixel index field of the z-buffer keys, [1, height, width] int64 (read-only)."""
    return torch.arange(height * width, device=device).view(1, height, width) << _KEY_PIX


def _sample_same_surface(src: SourceViews, base: torch.Tensor, sx: torch.Tensor, sy: torch.Tensor, d_ref: torch.Tensor, rel_jump: float) -> torch.Tensor:
    """Bilinear colour at (sx, sy) of the frames whose pixels start at flat index ``base`` (b * H * W),
    using only taps on the surface of depth d_ref. [n, 3]"""
    H, W = src.depth.shape[1:]
    x0 = sx.clamp(0, W - 1)
    y0 = sy.clamp(0, H - 1)
    fx, fy = x0.clone(), y0.clone()
    x0.floor_().clamp_(max=max(W - 2, 0))
    y0.floor_().clamp_(max=max(H - 2, 0))
    fx -= x0
    fy -= y0
    i0 = y0.mul_(W).add_(x0).long().add_(base)
    step_x, step_y = min(W - 1, 1), min(H - 1, 1) * W
    taps = torch.stack([i0, i0 + step_x, i0 + step_y, i0 + (step_x + step_y)]).view(-1)
    gx, gy = 1 - fx, 1 - fy
    w = torch.stack([gx * gy, fx * gy, gx * fy, fx * fy])  # [4, n]
    d = src.depth.reshape(-1).index_select(0, taps).view(4, -1)
    w *= (relative_jump(d, d_ref) <= rel_jump) & src.valid.reshape(-1).index_select(0, taps).view(4, -1)
    colour = gather_pixels(src.colour, taps).view(4, -1, 3)
    return (colour * w[..., None]).sum(0) / w.sum(0).clamp_min(1e-12)[:, None]


def _step(t: torch.Tensor, di: torch.Tensor, dj: torch.Tensor, i: int, j: int) -> torch.Tensor:
    """t + i * di + j * dj without touching the zero terms."""
    if i:
        t = t + i * di if i != 1 else t + di
    if j:
        t = t + j * dj if j != 1 else t + dj
    return t


def _project(src: SourceViews, w2c: torch.Tensor, K: torch.Tensor, near: float) -> tuple[torch.Tensor, ...]:
    """Target position of every source pixel and its local affine map J = d(u, v)/d(x, y).

    Returns u, v (target pixel), z (target depth, clamped to >= near), ux, uy, vx, vy (J) and
    ``bad`` (> 0 where the quad is rejected: invalid depth or nearer than ``near``), all [B, H, W].
    Temporaries are local so they are freed (and their memory reused while still in cache) on return."""
    B, H, W = src.depth.shape
    dev = src.depth.device
    D = src.depth
    # Homogeneous target pixel h = D * (M [x, y, 1]) + n with M = K_t R K_s^-1, n = K_t t.
    T = (w2c.double() @ src.c2w.double())[:, :3]
    Kt = K.double()
    M = (Kt @ T[:, :, :3] @ torch.linalg.inv(src.K.double())).float()
    n = (Kt @ T[:, :, 3:]).float()[..., 0]
    xs = torch.arange(W, device=dev, dtype=torch.float32)
    ys = torch.arange(H, device=dev, dtype=torch.float32)

    def per_frame(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(B, 1, 1)

    def field(c: int) -> torch.Tensor:  # M[c] . [x, y, 1] over the pixel grid
        return (M[:, c, 0, None] * xs + M[:, c, 2, None])[:, None, :] + (M[:, c, 1, None] * ys)[:, :, None]

    g0, g1, g2 = (field(c) for c in range(3))
    z = torch.addcmul(per_frame(n[:, 2]), D, g2)
    bad = (near - z).clamp_(min=0).add_(1).sub_(D.sign())  # D >= 0; 0 marks invalid depth
    inv_z = z.clamp_(min=near).reciprocal()
    u = torch.addcmul(per_frame(n[:, 0]), D, g0).mul_(inv_z)
    v = torch.addcmul(per_frame(n[:, 1]), D, g1).mul_(inv_z)

    # With dh/dx = D_x g + D M[:, 0]: du/dx = (D (M00 - u M20) + D_x (g0 - u g2)) / z, likewise for
    # v and y.
    Dz = D * inv_z
    Au = g0.addcmul_(u, g2, value=-1).mul_(inv_z)
    Av = g1.addcmul_(v, g2, value=-1).mul_(inv_z)

    def d_proj(t: torch.Tensor, row: int, col: int, slope: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(per_frame(M[:, row, col]), t, per_frame(M[:, 2, col]), value=-1).mul_(Dz).addcmul_(slope, A)

    ux, vx = d_proj(u, 0, 0, src.slope_x, Au), d_proj(v, 1, 0, src.slope_x, Av)
    uy, vy = d_proj(u, 0, 1, src.slope_y, Au), d_proj(v, 1, 1, src.slope_y, Av)
    return u, v, z, ux, uy, vx, vy, bad


def _quads(src: SourceViews, w2c: torch.Tensor, K: torch.Tensor, width: int, height: int, settings: RenderSettings) -> list[torch.Tensor]:
    """Each source quad's rasterisation record, flat [B * H * W] each: sbx, sby (q of the stencil's
    first pixel), a00, a01, a10, a11 (inverse affine map in q units per target pixel), key (static
    z-buffer key), base (flat index of the first stencil pixel in the padded z-buffer) and span
    (stencil size in pixels, 0 for rejected quads).

    Rejected quads (invalid depth, nearer than ``near``, degenerate or flipped) carry a positive
    penalty instead of a boolean mask: comparisons and ``where`` cost several times a float op on CPU."""
    B = src.depth.shape[0]
    u, v, z, ux, uy, vx, vy, bad = _project(src, w2c, K, settings.near)
    det = (ux * vy).addcmul_(uy, vx, value=-1)
    bad.add_((1e-8 - det).clamp_(min=0))
    m = settings.max_footprint
    ex = (ux.abs() + uy.abs()).mul_(0.5).add_(settings.coverage_eps)
    ey = (vx.abs() + vy.abs()).mul_(0.5).add_(settings.coverage_eps)
    u0, v0 = (u - ex).ceil_(), (v - ey).ceil_()
    span = torch.maximum(ex.add_(u).floor_().sub_(u0), ey.add_(v).floor_().sub_(v0)).add_(1)  # stencil size
    del ex, ey
    # A quad whose stencil starts beyond the m-pixel padding is not drawn.
    u0c, v0c = u0.clamp(-m, width), v0.clamp(-m, height)
    bad.add_(u0.sub_(u0c).abs_()).add_(v0.sub_(v0c).abs_())
    u0, v0 = u0c, v0c
    ok = bad.sign_().neg_().add_(1)  # 1 = draw, 0 = rejected
    span.mul_(ok)

    # Candidate keys (int64, see _KEY_*): depth, source pixel and its edge flag, and the pixel's
    # preimage inside the quad (q_x, q_y in steps of 2 lim / 255 source pixels), so nothing is
    # gathered per point afterwards.
    lim = 0.5 + settings.coverage_eps
    scale = 255.0 / (2 * lim)
    # Inverse affine map, prescaled to q units, 0 for rejected quads; bounded so q fits an int32.
    inv_det = det.clamp_(min=1e-8).reciprocal_().mul_(ok * scale)
    a00, a11 = (vy * inv_det).clamp_(-_A_MAX, _A_MAX), (ux * inv_det).clamp_(-_A_MAX, _A_MAX)
    inv_det.neg_()
    a01, a10 = (uy * inv_det).clamp_(-_A_MAX, _A_MAX), (vx * inv_det).clamp_(-_A_MAX, _A_MAX)
    del ux, uy, vx, vy, inv_det
    Hp, Wp = height + 2 * m, width + 2 * m
    # q = (offset + lim) * scale + 256.5 truncates to [256, 511] exactly when the pixel centre lies
    # inside the quad; rejected quads start far outside and never move (their map is 0).
    off = ok.mul_(lim * scale + 256.5 + _FAR).sub_(_FAR)
    du, dv = u.sub_(u0).neg_(), v.sub_(v0).neg_()  # u0 - u, v0 - v
    sbx = torch.addcmul(off, a00, du).addcmul_(a01, dv)
    sby = off.addcmul_(a10, du).addcmul_(a11, dv)
    del du, dv, off
    key = ((z.view(torch.int32) >> _Z_DROP).long() << _KEY_Z).bitwise_or_(src.key)
    base = v0.mul_(Wp).add_(u0).add_(m * Wp + m).int().long()
    if B > 1:
        base += (torch.arange(B, device=src.depth.device) * (Hp * Wp)).view(B, 1, 1)
    return [t.reshape(-1) for t in (sbx, sby, a00, a01, a10, a11, key, base, span)]


def _rasterise(quads: list[torch.Tensor], B: int, width: int, height: int, m: int) -> torch.Tensor:
    """The padded z-buffer [B * (height + 2m) * (width + 2m)] int64 of the quads (``_quads``): each
    pixel holds the smallest candidate key covering it, or _EMPTY. Empties ``quads`` so the
    full-size records are freed once the first level is drawn."""
    Hp, Wp = height + 2 * m, width + 2 * m
    zbuf = torch.full((B * Hp * Wp,), _EMPTY, dtype=torch.int64, device=quads[0].device)
    # Level L tests the stencil offsets (i, j) with max(i, j) = L, on the quads whose stencil is
    # larger than L only (most quads need L = 0 alone).
    pts = quads.copy()
    quads.clear()
    for level in range(m):
        if level > 0:
            sel = (pts[-1] > level).nonzero()[:, 0]
            if len(sel) == 0:
                break
            pts = [t.index_select(0, sel) for t in pts]
        bx, by, s00, s01, s10, s11, k, b0, _ = pts
        for j in range(level + 1):
            for i in range(level + 1):
                if max(i, j) == level:
                    qx = _step(bx, s00, s01, i, j).int().sub_(256)
                    qy = _step(by, s10, s11, i, j).int().sub_(256)
                    miss = ((qx | qy) >> 8).abs_().clamp_(max=1)  # inside: both in [0, 255]
                    # A candidate that misses its pixel (always inside the padded buffer) gets a
                    # key above _EMPTY: it never wins.
                    cand = (qx << 8).bitwise_or_(qy).bitwise_and_(0xFFFF).long().bitwise_or_(k).add_(miss, alpha=_MISS)
                    target = b0 + (j * Wp + i) if level else b0
                    zbuf.scatter_reduce_(0, target, cand, "amin")
    return zbuf


def render_views(
    src: SourceViews,
    w2c: torch.Tensor,
    K: torch.Tensor,
    width: int,
    height: int,
    settings: RenderSettings = RenderSettings(),
) -> RenderedViews:
    """Render source view b into target camera b (w2c [B,4,4], K [B,3,3] at (height, width))."""
    B, H, W = src.depth.shape
    dev = src.depth.device
    m = settings.max_footprint
    zbuf = _rasterise(_quads(src, w2c, K, width, height, settings), B, width, height, m)
    Hp, Wp = height + 2 * m, width + 2 * m
    lim = 0.5 + settings.coverage_eps
    scale = 255.0 / (2 * lim)

    # Decode the winners from the keys' 32-bit halves (int64 shifts are not vectorised on CPU).
    # Every full-size temporary is contiguous: strided elementwise ops cost several times more.
    words = zbuf.view(torch.int32).view(B, Hp, Wp, 2)[:, m : m + height, m : m + width]
    lo, hi = words[..., _LOW_WORD].contiguous(), words[..., 1 - _LOW_WORD].contiguous()
    del zbuf, words
    mask = hi != (_EMPTY >> 32)
    maskf = mask.float()
    # The winner's source pixel p = y W + x (exact in float32) -> wy = y, wx = x.
    wx = (lo >> _KEY_PIX).bitwise_and_((1 << (32 - _KEY_PIX)) - 1).bitwise_or_((hi & ((1 << (_KEY_Z - 32)) - 1)) << (32 - _KEY_PIX)).float()
    wy = wx.div(W).floor_()
    wx.sub_(wy, alpha=W)

    def preimage_plus_lim(q: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Source coordinate + lim: pixel t plus the quad offset from its 8-bit key field q (int32),
        kept within the pixel."""
        return torch.mul(q & 0xFF, 1.0 / scale).clamp_(lim - 0.5, lim + 0.5).add_(t)

    # grid_sample's [-1, 1] coordinates of the preimages: (x + 0.5) * 2 / W - 1.
    grid = torch.empty(B, height, width, 2, device=dev)
    for c, (q, t, n_src) in enumerate(((lo >> 8, wx, W), (lo, wy, H))):
        torch.add(preimage_plus_lim(q, t).mul_(2.0 / n_src), (1.0 - 2 * lim) / n_src - 1, out=grid[..., c])
    depth = hi.bitwise_and_(-(1 << (_KEY_Z - 32)))
    depth = depth.add_(depth).view(torch.float32).mul_(maskf)  # (z bits >> _Z_DROP) << _Z_DROP
    # A [B, height, width] grid: grid_sample vectorises along the output rows.
    rgb = F.grid_sample(src.colour, grid, mode="bicubic", padding_mode="border", align_corners=False).clamp_(0, 1).mul_(maskf[:, None])
    # Near source depth edges, resample from taps on the winner's own surface only.
    sel = (lo & (1 << _KEY_EDGE)).view(-1).nonzero()[:, 0]
    if len(sel):
        b_i = sel.div(height * width, rounding_mode="floor")
        base = b_i * (H * W)
        q = lo.view(-1).index_select(0, sel)
        px, py = wx.view(-1).index_select(0, sel), wy.view(-1).index_select(0, sel)
        d_ref = src.depth.reshape(-1).index_select(0, (py * W).add_(px).long().add_(base))
        ex_x, ex_y = preimage_plus_lim(q >> 8, px).sub_(lim), preimage_plus_lim(q, py).sub_(lim)
        colour = _sample_same_surface(src, base, ex_x, ex_y, d_ref, settings.rel_jump)
        at = sel.add_(b_i * (2 * height * width))  # flat index of channel 0 in rgb [B, 3, height, width]
        for c in range(3):
            rgb.view(-1).index_copy_(0, at, colour[:, c])
            at += height * width
    return RenderedViews(rgb, mask, depth)
