"""Causal DiT + sampler vs the reference run in ``causal_dit_tiny.safetensors`` (fp32, 1e-5 absolute)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from models.dit import CausalDiT
from models.sampler import BLOCK_OFFSET, CONTEXT_OFFSET, add_noise, denoise_block, flow_to_x0, generate_latents, recorded_renoise, warped_schedule

TOL = 1e-5


@pytest.fixture(scope="module")
def ref(shared_dir):
    with safe_open(str(shared_dir / "fixtures" / "causal_dit_tiny.safetensors"), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


@pytest.fixture(scope="module")
def dit(ref, tmp_path_factory):
    """The fixture's weights written as a checkpoint and read back through ``from_checkpoint``."""
    tensors, meta = ref
    path = tmp_path_factory.mktemp("dit") / "tiny.safetensors"
    save_file({k[3:]: v for k, v in tensors.items() if k.startswith("sd.")}, path, metadata={"model_config": meta["model_config"]})
    return CausalDiT.from_checkpoint(path)


def _close(got, want, what):
    err = (got - want).abs().max().item()
    assert got.shape == want.shape and err < TOL, f"{what}: max abs error {err:.2e}"


def test_config_from_metadata(dit, ref):
    assert dit.config.to_dict() | json.loads(ref[1]["model_config"]) == dit.config.to_dict()
    assert [c["freqs_offset"] for c in json.loads(ref[1]["A.calls"])] == [CONTEXT_OFFSET] + [BLOCK_OFFSET] * 4


def test_schedule_matches_reference(ref):
    sched = warped_schedule()
    assert torch.equal(torch.tensor(sched.timesteps), ref[0]["meta.denoising_step_list"])
    for i, t in enumerate(sched.timesteps):
        assert ref[0][f"A.call{i + 1}.timestep"].eq(t).all()
    assert sched.sigmas == pytest.approx([1.0, 0.9375, 5 / 6, 0.625], abs=1e-7)


def test_part_a_context_pass_and_kv_cache(dit, ref):
    t, _ = ref
    text = dit.encode_text(t["A.in.prompt_embeds"])
    ctx = t["A.in.context_frames"]
    assert t["A.call0.timestep"].eq(0).all() and torch.equal(t["A.call0.x_in"], ctx)
    _close(dit(ctx, 0.0, text, rope_offset=CONTEXT_OFFSET), t["A.call0.flow_pred"], "context pass output")
    cache = dit.new_cache(1, 54)
    dit.prefill(ctx, text, cache, rope_offset=CONTEXT_OFFSET)
    assert cache.length == 36
    for layer in range(dit.config.num_layers):
        _close(cache.k[layer][:, :36], t[f"A.kv{layer}.k"], f"layer {layer} K")
        _close(cache.v[layer][:, :36], t[f"A.kv{layer}.v"], f"layer {layer} V")


def test_part_a_each_denoising_call(dit, ref):
    t, _ = ref
    text = dit.encode_text(t["A.in.prompt_embeds"])
    cache = dit.new_cache(1, 54)
    dit.prefill(t["A.in.context_frames"], text, cache)
    sched = warped_schedule()
    cond = t["A.in.render_block"]
    assert torch.equal(t["A.call1.x_in"], t["A.in.noisy_input"])
    for i in range(4):
        x = t[f"A.call{i + 1}.x_in"]
        flow = dit(torch.cat([x, cond], dim=2), sched.timesteps[i], text, rope_offset=BLOCK_OFFSET, cache=cache)
        _close(flow, t[f"A.call{i + 1}.flow_pred"], f"call {i + 1} flow")
        x0 = flow_to_x0(x, flow, sched.sigmas[i])
        _close(x0, t[f"A.call{i + 1}.x0_pred"], f"call {i + 1} x0")
        if i < 3:
            _close(add_noise(x0, t[f"A.renoise{i}"][None], sched.sigmas[i + 1]), t[f"A.call{i + 2}.x_in"], f"call {i + 2} input")
    out = denoise_block(dit, text, cache, t["A.in.noisy_input"], cond, recorded_renoise(t[f"A.renoise{i}"] for i in range(3)), sched)
    _close(out, t["A.out.denoised_pred"], "block output")


def test_part_b_two_block_loop(dit, ref):
    t, meta = ref
    kv = [c["kv_size"][1] for c in json.loads(meta["B.calls"])]
    assert kv == [-1, 4680, 4680, 4680, 4680, -1, 9360, 9360, 9360, 9360], "fixture: block 0 has no history, block 1 has one block"
    seen = []
    out = generate_latents(
        dit, t["A.in.prompt_embeds"], t["B.in.ref_latent"], t["B.in.render_latent"], t["B.in.mask_latent"], t["B.in.noise"],
        [t[f"B.renoise{i}"] for i in range(6)], on_block=lambda b, x0: seen.append((b, x0.clone())),
    )
    _close(out, t["B.out.latents"], "two-block latents")
    assert [b for b, _ in seen] == [0, 1]
    for b, x0 in seen:
        assert torch.equal(x0, out[:, 3 * b:3 * b + 3])
