"""Depth maps to 3D points: intrinsics scaling, flying-pixel removal, edge-aware upsampling, unprojection.

Conventions: OpenCV camera axes (x right, y down, z forward); pixel (i, j) has its centre at
image coordinates (x=j, y=i); intrinsics K map camera coordinates to those pixel coordinates; depth
is z-depth in scene units; invalid depth is represented by a ``valid`` mask (depth there is 0).
All functions are batched over a leading frame dimension B and run on any torch device.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def scale_intrinsics(K: torch.Tensor, from_hw: tuple[int, int], to_hw: tuple[int, int]) -> torch.Tensor:
    """K [..., 3, 3] for an image of size ``from_hw`` -> K for the same view resampled to ``to_hw``
    (pixel-centre convention: x' = (x + 0.5) * W'/W - 0.5)."""
    sy, sx = to_hw[0] / from_hw[0], to_hw[1] / from_hw[1]
    K = K.clone()
    K[..., 0, :] *= sx
    K[..., 1, :] *= sy
    K[..., 0, 2] += 0.5 * sx - 0.5
    K[..., 1, 2] += 0.5 * sy - 0.5
    return K


def pixel_rays(K: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Rays K^-1 [x, y, 1] with z = 1 for every pixel centre: [B, H, W, 3]."""
    dtype = K.dtype
    ys = torch.arange(height, device=K.device, dtype=dtype)
    xs = torch.arange(width, device=K.device, dtype=dtype)
    pix = torch.stack(torch.meshgrid(xs, ys, indexing="xy") + (torch.ones(height, width, device=K.device, dtype=dtype),), -1)
    return torch.einsum("bij,hwj->bhwi", torch.linalg.inv(K), pix)


def relative_jump(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """|a - b| / min(a, b): the depth-discontinuity measure used throughout."""
    return (a - b).abs() / torch.minimum(a, b).clamp_min(1e-12)


def _jumps(a: torch.Tensor, b: torch.Tensor, rel_jump: float) -> torch.Tensor:
    """relative_jump(a, b) > rel_jump for depths >= 0, without a division."""
    return (a - b).abs_() > torch.minimum(a, b).mul_(rel_jump)


def _same_surface(a: torch.Tensor, b: torch.Tensor, rel_jump: float) -> torch.Tensor:
    """Float 1 where depths a, b > 0 are on one surface (relative jump below rel_jump), else 0.
    Computed with float ops only (comparisons producing bool are several times slower on CPU)."""
    return torch.minimum(a, b).mul_(rel_jump).sub_((a - b).abs_()).sign_().clamp_(min=0)


def valid_depth(depth: torch.Tensor, conf: torch.Tensor | None = None, min_conf_ratio: float = 0.0) -> torch.Tensor:
    """Finite, positive depth whose confidence (if given) is at least ``min_conf_ratio`` x the frame's median."""
    valid = torch.isfinite(depth) & (depth > 0)
    if conf is not None and min_conf_ratio > 0:
        med = conf.flatten(1).median(dim=1).values.view(-1, 1, 1)
        valid &= conf >= min_conf_ratio * med
    return valid


def flying_pixels(depth: torch.Tensor, valid: torch.Tensor, rel_jump: float) -> torch.Tensor:
    """Pixels on a depth ramp between two surfaces: discontinuous (relative jump > ``rel_jump``) with
    both neighbours along x, or both along y. A pixel on either side of a sharp edge is discontinuous
    with one neighbour only and is kept; a 1-pixel-wide structure is dropped. [B, h, w] bool."""
    d = torch.where(valid, depth, torch.zeros_like(depth))
    pad = F.pad(d[:, None], (1, 1, 1, 1), mode="replicate")[:, 0]
    vpad = F.pad(valid[:, None].float(), (1, 1, 1, 1), mode="replicate")[:, 0] > 0

    def disc(dy: int, dx: int) -> torch.Tensor:
        h, w = depth.shape[1:]
        nb = pad[:, 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
        nv = vpad[:, 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
        return nv & valid & _jumps(d, nb, rel_jump)

    return (disc(0, -1) & disc(0, 1)) | (disc(-1, 0) & disc(1, 0))


def _source_coords(n_out: int, n_in: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """For output pixel centres on a grid of n_out, the lower input tap (clamped) and its weight."""
    x = (torch.arange(n_out, device=device, dtype=torch.float32) + 0.5) * (n_in / n_out) - 0.5
    x = x.clamp(0, n_in - 1)
    x0 = x.floor().clamp(max=max(n_in - 2, 0)).long()
    return x0, x - x0


def _cells(t: torch.Tensor, op) -> torch.Tensor:
    """op over the 2x2 corners of every cell of a [B, h, w] grid -> [B, h-1, w-1]."""
    return op(op(t[:, :-1, :-1], t[:, :-1, 1:]), op(t[:, 1:, :-1], t[:, 1:, 1:]))


def upsample_depth(
    depth: torch.Tensor,
    valid: torch.Tensor,
    guide: torch.Tensor,
    rel_jump: float,
    colour_weight: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Edge-aware upsampling of depth [B, h, w] to the size of ``guide`` [B, 3, H, W] (float in [0,1]).

    Inside a surface (the 2x2 low-resolution taps around an output pixel are valid and within
    ``rel_jump`` of each other) depth is bilinear. At an edge the taps are split into the nearest
    surface and the rest; the output pixel takes the set whose guide colour (taps' colours from the
    guide downsampled to h x w) is closest to its own full-resolution colour, and the bilinear mean
    of that set only, so depth is never blended across an edge. Returns (depth [B,H,W], valid [B,H,W]).
    """
    B, h, w = depth.shape
    H, W = guide.shape[-2:]
    dev = depth.device
    d = torch.where(valid, depth, torch.zeros_like(depth)).float()
    x0, fx = _source_coords(W, w, dev)
    y0, fy = _source_coords(H, h, dev)
    x1, y1 = (x0 + 1).clamp(max=w - 1), (y0 + 1).clamp(max=h - 1)
    out = F.interpolate(d[:, None], size=(H, W), mode="bilinear", align_corners=False)[:, 0]

    # A low-res cell (y, x)-(y+1, x+1) is an edge cell if a corner is invalid or the corners jump.
    big = torch.where(valid, d, torch.full_like(d, float("inf")))
    cmin = _cells(big, torch.minimum)
    cell_edge = (_cells(d, torch.maximum) > cmin * (1 + rel_jump)) | torch.isinf(cmin) | ~_cells(valid, torch.logical_and)
    edge = cell_edge.index_select(1, y0).index_select(2, x0)
    out_valid = ~edge
    b_i, y_i, x_i = edge.nonzero(as_tuple=True)
    if len(b_i) == 0:
        return out, out_valid
    wx, wy = fx[x_i], fy[y_i]
    bw = torch.stack([(1 - wx) * (1 - wy), wx * (1 - wy), (1 - wx) * wy, wx * wy], 0)  # [4, n]
    ty = torch.stack([y0[y_i], y0[y_i], y1[y_i], y1[y_i]], 0)
    tx = torch.stack([x0[x_i], x1[x_i], x0[x_i], x1[x_i]], 0)
    tb = b_i[None].expand_as(ty)
    cd, cv = d[tb, ty, tx], valid[tb, ty, tx]
    dmin = torch.where(cv, cd, torch.full_like(cd, float("inf"))).min(0).values
    near = cv & (cd <= dmin * (1 + rel_jump))
    far = cv & ~near
    # Each tap's colour: the guide at the tap's centre (nearest full-resolution pixel).
    gy = ((ty.float() + 0.5) * (H / h) - 0.5).round().long().clamp(0, H - 1)
    gx = ((tx.float() + 0.5) * (W / w) - 0.5).round().long().clamp(0, W - 1)
    tcol = guide[tb, :, gy, gx].float()  # [4, n, 3]
    pix = guide[b_i, :, y_i, x_i].float()  # [n, 3]

    def set_stats(member: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        wgt = bw * member
        s = wgt.sum(0)
        safe = s.clamp_min(1e-12)
        col = (wgt[..., None] * tcol).sum(0) / safe[:, None]
        dep = (wgt * cd).sum(0) / safe
        cost = ((col - pix) ** 2).sum(-1) * colour_weight + 0.01 * (1 - s) ** 2
        return dep, torch.where(s > 0, cost, torch.full_like(cost, float("inf"))), s

    dn, cn, sn = set_stats(near)
    df, cf, sf = set_stats(far)
    pick_near = cn <= cf
    covered = torch.where(pick_near, sn, sf) > 0
    out[b_i, y_i, x_i] = torch.where(pick_near, dn, df) * covered
    out_valid[b_i, y_i, x_i] = covered
    return out, out_valid


def unproject(depth: torch.Tensor, K: torch.Tensor, c2w: torch.Tensor) -> torch.Tensor:
    """World points [B, H, W, 3] of depth [B, H, W] seen by cameras K [B,3,3], c2w [B,4,4]."""
    cam = pixel_rays(K.to(depth.dtype), *depth.shape[1:]) * depth[..., None]
    c2w = c2w.to(depth.dtype)
    return torch.einsum("bij,bhwj->bhwi", c2w[:, :3, :3], cam) + c2w[:, None, None, :3, 3]


def depth_slopes(depth: torch.Tensor, rel_jump: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pixel depth derivatives along x and y over same-surface neighbours only (central where both
    neighbours are on the surface, one-sided where one is, 0 = fronto-parallel where none is), and
    ``interior`` [B,H,W] bool: every pixel of the 3x3 neighbourhood is on the same surface.
    ``depth`` [B,H,W] is 0 where invalid (a 0 is on no surface)."""
    d = depth

    def along(dim: int) -> tuple[torch.Tensor, torch.Tensor]:
        n = d.shape[dim]
        hi, lo = d.narrow(dim, 1, n - 1), d.narrow(dim, 0, n - 1)
        cont = _same_surface(hi, lo, rel_jump)
        diff = (hi - lo).mul_(cont)
        slope, count = torch.zeros_like(d), torch.zeros_like(d)
        for t, acc in ((diff, slope), (cont, count)):
            acc.narrow(dim, 1, n - 1).add_(t)
            acc.narrow(dim, 0, n - 1).add_(t)
        return slope.div_(count.clamp(min=1)), count

    dx, cx = along(2)
    dy, cy = along(1)
    ok = cx.mul_(cy).sub_(3).clamp_(0, 1)  # both counts 2 <=> product 4; 0 on the image border

    def erode(t: torch.Tensor, dim: int) -> torch.Tensor:  # min over the 3 neighbours along dim, 0 outside
        n = t.shape[dim]
        out = torch.zeros_like(t)
        mid = out.narrow(dim, 1, n - 2)
        torch.minimum(t.narrow(dim, 0, n - 2), t.narrow(dim, 1, n - 2), out=mid)
        mid.copy_(torch.minimum(mid, t.narrow(dim, 2, n - 2)))
        return out

    interior = erode(erode(ok, 2), 1) > 0.5
    return dx, dy, interior
