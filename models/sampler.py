"""Four-step flow-matching sampler and the causal block loop of the DiT.

Latents are ``[B, T, C, h, w]``. The video is generated in blocks of ``BLOCK_FRAMES`` latent frames.
For block b (frames s = 3b .. s+2) the clean context is the time-aligned reference slice
``ref[s:s+3]`` followed by the previous block's output (history = one block; none at block 0). The
context pass runs at timestep 0 with temporal RoPE positions starting at ``CONTEXT_OFFSET``; every
denoising pass places the current block at ``BLOCK_OFFSET`` (positions 6, 7, 8) whatever b is.

Per step: the model predicts the flow v; ``x0 = x_t - sigma_t * v`` (float64, cast back); unless it
is the last step, ``x_next = (1 - sigma_next) * x0 + sigma_next * eps`` with fresh Gaussian eps from
the re-noise source. The block's output is the last step's x0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import torch

from models.dit import CausalDiT, KVCache, TextCache, pad_context

BLOCK_FRAMES = 3
CONTEXT_OFFSET = 0
BLOCK_OFFSET = 2 * BLOCK_FRAMES
DENOISING_STEPS = (1000, 750, 500, 250)

Renoise = Callable[[torch.Size, torch.Tensor], torch.Tensor]
"""Draws one re-noise tensor: ``(shape, like) -> eps`` with ``like``'s dtype and device."""


@dataclass(frozen=True)
class FlowSchedule:
    """Model timesteps and their noise levels sigma (float32 values), first step first."""

    timesteps: tuple[float, ...]
    sigmas: tuple[float, ...]


def warped_schedule(steps: Iterable[int] = DENOISING_STEPS, shift: float = 5.0, train_steps: int = 1000) -> FlowSchedule:
    """Map configured step numbers onto the shifted training grid.

    sigma grid = linspace(1, 0, train_steps + 1)[:-1] warped by ``shift*s / (1 + (shift-1)*s)``;
    step n picks grid index ``train_steps - n``; timestep = train_steps * sigma. The default gives
    timesteps [1000, 937.5, 833.333, 625].
    """
    sigma = torch.linspace(1.0, 0.0, train_steps + 1, dtype=torch.float32)[:-1]
    sigma = shift * sigma / (1 + (shift - 1) * sigma)
    idx = [train_steps - int(n) for n in steps]
    if any(not 0 <= i < train_steps for i in idx):
        raise ValueError(f"denoising steps must lie in 1..{train_steps}, got {list(steps)}")
    return FlowSchedule(timesteps=tuple((sigma[idx] * train_steps).tolist()), sigmas=tuple(sigma[idx].tolist()))


def generator_renoise(generator: torch.Generator) -> Renoise:
    """Re-noise from a seeded generator, drawn on the generator's device in float32."""

    def draw(shape: torch.Size, like: torch.Tensor) -> torch.Tensor:
        eps = torch.randn(shape, generator=generator, device=generator.device, dtype=torch.float32)
        return to_device_async(eps, like)

    return draw


def to_device_async(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``t`` with ``like``'s device and dtype; a CPU tensor bound for CUDA goes through pinned memory
    with ``non_blocking`` so the host does not wait for the GPU's queue (no sync per step)."""
    if like.is_cuda and not t.is_cuda:
        t = t.pin_memory().to(like.device, non_blocking=True)
    return t.to(device=like.device, dtype=like.dtype)


def recorded_renoise(tensors: Iterable[torch.Tensor]) -> Renoise:
    """Re-noise from pre-recorded tensors, consumed in order (one per non-final step of each block)."""
    it = iter(tensors)

    def draw(shape: torch.Size, like: torch.Tensor) -> torch.Tensor:
        try:
            eps = next(it)
        except StopIteration:
            raise ValueError("recorded re-noise tensors exhausted") from None
        return eps.reshape(shape).to(device=like.device, dtype=like.dtype)

    return draw


def flow_to_x0(x_t: torch.Tensor, flow: torch.Tensor, sigma: float) -> torch.Tensor:
    """x0 = x_t - sigma * flow, computed in float64 and cast back to ``x_t``'s dtype."""
    return (x_t.double() - sigma * flow.double()).to(x_t.dtype)


def add_noise(x0: torch.Tensor, eps: torch.Tensor, sigma: float) -> torch.Tensor:
    """Point at noise level sigma on the straight path from x0 to eps."""
    return (1 - sigma) * x0 + sigma * eps


def denoise_block(
    dit: CausalDiT,
    text: TextCache,
    cache: KVCache,
    noise: torch.Tensor,
    condition: torch.Tensor,
    renoise: Renoise,
    schedule: FlowSchedule,
) -> torch.Tensor:
    """Run every step on one block: ``noise`` [B, F, C, h, w], ``condition`` = [mask | render] channels."""
    x = noise
    steps = list(zip(schedule.timesteps, schedule.sigmas))
    for i, (t, sigma) in enumerate(steps):
        flow = dit(torch.cat([x, condition], dim=2), t, text, rope_offset=BLOCK_OFFSET, cache=cache)
        x0 = flow_to_x0(x, flow, sigma)
        if i + 1 < len(steps):
            x = add_noise(x0, renoise(x0.shape, x0), steps[i + 1][1])
    return x0


@dataclass(frozen=True)
class BlockInputs:
    """One block's inputs, ``[B, BLOCK_FRAMES, C, h, w]`` each (any device; moved to the DiT's):
    time-aligned reference latents, render latents, packed mask (C = 4) and initial noise."""

    ref: torch.Tensor
    render: torch.Tensor
    mask: torch.Tensor
    noise: torch.Tensor


def _as_renoise(renoise: torch.Generator | Renoise | Iterable[torch.Tensor]) -> Renoise:
    if isinstance(renoise, torch.Generator):
        return generator_renoise(renoise)
    return renoise if callable(renoise) else recorded_renoise(renoise)


def stream_blocks(
    dit: CausalDiT,
    text_embeds: torch.Tensor,
    blocks: Iterable[BlockInputs],
    renoise: torch.Generator | Renoise | Iterable[torch.Tensor],
    schedule: FlowSchedule | None = None,
) -> Iterator[torch.Tensor]:
    """Generate block after block, yielding each block's float32 latents ``[B, BLOCK_FRAMES, C, h, w]``
    on the DiT's device as soon as it is done.

    ``blocks`` is consumed lazily, one block at a time: a caller can encode each block's
    conditions just before it is needed, so memory does not grow with the number of blocks.
    ``text_embeds`` [B, L, text_dim] (its K/V are computed once).
    """
    renoise = _as_renoise(renoise)
    schedule = schedule or warped_schedule()
    dev = dit.device
    text = dit.encode_text(text_embeds)
    cache = None
    history = None
    for inp in blocks:
        b, f, c, h, w = inp.noise.shape
        for name, arr, ch in (("ref", inp.ref, c), ("render", inp.render, c), ("mask", inp.mask, 4)):
            if tuple(arr.shape) != (b, BLOCK_FRAMES, ch, h, w):
                raise ValueError(f"block {name} has shape {list(arr.shape)}, expected {[b, BLOCK_FRAMES, ch, h, w]}")
        if cache is None:
            cache = dit.new_cache(b, 3 * BLOCK_FRAMES * dit.tokens_per_frame(h, w))
        ref = inp.ref.to(device=dev, dtype=torch.float32)
        clean = ref if history is None else torch.cat([ref, history], dim=1)
        dit.prefill(pad_context(clean, dit.config.in_dim), text, cache, rope_offset=CONTEXT_OFFSET)
        condition = torch.cat([inp.mask, inp.render], dim=2).to(device=dev, dtype=torch.float32)
        history = denoise_block(dit, text, cache, inp.noise.to(device=dev, dtype=torch.float32), condition, renoise, schedule)
        yield history


def generate_latents(
    dit: CausalDiT,
    text_embeds: torch.Tensor,
    ref_latents: torch.Tensor,
    render_latents: torch.Tensor,
    mask_latents: torch.Tensor,
    noise: torch.Tensor,
    renoise: torch.Generator | Renoise | Iterable[torch.Tensor],
    on_block: Callable[[int, torch.Tensor], None] | None = None,
    schedule: FlowSchedule | None = None,
) -> torch.Tensor:
    """Generate all latent frames of whole-video tensors block by block (see :func:`stream_blocks`).

    ``ref_latents``, ``render_latents``, ``noise``: [B, T, out_dim, h, w]; ``mask_latents``:
    [B, T, 4, h, w]; T a multiple of ``BLOCK_FRAMES``. ``renoise``: a generator, a ``Renoise``
    callable or recorded tensors. ``on_block(b, x0)`` receives each finished block (e.g. to decode and
    write it) as soon as it is done. Returns float32 latents on ``noise``'s device.
    """
    b, t, c, h, w = noise.shape
    for name, arr, ch in (("ref_latents", ref_latents, c), ("render_latents", render_latents, c), ("mask_latents", mask_latents, 4)):
        if tuple(arr.shape) != (b, t, ch, h, w):
            raise ValueError(f"{name} has shape {list(arr.shape)}, expected {[b, t, ch, h, w]}")
    if t == 0 or t % BLOCK_FRAMES:
        raise ValueError(f"latent frame count {t} must be a positive multiple of {BLOCK_FRAMES}")
    slices = [slice(k, k + BLOCK_FRAMES) for k in range(0, t, BLOCK_FRAMES)]
    blocks = (BlockInputs(ref_latents[:, s], render_latents[:, s], mask_latents[:, s], noise[:, s]) for s in slices)
    out = torch.empty(b, t, c, h, w, dtype=torch.float32, device=noise.device)
    for block, (s, x0) in enumerate(zip(slices, stream_blocks(dit, text_embeds, blocks, renoise, schedule))):
        out[:, s] = x0
        if on_block is not None:
            on_block(block, x0)
    return out
