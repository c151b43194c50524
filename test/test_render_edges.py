"""Renderer at depth edges: colour resampled on the winning surface only, and batched rendering
equal to frame-by-frame rendering (flat indexing across the batch)."""

from __future__ import annotations

import torch

from geometry.render import SourceViews, prepare_sources, render_views

H, W = 24, 32
F_PX = 40.0
FG, BG = (255, 0, 0), (0, 0, 255)  # colours of the near (left) and far (right) surfaces
Z_FG, Z_BG = 1.0, 3.0


def K() -> torch.Tensor:
    return torch.tensor([[F_PX, 0, (W - 1) / 2], [0, F_PX, (H - 1) / 2], [0, 0, 1]])


def step_scene(split: int = W // 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Colour uint8 [1,H,W,3] and depth [1,H,W]: a near red half left of column ``split``, a far
    blue half right of it, both fronto-parallel."""
    colour = torch.empty(1, H, W, 3, dtype=torch.uint8)
    colour[:, :, :split] = torch.tensor(FG, dtype=torch.uint8)
    colour[:, :, split:] = torch.tensor(BG, dtype=torch.uint8)
    depth = torch.full((1, H, W), Z_BG)
    depth[:, :, :split] = Z_FG
    return colour, depth


def shifted_w2c(px_at_fg: float) -> torch.Tensor:
    """Target camera translated along x so the near surface moves by ``px_at_fg`` pixels."""
    w2c = torch.eye(4)
    w2c[0, 3] = px_at_fg * Z_FG / F_PX
    return w2c


def test_edge_pixels_take_colour_from_their_own_surface_only():
    colour, depth = step_scene()
    src = prepare_sources(colour, depth, K()[None], torch.eye(4)[None])
    # The near surface moves 0.3 px left: target pixels of its last column sample the source 0.3 px
    # right of a red pixel centre, between a red and a blue tap; plain bilinear would mix them.
    out = render_views(src, shifted_w2c(-0.3)[None], K()[None], W, H)
    rgb, d = out.rgb[0], out.depth[0]
    near = out.mask[0] & ((d - Z_FG).abs() < 1e-3)
    far = out.mask[0] & ((d - Z_BG).abs() < 1e-3)
    assert bool((near | far).eq(out.mask[0]).all())
    assert int(near[:, W // 2 - 1].sum()) == H  # the column next to the edge is drawn by the near surface
    fg, bg = torch.tensor(FG) / 255.0, torch.tensor(BG) / 255.0
    torch.testing.assert_close(rgb.permute(1, 2, 0)[near], fg.expand(int(near.sum()), 3), atol=1e-6, rtol=0)
    torch.testing.assert_close(rgb.permute(1, 2, 0)[far], bg.expand(int(far.sum()), 3), atol=2e-6, rtol=0)  # bicubic weights sum to 1 within rounding


def test_batched_render_equals_per_frame_render():
    views, cams = [], []
    for split, shift in ((W // 2, -0.3), (W // 3, 0.45), (2 * W // 3, -1.2)):
        colour, depth = step_scene(split)
        views.append(prepare_sources(colour, depth, K()[None], torch.eye(4)[None]))
        cams.append(shifted_w2c(shift))
    single = [render_views(v, c[None], K()[None], W, H) for v, c in zip(views, cams)]
    batch = render_views(SourceViews.cat(views), torch.stack(cams), K()[None].expand(3, 3, 3), W, H)
    for i, one in enumerate(single):
        assert torch.equal(batch.mask[i], one.mask[0])
        torch.testing.assert_close(batch.depth[i], one.depth[0], atol=0, rtol=0)
        torch.testing.assert_close(batch.rgb[i], one.rgb[0], atol=1e-6, rtol=0)


def test_low_confidence_bands_are_kept_and_low_confidence_regions_dropped():
    """conf dips in a 3-px band along an edge and over a 12-px-wide thin-free region (sky): the band
    is within conf_reach of confident pixels and stays; the region's interior is dropped."""
    from geometry.unproject import valid_depth

    depth = torch.full((1, 20, 40), 2.0)
    conf = torch.ones(1, 20, 40)
    conf[:, :, 5:8] = 0.01  # a band along an edge (3 px)
    conf[:, :, 20:32] = 0.01  # a wide low-confidence region (12 px)
    valid = valid_depth(depth, conf, min_conf_ratio=0.1, conf_reach=4)[0]
    expected = torch.ones(20, 40, dtype=torch.bool)
    expected[:, 24:28] = False  # farther than 4 px from any confident column (19 and 32)
    assert torch.equal(valid, expected)
    assert torch.equal(valid_depth(depth, conf, 0.1, 0)[0], conf[0] >= 0.1)  # no reach: the plain threshold
    assert valid_depth(depth, conf, 0.0, 4).all()  # no threshold: conf ignored


def test_fine_texture_keeps_its_contrast_under_a_half_pixel_shift():
    """A fronto-parallel plane textured with a 3-px-period grey wave, seen shifted by half a pixel:
    the render must follow the analytic wave 0.5 + 0.3 sin(2 pi (x - 0.5) / 3). Bilinear resampling
    halves such a wave's amplitude (RMS error 0.1); the renderer's bicubic interior keeps more of it."""
    x = torch.arange(W, dtype=torch.float64)
    wave = lambda u: 0.5 + 0.3 * torch.sin(2 * torch.pi * u / 3)  # noqa: E731
    colour = (wave(x) * 255).round().to(torch.uint8)[None, None, :, None].expand(1, H, W, 3).contiguous()
    src = prepare_sources(colour, torch.full((1, H, W), Z_FG), K()[None], torch.eye(4)[None])
    out = render_views(src, shifted_w2c(0.5)[None], K()[None], W, H)
    inner = out.mask[0].clone()
    inner[:, :3] = inner[:, -3:] = False
    inner[:3] = inner[-3:] = False
    err = out.rgb[0, 0][inner].double() - wave(x - 0.5).expand(H, W)[inner]
    assert err.pow(2).mean().sqrt() < 0.06


def test_confidence_reach_is_a_square_dilation():
    """The shifted-OR dilation equals torch's max-pool over a (2r+1)^2 window (reference op)."""
    import torch.nn.functional as F

    from geometry.unproject import _dilate

    mask = torch.rand(2, 37, 53, generator=torch.Generator().manual_seed(1)) > 0.97
    for reach in (1, 2, 3, 4, 7, 40):
        expected = F.max_pool2d(mask[:, None].float(), 2 * reach + 1, stride=1, padding=reach)[:, 0] > 0
        assert torch.equal(_dilate(mask, reach), expected), reach
