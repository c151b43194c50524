"""Causal DiT: layout vs the published manifest, config parsing, strict loading, RoPE and attention oracles."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import save_file

from models.attention import attention, set_backend
from models.dit import CausalDiT, DiTConfig, pad_context
from models.manifest import CheckpointError, load_manifest, model_shapes
from models.rope import apply_rope, build_rope, rope_channel_split

# The published Wan2.1-T2V-1.3B config.json (in_dim is the T2V base's 16).
WAN_CONFIG = {
    "_class_name": "WanModel", "_diffusers_version": "0.30.0", "dim": 1536, "eps": 1e-06, "ffn_dim": 8960,
    "freq_dim": 256, "in_dim": 16, "model_type": "t2v", "num_heads": 12, "num_layers": 30, "out_dim": 16, "text_len": 512,
}
TINY = DiTConfig(dim=32, ffn_dim=48, num_heads=2, num_layers=2, freq_dim=16, text_len=8, text_dim=12)


def test_full_size_module_matches_manifest():
    cfg = DiTConfig.from_dict(WAN_CONFIG)
    assert cfg == DiTConfig() and cfg.in_dim == 36 and cfg.head_dim == 128
    with torch.device("meta"):
        model = CausalDiT(cfg)
    shapes = {f"model.{k}": v for k, v in model_shapes(model).items()}
    assert shapes == load_manifest("dit")
    assert sum(p.numel() for p in model.parameters()) == 1_419_119_680


def test_config_errors_name_the_file(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**WAN_CONFIG, "in_dim": 20}))
    with pytest.raises(CheckpointError, match=f"{path}.*in_dim 20"):
        DiTConfig.from_json(path)
    path.write_text(json.dumps({k: v for k, v in WAN_CONFIG.items() if k != "ffn_dim"}))
    with pytest.raises(CheckpointError, match="lacks key 'ffn_dim'"):
        DiTConfig.from_json(path)
    path.write_text(json.dumps({**WAN_CONFIG, "model_type": "i2v"}))
    with pytest.raises(CheckpointError, match="i2v"):
        DiTConfig.from_json(path)
    path.write_text("{not json")
    with pytest.raises(CheckpointError, match="cannot read"):
        DiTConfig.from_json(path)
    assert DiTConfig.from_dict(TINY.to_dict()) == TINY


@pytest.mark.parametrize("prefix", ["model.", ""])
def test_checkpoint_round_trip(tmp_path, prefix):
    torch.manual_seed(0)
    model = CausalDiT(TINY)
    sd = {prefix + k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(sd, tmp_path / "dit.safetensors", metadata={"model_config": json.dumps(TINY.to_dict())})
    (tmp_path / "config.json").write_text(json.dumps(TINY.to_dict()))
    for config in (None, tmp_path / "config.json", TINY):
        loaded = CausalDiT.from_checkpoint(tmp_path / "dit.safetensors", config)
        assert loaded.config == TINY
        for k, v in model.state_dict().items():
            assert torch.equal(loaded.state_dict()[k], v), k
    bf16 = CausalDiT.from_checkpoint(tmp_path / "dit.safetensors", dtype=torch.bfloat16)
    assert bf16.dtype == torch.bfloat16


def test_checkpoint_mismatch_names_first_problem(tmp_path):
    model = CausalDiT(TINY)
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    path = tmp_path / "dit.safetensors"
    save_file({k: v for k, v in sd.items() if k != "head.head.bias"}, path)
    with pytest.raises(CheckpointError, match="missing, first: 'head.head.bias'"):
        CausalDiT.from_checkpoint(path, TINY)
    save_file({**sd, "patch_embedding.weight": torch.zeros(32, 16, 1, 2, 2)}, path)
    with pytest.raises(CheckpointError, match=r"'patch_embedding.weight' has shape \[32, 16, 1, 2, 2\]"):
        CausalDiT.from_checkpoint(path, TINY)
    with pytest.raises(CheckpointError, match="no model_config metadata"):
        CausalDiT.from_checkpoint(path)
    with pytest.raises(CheckpointError, match="not found"):
        CausalDiT.from_checkpoint(tmp_path / "absent.safetensors", TINY)


def _rope_oracle(x: torch.Tensor, f: int, h: int, w: int, offset: int) -> torch.Tensor:
    """Complex float64 rotation built directly from the specification."""
    d = x.shape[-1]
    parts = rope_channel_split(d)

    def table(c):
        pos = torch.arange(1024, dtype=torch.float64)
        return torch.polar(torch.ones(1024, c // 2, dtype=torch.float64), torch.outer(pos, 10000.0 ** (-torch.arange(0, c, 2, dtype=torch.float64) / c)))

    ft, fh, fw = (table(c) for c in parts)
    freqs = torch.cat([
        ft[offset:offset + f].view(f, 1, 1, -1).expand(f, h, w, -1),
        fh[:h].view(1, h, 1, -1).expand(f, h, w, -1),
        fw[:w].view(1, 1, w, -1).expand(f, h, w, -1),
    ], dim=-1).reshape(f * h * w, 1, -1)
    xc = torch.view_as_complex(x.double().reshape(*x.shape[:-1], -1, 2))
    return torch.view_as_real(xc * freqs).flatten(-2).to(x.dtype)


@pytest.mark.parametrize("head_dim", [32, 128])
def test_rope_matches_complex_float64(head_dim):
    assert rope_channel_split(128) == (44, 42, 42) and rope_channel_split(32) == (12, 10, 10)
    f, h, w, offset = 3, 5, 7, 6
    x = torch.randn(2, f * h * w, 3, head_dim, generator=torch.Generator().manual_seed(1))
    got = apply_rope(x, build_rope(head_dim, f, h, w, offset, "cpu"))
    assert (got - _rope_oracle(x, f, h, w, offset)).abs().max() < 1e-5
    with pytest.raises(ValueError, match="exceed"):
        build_rope(head_dim, 3, 4, 4, 1022, "cpu")


def test_attention_matches_softmax_oracle():
    g = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(2, n, 3, 16, generator=g) for n in (5, 9, 9))
    scores = torch.einsum("bqhd,bkhd->bhqk", q.double(), k.double()) / math.sqrt(16)
    want = torch.einsum("bhqk,bkhd->bqhd", scores.softmax(-1), v.double()).float()
    assert (attention(q, k, v) - want).abs().max() < 1e-5
    set_backend("sdpa")
    try:
        assert (attention(q, k, v) - want).abs().max() < 1e-5
    finally:
        set_backend("auto")
    with pytest.raises(ValueError):
        set_backend("magic")


def test_cache_reuse_leaves_no_stale_tokens():
    """A pass reads exactly [context ; own tokens]: reusing a cache that held a longer context, or that
    already served passes, gives the same result as a fresh one, and the cached context is never altered."""
    torch.manual_seed(3)
    model = CausalDiT(TINY).eval()
    text = model.encode_text(torch.randn(1, 5, TINY.text_dim))
    short, long = (pad_context(torch.randn(1, n, 16, 4, 6), TINY.in_dim) for n in (2, 4))
    x = torch.randn(1, 3, TINY.in_dim, 4, 6)
    tokens = 7 * model.tokens_per_frame(4, 6)
    fresh = model.new_cache(1, tokens)
    model.prefill(short, text, fresh)
    assert fresh.length == 12
    want = model(x, 500.0, text, rope_offset=6, cache=fresh)
    reused = model.new_cache(1, tokens)
    model.prefill(long, text, reused)
    model(torch.randn_like(x), 900.0, text, rope_offset=6, cache=reused)
    model.prefill(short, text, reused)
    kept = [k[:, :12].clone() for k in reused.k]
    assert torch.equal(model(x, 500.0, text, rope_offset=6, cache=reused), want)
    assert torch.equal(model(x, 500.0, text, rope_offset=6, cache=reused), want)
    assert all(torch.equal(a, k[:, :12]) for a, k in zip(kept, reused.k))
    assert (model(x, 500.0, text, rope_offset=6) - want).abs().max() > 1e-4, "the cached context must matter"
    with pytest.raises(ValueError, match="KV cache holds"):
        model(x, 500.0, text, rope_offset=6, cache=model.new_cache(1, 10))
