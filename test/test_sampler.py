"""Sampler: schedule, re-noise sources, block loop bookkeeping (tiny random DiT; parity is in test_dit_parity)."""

from __future__ import annotations

import pytest
import torch

from models.dit import CausalDiT, DiTConfig, pad_context
from models.sampler import generate_latents, generator_renoise, recorded_renoise, warped_schedule

TINY = DiTConfig(dim=32, ffn_dim=48, num_heads=2, num_layers=2, freq_dim=16, text_len=8, text_dim=12)


def test_warped_schedule_analytic():
    sched = warped_schedule()
    want_sigma = [5 * s / (1 + 4 * s) for s in (1.0, 0.75, 0.5, 0.25)]
    assert sched.sigmas == pytest.approx(want_sigma, abs=1e-7)
    assert sched.timesteps == pytest.approx([1000, 937.5, 833.3333, 625], abs=1e-3)
    assert warped_schedule([1000, 500], shift=1.0).timesteps == pytest.approx([1000, 500])
    with pytest.raises(ValueError, match="1..1000"):
        warped_schedule([0])


def test_renoise_sources():
    a = generator_renoise(torch.Generator().manual_seed(7))
    b = generator_renoise(torch.Generator().manual_seed(7))
    like = torch.zeros(1, dtype=torch.float64)
    x, y = a((2, 3), like), b((2, 3), like)
    assert torch.equal(x, y) and x.dtype == torch.float64 and not torch.equal(x, a((2, 3), like))
    rec = recorded_renoise([torch.ones(3, 2), torch.zeros(3, 2)])
    assert rec((1, 3, 2), like).eq(1).all() and rec((1, 3, 2), like).eq(0).all()
    with pytest.raises(ValueError, match="exhausted"):
        rec((1, 3, 2), like)


def _inputs(frames, seed=0):
    g = torch.Generator().manual_seed(seed)
    return dict(
        text_embeds=torch.randn(1, 5, TINY.text_dim, generator=g),
        ref_latents=torch.randn(1, frames, 16, 4, 6, generator=g),
        render_latents=torch.randn(1, frames, 16, 4, 6, generator=g),
        mask_latents=torch.randn(1, frames, 4, 4, 6, generator=g).sign(),
        noise=torch.randn(1, frames, 16, 4, 6, generator=g),
    )


@pytest.fixture(scope="module")
def dit():
    torch.manual_seed(0)
    return CausalDiT(TINY).eval().requires_grad_(False)


def test_block_loop_context_history_and_text_once(dit, monkeypatch):
    contexts, text_calls, blocks = [], [], []
    prefill, encode = dit.prefill, dit.encode_text
    monkeypatch.setattr(dit, "prefill", lambda ctx, *a, **k: (contexts.append(ctx.clone()), prefill(ctx, *a, **k))[1])
    monkeypatch.setattr(dit, "encode_text", lambda e: (text_calls.append(e), encode(e))[1])
    inp = _inputs(9)
    out = generate_latents(dit, **inp, renoise=torch.Generator().manual_seed(1), on_block=lambda b, x0: blocks.append((b, x0.clone())))
    assert len(text_calls) == 1
    assert [b for b, _ in blocks] == [0, 1, 2]
    assert [c.shape[1] for c in contexts] == [3, 6, 6]
    for b, ctx in enumerate(contexts):
        assert torch.equal(ctx[:, :3], pad_context(inp["ref_latents"][:, 3 * b:3 * b + 3], TINY.in_dim)), "time-aligned ref slice"
        if b:
            assert torch.equal(ctx[:, 3:], pad_context(blocks[b - 1][1], TINY.in_dim)), "history = previous block output"
        assert torch.equal(blocks[b][1], out[:, 3 * b:3 * b + 3])
    again = generate_latents(dit, **inp, renoise=torch.Generator().manual_seed(1))
    assert torch.equal(out, again), "same seed, same latents"
    other = generate_latents(dit, **inp, renoise=torch.Generator().manual_seed(2))
    assert not torch.equal(out, other)


def test_block_loop_rejects_bad_shapes(dit):
    inp = _inputs(4)
    with pytest.raises(ValueError, match="multiple of 3"):
        generate_latents(dit, **inp, renoise=torch.Generator())
    inp = _inputs(3)
    inp["mask_latents"] = inp["mask_latents"][:, :, :2]
    with pytest.raises(ValueError, match="mask_latents has shape"):
        generate_latents(dit, **inp, renoise=torch.Generator())
