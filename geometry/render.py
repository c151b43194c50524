"""Pure-torch forward renderer: source depth + colour -> target views with a hard z-buffer.

Every source pixel (at colour resolution) is a small quad of surface. Its projection into the
target is approximated by the local affine map J (finite differences of projected neighbours on the
same surface; a fronto-parallel estimate where it has none). A target pixel centre is covered by
the quad when J^-1 (p - q) lies inside the quad, so continuous surfaces tile the target without
cracks at any magnification up to ``max_footprint`` and silhouettes stay at their exact position.
Among the quads covering a pixel the nearest wins (packed depth|index keys reduced with
``scatter_reduce(amin)``). The winner's colour is sampled from the full-resolution source frame at
the exact sub-pixel preimage, bilinearly over taps of the same surface only, so nothing bleeds across
depth edges. The mask is exactly the set of covered pixels.

Conventions: OpenCV camera axes; ``w2c`` world-to-camera, ``c2w`` camera-to-world [B,4,4];
K [B,3,3] in pixels of the image they describe (pixel centres at integer coordinates); images are
float [B,3,H,W] in [0,1].
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F

from geometry.unproject import depth_slopes, flying_pixels, relative_jump, scale_intrinsics, upsample_depth, valid_depth

_EMPTY = torch.iinfo(torch.int64).max


@dataclass(frozen=True)
class RenderSettings:
    """rel_jump: relative depth jump that separates two surfaces (edge test, flying pixels).
    min_conf_ratio: drop depth whose confidence is below this fraction of the frame's median.
    max_footprint: largest projected quad extent (target pixels) rasterised; beyond it, cracks.
    coverage_eps: tolerance (in source pixels) of the quad-coverage test, closing rounding seams.
    near: smallest target z-depth drawn."""

    rel_jump: float = 0.04
    min_conf_ratio: float = 0.1
    max_footprint: int = 4
    coverage_eps: float = 0.02
    near: float = 1e-3


@dataclass(frozen=True)
class SourceViews:
    """Source frames ready to render, all at colour resolution (H, W).

    colour [B,3,H,W] float in [0,1]; depth [B,H,W] (0 where invalid); valid [B,H,W] bool;
    slope_x, slope_y [B,H,W] depth derivatives per pixel on the same surface; interior [B,H,W] bool
    (3x3 neighbourhood on one surface); K [B,3,3] at (H, W); c2w [B,4,4].
    """

    colour: torch.Tensor
    depth: torch.Tensor
    valid: torch.Tensor
    slope_x: torch.Tensor
    slope_y: torch.Tensor
    interior: torch.Tensor
    K: torch.Tensor
    c2w: torch.Tensor

    def select(self, idx: torch.Tensor) -> "SourceViews":
        return SourceViews(*(getattr(self, f.name)[idx] for f in fields(self)))


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
    rgb = colour.permute(0, 3, 1, 2).float() / 255.0
    depth = depth.float()
    valid = valid_depth(depth, conf, settings.min_conf_ratio)
    valid &= ~flying_pixels(depth, valid, settings.rel_jump)
    H, W = rgb.shape[-2:]
    d_up, v_up = upsample_depth(depth, valid, rgb, settings.rel_jump)
    K = scale_intrinsics(K_depth.float(), tuple(depth.shape[1:]), (H, W))
    sx, sy, interior = depth_slopes(d_up, v_up, settings.rel_jump)
    return SourceViews(rgb.contiguous(), d_up, v_up, sx, sy, interior, K, c2w.float())


def _sample_same_surface(src: SourceViews, b: torch.Tensor, sx: torch.Tensor, sy: torch.Tensor, d_ref: torch.Tensor, rel_jump: float) -> torch.Tensor:
    """Bilinear colour at (sx, sy) of frames b, using only taps on the surface of depth d_ref. [n,3]"""
    H, W = src.depth.shape[1:]
    sx, sy = sx.clamp(0, W - 1), sy.clamp(0, H - 1)
    x0 = sx.floor().clamp(max=max(W - 2, 0)).long()
    y0 = sy.floor().clamp(max=max(H - 2, 0)).long()
    fx, fy = sx - x0, sy - y0
    acc = torch.zeros(len(sx), 3, device=sx.device)
    wsum = torch.zeros(len(sx), device=sx.device)
    for dy, dx, w in ((0, 0, (1 - fx) * (1 - fy)), (0, 1, fx * (1 - fy)), (1, 0, (1 - fx) * fy), (1, 1, fx * fy)):
        yy, xx = (y0 + dy).clamp(max=H - 1), (x0 + dx).clamp(max=W - 1)
        same = src.valid[b, yy, xx] & (relative_jump(src.depth[b, yy, xx], d_ref) <= rel_jump)
        w = w * same
        acc += w[:, None] * src.colour[b, :, yy, xx]
        wsum += w
    return acc / wsum.clamp_min(1e-12)[:, None]


def _step(t: torch.Tensor, di: torch.Tensor, dj: torch.Tensor, i: int, j: int) -> torch.Tensor:
    """t + i * di + j * dj without touching the zero terms."""
    if i:
        t = t + i * di if i != 1 else t + di
    if j:
        t = t + j * dj if j != 1 else t + dj
    return t


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
    D = src.depth
    # Homogeneous target pixel h = D * (M [x, y, 1]) + n with M = K_t R K_s^-1, n = K_t t.
    T = (w2c.double() @ src.c2w.double())[:, :3]
    Kt = K.double()
    M = (Kt @ T[:, :, :3] @ torch.linalg.inv(src.K.double())).float()
    n = (Kt @ T[:, :, 3:]).float()[..., 0]
    xs = torch.arange(W, device=dev, dtype=torch.float32)
    ys = torch.arange(H, device=dev, dtype=torch.float32)

    def field(c: int) -> torch.Tensor:  # M[c] . [x, y, 1] over the pixel grid
        return (M[:, c, 0, None] * xs + M[:, c, 2, None])[:, None, :] + (M[:, c, 1, None] * ys)[:, :, None]

    g = [field(c) for c in range(3)]
    h = [D * g[c] + n[:, c, None, None] for c in range(3)]
    z = h[2]
    valid = src.valid & (z > settings.near)
    inv_z = 1.0 / torch.where(valid, z, torch.ones_like(z))
    u, v = h[0] * inv_z, h[1] * inv_z

    # Local affine map of each source quad: J = d(u, v)/d(x, y) from dh/dx = D_x g + D M[:, 0].
    def d_proj(slope: torch.Tensor, col: int) -> tuple[torch.Tensor, torch.Tensor]:
        dh = [slope * g[c] + D * M[:, c, col, None, None] for c in range(3)]
        return (dh[0] - u * dh[2]) * inv_z, (dh[1] - v * dh[2]) * inv_z

    ux, vx = d_proj(src.slope_x, 0)
    uy, vy = d_proj(src.slope_y, 1)
    det = ux * vy - uy * vx
    valid &= det > 1e-8
    inv_det = 1.0 / torch.where(valid, det, torch.ones_like(det))
    a00, a01, a10, a11 = vy * inv_det, -uy * inv_det, -vx * inv_det, ux * inv_det
    ex = 0.5 * (ux.abs() + uy.abs()) + settings.coverage_eps
    ey = 0.5 * (vx.abs() + vy.abs()) + settings.coverage_eps
    m = settings.max_footprint
    u0, v0 = torch.ceil(u - ex), torch.ceil(v - ey)
    valid &= (u0 >= -m) & (u0 <= width) & (v0 >= -m) & (v0 <= height)
    span = torch.maximum(torch.floor(u + ex) - u0, torch.floor(v + ey) - v0) + 1  # stencil size per quad

    # Rasterise into a z-buffer padded by m pixels on every side (no bounds tests per candidate).
    # Key (int64): z float bits >> 8 (23 bits) | quad offset x q_x (8 bits) | source pixel (24 bits) |
    # quad offset y q_y (8 bits). The nearest key wins; q_x, q_y give the pixel's preimage inside the
    # quad in steps of 2 lim / 255 source pixels, so nothing is gathered per point afterwards.
    Hp, Wp = height + 2 * m, width + 2 * m
    lim = 0.5 + settings.coverage_eps
    scale = 255.0 / (2 * lim)
    key = ((z.view(torch.int32).long() >> 8) << 40) | (torch.arange(H * W, device=dev).view(1, H, W) << 8)
    base = (v0 + m) * Wp + (u0 + m)
    base = torch.where(valid, base, torch.zeros_like(base)).long() + (torch.arange(B, device=dev) * (Hp * Wp)).view(B, 1, 1)
    # t = (offset + lim) * scale + 256.5 so that truncation to int lands in [256, 511] exactly when
    # the pixel centre lies inside the quad; invalid points get a value that always fails the test.
    off = lim * scale + 256.5
    sbx = torch.where(valid, (a00 * (u0 - u) + a01 * (v0 - v)) * scale + off, torch.full_like(u, -1e9))
    sby = torch.where(valid, (a10 * (u0 - u) + a11 * (v0 - v)) * scale + off, torch.full_like(u, -1e9))
    inside, payload = 0x1FF_0000_01FF & ~0xFF_0000_00FF, 0xFF_0000_00FF
    zbuf = torch.full((B * Hp * Wp,), _EMPTY, dtype=torch.int64, device=dev)
    # Level L tests the stencil offsets (i, j) with max(i, j) = L, on the quads whose stencil is
    # larger than L only (most quads need L = 0 alone).
    pts = [t.reshape(-1) for t in (sbx, sby, a00 * scale, a01 * scale, a10 * scale, a11 * scale, key, base, torch.where(valid, span, torch.zeros_like(span)))]
    for level in range(m):
        if level > 0:
            sel = (pts[-1] > level).nonzero()[:, 0]
            if len(sel) == 0:
                break
            pts = [t.index_select(0, sel) for t in pts]
        bx, by, s00, s01, s10, s11, k, b0, _ = pts
        for j in range(level + 1):
            for i in range(level + 1):
                if max(i, j) != level:
                    continue
                q = (_step(bx, s00, s01, i, j).long() << 32) | _step(by, s10, s11, i, j).long()
                hit = (q & ~payload) == inside
                cand = torch.where(hit, k | (q & payload), _EMPTY)
                zbuf.scatter_reduce_(0, b0 + (j * Wp + i), cand, "amin")

    zbuf = zbuf.view(B, Hp, Wp)[:, m : m + height, m : m + width]
    mask = zbuf != _EMPTY
    win = torch.where(mask, zbuf, torch.zeros_like(zbuf))
    pix_idx = ((win >> 8) & 0xFFFFFF).float()
    wy = torch.floor(pix_idx / W)
    wx = pix_idx - wy * W
    step = 1.0 / scale
    sx = wx + (((win >> 32) & 0xFF).float() * step - lim).clamp(-0.5, 0.5)
    sy = wy + ((win & 0xFF).float() * step - lim).clamp(-0.5, 0.5)
    depth = ((win >> 40) << 8).int().view(torch.float32) * mask

    grid = torch.stack([(sx + 0.5) * (2.0 / W) - 1, (sy + 0.5) * (2.0 / H) - 1], -1).view(B, height * width, 1, 2)
    rgb = F.grid_sample(src.colour, grid, mode="bilinear", padding_mode="border", align_corners=False)
    rgb = rgb.view(B, 3, height, width)
    # Near source depth edges, resample from taps on the winner's own surface only.
    b_i, y_i, x_i = (mask & ~src.interior.view(-1)[(pix_idx.long() + (torch.arange(B, device=dev) * (H * W)).view(B, 1, 1))]).nonzero(as_tuple=True)
    if len(b_i):
        ex_x, ex_y = sx[b_i, y_i, x_i], sy[b_i, y_i, x_i]
        d_ref = src.depth[b_i, wy[b_i, y_i, x_i].long(), wx[b_i, y_i, x_i].long()]
        rgb[b_i, :, y_i, x_i] = _sample_same_surface(src, b_i, ex_x, ex_y, d_ref, settings.rel_jump)
    return RenderedViews(rgb * mask[:, None], mask, depth)
