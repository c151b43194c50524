"""Several source views of one static scene rendered into one target camera, fused by a hard z-test.

An image scene (one photo, or a set of photos of the same moment) has V source views and no time:
every target frame sees all of them. Each view is rendered into the target on its own with the
ordinary renderer (``geometry.render.render_views``); each target pixel then takes the nearest
surface over all views that cover it (ties go to the lower view index), with the colour of the view
that won. No blending: a surface seen by two views is drawn from one of them.

The generator's reference anchor (which source views it is shown per block) is chosen from the same
renders: ``anchor_views`` ranks the views by how many target pixels each covers over a block of
output frames (the reference system picks, per 3-latent chunk, the views with most overlap with the
target).

Conventions: as ``geometry.render`` (OpenCV axes, w2c world-to-camera, K in pixels of the target).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from geometry.render import RenderedViews, RenderSettings, SourceViews, render_views

# Relative depth difference below which two views' samples are taken as the same surface.
SAME_SURFACE = 0.01


@dataclass(frozen=True)
class FusedViews:
    """rgb [B,3,H,W] float in [0,1] (0 where uncovered); mask [B,H,W] bool; depth [B,H,W] target z-depth
    (0 where uncovered); view [B,H,W] int64 the winning source view (-1 where uncovered);
    coverage [B,V] int64 the pixels each view covers on its own (before the z-test)."""

    rgb: torch.Tensor
    mask: torch.Tensor
    depth: torch.Tensor
    view: torch.Tensor
    coverage: torch.Tensor


def fuse(per_view: list[RenderedViews], same_surface: float = SAME_SURFACE) -> FusedViews:
    """Hard z-test over V renders of the same B targets (each ``RenderedViews`` is one view's).

    A pixel takes the nearest covered depth d over the views. Views whose depth is within
    ``same_surface`` · d of it see the same surface (their depths differ only by estimation and
    resampling error); among those, the view covering most of this target frame wins (the one
    closest to the target's viewpoint, whose samples are least stretched), then the lower index.
    """
    mask = torch.stack([r.mask for r in per_view])  # [V,B,H,W]
    depth = torch.stack([r.depth for r in per_view]).masked_fill(~mask, float("inf"))
    nearest = depth.min(dim=0).values
    covered = mask.any(dim=0)
    coverage = mask.flatten(2).sum(-1)  # [V,B]
    V = len(per_view)
    # priority: coverage first, then the lower index; only same-surface candidates compete
    priority = (coverage * V + (V - 1 - torch.arange(V, device=coverage.device))[:, None]).to(torch.float64)
    candidate = mask & (depth <= nearest * (1.0 + same_surface))
    view = torch.where(candidate, priority[:, :, None, None], torch.tensor(-1.0, dtype=torch.float64)).argmax(dim=0)
    rgb = torch.stack([r.rgb for r in per_view])  # [V,B,3,H,W]
    index = view[None, :, None].expand(1, -1, 3, -1, -1)
    fused_rgb = rgb.gather(0, index)[0] * covered[:, None]
    won = depth.gather(0, view[None])[0]
    return FusedViews(
        rgb=fused_rgb,
        mask=covered,
        depth=torch.where(covered, won, torch.zeros_like(won)),
        view=torch.where(covered, view, torch.full_like(view, -1)),
        coverage=coverage.T.contiguous(),
    )


def render_fused(
    src: SourceViews, w2c: torch.Tensor, K: torch.Tensor, width: int, height: int,
    settings: RenderSettings = RenderSettings(),
) -> FusedViews:
    """Render every target b (w2c [B,4,4], K [B,3,3] at (height, width)) from all V views of ``src``, fused."""
    B, V = len(w2c), len(src.depth)
    per_view = []
    for v in range(V):
        one = src.select(torch.full((B,), v, dtype=torch.long, device=src.depth.device))
        per_view.append(render_views(one, w2c, K, width, height, settings))
    return fuse(per_view)


def anchor_views(coverage: np.ndarray, blocks: np.ndarray, count: int) -> list[list[int]]:
    """Per block, the ``count`` views covering most target pixels over the block's output frames.

    coverage: [N, V] pixels each view covers per output frame (``FusedViews.coverage``); blocks: [N]
    the block (0, 1, ...) of each output frame, nondecreasing. Returns one list of view indices per
    block, best first; ties go to the lower index.
    """
    coverage, blocks = np.asarray(coverage), np.asarray(blocks)
    if coverage.ndim != 2 or blocks.shape != coverage.shape[:1] or count < 1:
        raise ValueError(f"coverage must be [N, V] with blocks [N] and count >= 1; got {coverage.shape}, "
                         f"{blocks.shape}, {count}")
    return [[int(v) for v in np.argsort(-coverage[blocks == b].sum(axis=0), kind="stable")[:count]]
            for b in range(int(blocks.max()) + 1)]
