"""Depth maps to 3D points: intrinsics scaling and cropping, flying-pixel removal, edge-aware upsampling, unprojection.

Conventions: OpenCV camera axes (x right, y down, z forward); pixel (i, j) has its centre at
image coordinates (x=j, y=i); intrinsics K map camera coordinates to those pixel coordinates; depth
is z-depth in scene units; invalid depth is represented by a ``valid`` mask (depth there is 0).
Intrinsics move between resolutions the way Depth-Anything-3 moves them (``scale_intrinsics``:
plain multiplication, x' = x * W'/W), so a cache's intrinsics mean what DA3 means by them; the
pixel-centre mapping x' = (x + 0.5) * W'/W - 0.5 is used only where images are resampled.
All functions are batched over a leading frame dimension B and run on any torch device.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F


def scale_intrinsics(K: torch.Tensor, from_hw: tuple[int, int], to_hw: tuple[int, int]) -> torch.Tensor:
    """K [..., 3, 3] for an image of size ``from_hw`` -> K for the same view at ``to_hw``, by DA3's
    convention (``InputProcessor._resize_ixt``, its COLMAP export): rows 0 and 1 multiplied by
    W'/W and H'/H, i.e. x' = x * W'/W, so fx' = fx * W'/W and cx' = cx * W'/W."""
    K = K.clone()
    K[..., 0, :] *= to_hw[1] / from_hw[1]
    K[..., 1, :] *= to_hw[0] / from_hw[0]
    return K


def crop_box(from_hw: tuple[int, int], to_hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """(y0, x0, h, w): the centred window of an image of ``from_hw`` with the aspect of ``to_hw``, in whole
    pixels, as ``pipeline.video_io`` crops (``resize="crop"``). The side that is relatively too long is
    shortened to round(other side x aspect); the margin is split with any odd pixel at the end."""
    fh, fw = from_hw
    h, w = to_hw
    if fw * h > fh * w:  # wider than the target aspect: keep the height, crop columns
        ch, cw = fh, round(fh * w / h)
    else:
        ch, cw = round(fw * h / w), fw
    return (fh - ch) // 2, (fw - cw) // 2, ch, cw


def crop_intrinsics(K: torch.Tensor, from_hw: tuple[int, int], to_hw: tuple[int, int]) -> torch.Tensor:
    """K [..., 3, 3] for an image of size ``from_hw`` -> K for its centre crop resampled to ``to_hw``.

    With the window (y0, x0, h, w) = ``crop_box(from_hw, to_hw)``, shifted by whole pixels and then
    scaled as in ``scale_intrinsics``: x' = (x - x0) * W'/w, y' = (y - y0) * H'/h, so fx' = fx * W'/w,
    cx' = (cx - x0) * W'/w (likewise in y). When the window is exact (w = W * fh / H or h = H * fw / W
    without rounding) this is "scale by s = max(H'/fh, W'/fw) so the frame covers to_hw, then drop
    equal margins": cx' = cx * s - (fw * s - W') / 2. Assumes K's last row is [0, 0, 1]."""
    y0, x0, h, w = crop_box(from_hw, to_hw)
    K = K.clone()
    K[..., 0, 2] -= x0
    K[..., 1, 2] -= y0
    return scale_intrinsics(K, (h, w), to_hw)


def cover_hw(from_hw: tuple[int, int], to_hw: tuple[int, int]) -> tuple[int, int]:
    """(h, w) of an image of ``from_hw`` scaled, aspect kept, to the smallest size that covers ``to_hw``
    (each side rounded, never below ``to_hw``): the whole frame at the pixel density of its centre
    crop to ``to_hw``."""
    s = max(to_hw[0] / from_hw[0], to_hw[1] / from_hw[1])
    return max(to_hw[0], round(from_hw[0] * s)), max(to_hw[1], round(from_hw[1] * s))


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


def _dilate(mask: torch.Tensor, reach: int) -> torch.Tensor:
    """Square (Chebyshev) dilation of a [B, h, w] bool mask by ``reach`` pixels: per axis, shifted ORs
    whose shifts double the covered range (1, 2, 4, ...; a few bool ops instead of a max-pool)."""
    out = mask.clone()
    for dim in (2, 1):
        n, done = out.shape[dim], 0
        while done < reach:
            step = min(done + 1, reach - done)  # covered [-done, done] -> [-done - step, done + step]
            if step < n:
                src = out.clone()
                out.narrow(dim, step, n - step).logical_or_(src.narrow(dim, 0, n - step))
                out.narrow(dim, 0, n - step).logical_or_(src.narrow(dim, step, n - step))
            done += step
    return out


def valid_depth(
    depth: torch.Tensor, conf: torch.Tensor | None = None, min_conf_ratio: float = 0.0, conf_reach: int = 0
) -> torch.Tensor:
    """Finite, positive depth [B, h, w] that is confident: ``conf`` (if given) at least ``min_conf_ratio``
    x the frame's median, or within ``conf_reach`` pixels (Chebyshev) of such a pixel. A depth
    network's confidence dips in a band along every depth edge, thin structures included, where the
    depth itself is fine (ramps between surfaces are removed by :func:`flying_pixels`); only regions
    of low confidence wider than 2 x ``conf_reach`` (sky, glare) are dropped whole."""
    valid = torch.isfinite(depth) & (depth > 0)
    if conf is not None and min_conf_ratio > 0:
        med = conf.flatten(1).median(dim=1).values.view(-1, 1, 1)
        confident = conf >= min_conf_ratio * med
        if conf_reach > 0 and not bool(confident.all()):
            confident = _dilate(confident, conf_reach)
        valid &= confident
    return valid


def flying_pixels(depth: torch.Tensor, valid: torch.Tensor, rel_jump: float) -> torch.Tensor:
    """Pixels on a depth ramp between two surfaces: discontinuous (relative jump > ``rel_jump``) with
    both neighbours along x, or both along y. A pixel on either side of a sharp edge is discontinuous
    with one neighbour only and is kept; a 1-pixel-wide structure is dropped. [B, h, w] bool."""
    d = torch.where(valid, depth, torch.zeros_like(depth))
    out = torch.zeros_like(valid)
    for dim in (2, 1):
        n = d.shape[dim]
        if n < 3:
            continue
        # jump[k]: pixels k and k + 1 along dim are both valid and discontinuous.
        jump = _jumps(d.narrow(dim, 1, n - 1), d.narrow(dim, 0, n - 1), rel_jump)
        jump &= valid.narrow(dim, 1, n - 1)
        jump &= valid.narrow(dim, 0, n - 1)
        out.narrow(dim, 1, n - 2).logical_or_(jump.narrow(dim, 0, n - 2) & jump.narrow(dim, 1, n - 2))
    return out


@functools.lru_cache(maxsize=8)
def _upsample_taps(out_hw: tuple[int, int], in_hw: tuple[int, int], device: torch.device) -> tuple[torch.Tensor, ...]:
    """Bilinear taps from an in_hw grid to the pixel centres of an out_hw grid (read-only, cached):
    x0, fx [W] and y0, fy [H] the lower tap (clamped so x0 + 1 is inside) and its weight, and
    cell [H*W] int64 the flat index of the lower-left tap's cell in the (h-1) x (w-1) cell grid."""
    (H, W), (h, w) = out_hw, in_hw

    def axis(n_out: int, n_in: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = ((torch.arange(n_out, device=device, dtype=torch.float32) + 0.5) * (n_in / n_out) - 0.5).clamp_(0, n_in - 1)
        x0 = x.floor().clamp_(max=max(n_in - 2, 0)).long()
        return x0, x - x0

    x0, fx = axis(W, w)
    y0, fy = axis(H, h)
    cell = (y0[:, None] * max(w - 1, 1) + x0).view(-1)
    return x0, fx, y0, fy, cell


def gather_pixels(image: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Float colours [n, C] of an image [B, C, H, W] at flat pixel indices b * H * W + y * W + x."""
    channels = image.transpose(0, 1).reshape(image.shape[1], -1)
    return torch.stack([c.index_select(0, index) for c in channels], -1).float()


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
    d = torch.where(valid, depth, torch.zeros_like(depth)).float()
    if (h, w) == (H, W):  # already at colour resolution: every pixel is its own only tap (the general path agrees)
        return d, valid.clone()
    x0, fx, y0, fy, cell = _upsample_taps((H, W), (h, w), depth.device)
    out = F.interpolate(d[:, None], size=(H, W), mode="bilinear", align_corners=False)[:, 0]

    # A low-res cell (y, x)-(y+1, x+1) is an edge cell if a corner is invalid or the corners jump.
    cmin = _cells(torch.where(valid, d, torch.full_like(d, float("inf"))), torch.minimum)
    cell_edge = (_cells(d, torch.maximum) > cmin.mul_(1 + rel_jump)).logical_or_(~_cells(valid, torch.logical_and))
    edge = torch.stack([c.view(-1).index_select(0, cell) for c in cell_edge]).view(B, H, W)
    out_valid = ~edge
    p = edge.view(-1).nonzero()[:, 0]  # flat output pixels b * H * W + y * W + x
    if len(p) == 0:
        return out, out_valid
    b_i = p.div(H * W, rounding_mode="floor")
    r = p - b_i * (H * W)
    y_i = r.div(W, rounding_mode="floor")
    x_i = r - y_i * W
    wx, wy = fx[x_i], fy[y_i]
    bw = torch.stack([(1 - wx) * (1 - wy), wx * (1 - wy), (1 - wx) * wy, wx * wy], 0)  # [4, n]
    ty0, tx0 = y0[y_i], x0[x_i]
    ty1, tx1 = (ty0 + 1).clamp_(max=h - 1), (tx0 + 1).clamp_(max=w - 1)
    ty = torch.stack([ty0, ty0, ty1, ty1], 0)
    tx = torch.stack([tx0, tx1, tx0, tx1], 0)
    taps = (ty * w).add_(tx).add_(b_i * (h * w)).view(-1)
    cd = d.view(-1).index_select(0, taps).view(4, -1)
    cv = valid.view(-1).index_select(0, taps).view(4, -1)
    dmin = torch.where(cv, cd, torch.full_like(cd, float("inf"))).min(0).values
    near = cv & (cd <= dmin * (1 + rel_jump))
    far = cv & ~near
    # Each tap's colour: the guide at the tap's centre (nearest full-resolution pixel).
    gy = ((ty.float() + 0.5) * (H / h) - 0.5).round().long().clamp(0, H - 1)
    gx = ((tx.float() + 0.5) * (W / w) - 0.5).round().long().clamp(0, W - 1)
    tcol = gather_pixels(guide, (gy * W).add_(gx).add_(b_i * (H * W)).view(-1)).view(4, -1, 3)  # [4, n, 3]
    pix = gather_pixels(guide, p)  # [n, 3]

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
    out.view(-1).index_copy_(0, p, torch.where(pick_near, dn, df) * covered)
    out_valid.view(-1).index_copy_(0, p, covered)
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
        diff = hi - lo
        # float 1 where the pair is on one surface (a comparison written straight into a float tensor)
        cont = torch.lt(diff.abs(), torch.minimum(hi, lo).mul_(rel_jump), out=torch.empty_like(diff))
        diff.mul_(cont)
        pad = (1, 1) if dim == d.dim() - 1 else (0, 0, 1, 1)

        def to_both_pixels(t: torch.Tensor) -> torch.Tensor:  # t[k] (pair k, k+1) added to pixels k and k+1
            padded = F.pad(t, pad)
            return padded.narrow(dim, 1, n) + padded.narrow(dim, 0, n)

        count = to_both_pixels(cont)
        return to_both_pixels(diff).div_(count.clamp(min=1)), count

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
