"""Conditions for the DiT taken from the render stage: the coverage mask packed onto the latent grid."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

MASK_CHANNELS = 4  # = the VAE's temporal stride: 4 consecutive frames per latent frame


def pack_mask(mask: torch.Tensor | np.ndarray, latent_hw: tuple[int, int]) -> torch.Tensor:
    """Pack a per-frame coverage mask into the DiT's 4 mask channels.

    ``mask``: ``[T, H, W]`` float in [0, 1] (1 = covered by the render), T >= 1. Returns
    ``[1, 1 + (T-1)//4, 4, h, w]`` float32 with ``(h, w) = latent_hw``: values mapped to [-1, 1]
    (+1 = covered), bilinearly resized (align_corners=False, no antialias), the first frame repeated
    4 times, truncated to a multiple of 4 frames, and each group of 4 consecutive frames stacked as the
    channels of one latent frame (so latent frame 0 holds frame 0 four times, latent k >= 1 holds frames
    4k-3 .. 4k).
    """
    if isinstance(mask, np.ndarray):
        mask = torch.from_numpy(np.array(mask, dtype=np.float32))  # own copy: the input may be read-only
    mask = mask.float()
    if mask.ndim != 3 or mask.shape[0] < 1:
        raise ValueError(f"pack_mask expects a mask [T, H, W] with T >= 1, got shape {list(mask.shape)}")
    h, w = latent_hw
    signed = mask[:, None] * 2.0 - 1.0
    small = F.interpolate(signed, size=(h, w), mode="bilinear", align_corners=False)[:, 0]
    frames = torch.cat([small[:1].expand(MASK_CHANNELS, h, w), small[1:]], dim=0)
    usable = frames.shape[0] - frames.shape[0] % MASK_CHANNELS
    return frames[:usable].reshape(1, usable // MASK_CHANNELS, MASK_CHANNELS, h, w).contiguous()
