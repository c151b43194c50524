"""The GPU check script: its analytic FLOP count against torch's FLOP counter, and its CPU smoke run."""

from __future__ import annotations

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from models.dit import CausalDiT, DiTConfig, pad_context
from scripts.bench_generate import block_flops, pass_flops


def test_analytic_flops_match_torch_flop_counter():
    """``pass_flops`` equals what torch counts (matmuls, convolutions, attention through the math kernel)
    for a context pass and a denoising pass with a cache."""
    cfg = DiTConfig(dim=128, ffn_dim=320, num_heads=2, num_layers=3, text_len=16, text_dim=32, freq_dim=16)
    model = CausalDiT(cfg).eval()
    text = model.encode_text(torch.randn(1, 16, cfg.text_dim))
    tpf = model.tokens_per_frame(8, 12)
    cache = model.new_cache(1, 9 * tpf)
    counted = []
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
        with FlopCounterMode(display=False) as fc:
            model.prefill(pad_context(torch.randn(1, 6, cfg.out_dim, 8, 12), cfg.in_dim), text, cache)
        counted.append(fc.get_total_flops())
        with FlopCounterMode(display=False) as fc:
            model(torch.randn(1, 3, cfg.in_dim, 8, 12), 500.0, text, rope_offset=6, cache=cache)
        counted.append(fc.get_total_flops())
    assert counted == [pass_flops(cfg, 6 * tpf, 6 * tpf, full_last_layer=False), pass_flops(cfg, 3 * tpf, 9 * tpf)]
    assert block_flops(cfg, tpf, 6, steps=1) == sum(counted)
