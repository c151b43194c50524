"""SpaceTimePilot's sampler: flow matching (shift 5, no re-noising) with classifier-free guidance.

Schedule (float32, ``SPACETIMEPILOT_SPEC.md`` section 6): s = linspace(1, 0, N+1)[:-1],
sigma = 5s / (1 + 4s), timestep = 1000 sigma. Step k: the DiT predicts the flow for the positive and
the negative prompt (two sequential calls: half the activation memory of a batch of two), guided
flow = neg + cfg (pos - neg), then x <- x + flow (sigma_{k+1} - sigma_k) with sigma_N = 0. The source
latents, cameras and frame times are the same at every step. Latents are ``[B, F, C, h, w]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from models.dit import TextCache
from models.sampler import FlowSchedule, warped_schedule
from models.spacetimepilot import SpaceTimePilot

SHIFT = 5.0
CFG_SCALE = 5.0
DEFAULT_STEPS = 20
TRAIN_TIMESTEPS = 1000


def flow_schedule(steps: int = DEFAULT_STEPS, shift: float = SHIFT) -> FlowSchedule:
    """The N-step schedule: sigmas of the shifted grid linspace(1, 0, N+1)[:-1], timesteps 1000 sigma (float32)."""
    if steps < 1:
        raise ValueError(f"the sampler needs at least one step, got {steps}")
    sigmas = torch.tensor(warped_schedule(range(steps, 0, -1), shift, train_steps=steps).sigmas, dtype=torch.float32)
    return FlowSchedule(timesteps=tuple((sigmas * TRAIN_TIMESTEPS).tolist()), sigmas=tuple(sigmas.tolist()))


@dataclass(frozen=True)
class Conditions:
    """What stays fixed over the steps: source latents [B, F, C, h, w], frame times [B, T], cameras [B, F, 12]."""

    source: torch.Tensor
    target_times: torch.Tensor
    source_times: torch.Tensor
    target_cameras: torch.Tensor
    source_cameras: torch.Tensor


def sample(
    dit: SpaceTimePilot,
    positive: TextCache,
    negative: TextCache,
    noise: torch.Tensor,
    cond: Conditions,
    schedule: FlowSchedule,
    cfg_scale: float = CFG_SCALE,
    on_step: Callable[[int, torch.Tensor], None] | None = None,
) -> torch.Tensor:
    """Denoise ``noise`` [B, F, C, h, w] over ``schedule``; returns latents in ``noise``'s dtype.

    ``on_step(k, latents)`` sees the latents after each step (progress, tests).
    """
    sigmas = torch.tensor(schedule.sigmas + (0.0,), dtype=torch.float32)
    deltas = sigmas[1:] - sigmas[:-1]
    x = noise
    extra = (cond.target_times, cond.source_times, cond.target_cameras, cond.source_cameras)
    for k, t in enumerate(schedule.timesteps):
        t = torch.tensor([t], dtype=torch.float32)
        pos = dit(x, cond.source, t, positive, *extra)
        neg = dit(x, cond.source, t, negative, *extra)
        flow = neg + cfg_scale * (pos - neg)
        x = x + flow.to(x.dtype) * deltas[k].to(x.dtype)
        if on_step is not None:
            on_step(k, x)
    return x
