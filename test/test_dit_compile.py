"""Regional compilation of the DiT: one Dynamo graph per pass shape, reused by every layer, no graph breaks."""

from __future__ import annotations

import shutil

import pytest
import torch
from torch._dynamo.utils import counters

from models.dit import CausalDiT, DiTConfig, pad_context


def _run(num_layers: int, backend: str | None) -> tuple[list[torch.Tensor], dict, dict]:
    """Context pass then two denoising passes of a reduced model, eager (``backend`` None) or compiled.

    Returns the flow outputs, Dynamo's stats counters and its graph-break counters for this run.
    """
    torch._dynamo.reset()
    counters.clear()
    torch.manual_seed(0)
    cfg = DiTConfig(dim=32, ffn_dim=48, num_heads=2, num_layers=num_layers, freq_dim=16, text_len=8, text_dim=12)
    model = CausalDiT(cfg).eval()
    if backend is not None:
        model.compile_blocks(backend=backend, fullgraph=True)
    text = model.encode_text(torch.randn(1, 5, cfg.text_dim))
    cache = model.new_cache(1, 9 * model.tokens_per_frame(4, 6))
    outs = []
    with torch.no_grad():
        for frames in (3, 6):  # block 0 (reference only), later blocks (reference + history)
            model.prefill(pad_context(torch.randn(1, frames, cfg.out_dim, 4, 6), cfg.in_dim), text, cache)
            for t in (1000.0, 500.0):
                outs.append(model(torch.randn(1, 3, cfg.in_dim, 4, 6), t, text, rope_offset=6, cache=cache))
    return outs, dict(counters["stats"]), dict(counters["graph_break"])


def test_compile_count_does_not_grow_with_layers():
    """Every layer reuses the block graph: the same number of Dynamo compilations for 3 and 8 layers,
    no graph break inside a block (``fullgraph=True`` would raise), and the outputs equal eager ones.
    (With 2 layers the context pass runs only one compiled block, so 3 is the smallest comparable size.)"""
    graphs = {}
    for layers in (3, 8):
        eager, _, _ = _run(layers, None)
        compiled, stats, breaks = _run(layers, "aot_eager")
        graphs[layers] = stats.get("unique_graphs", 0)
        assert not breaks, f"graph breaks in the block: {breaks}"
        assert all((a - b).abs().max() <= 1e-5 for a, b in zip(compiled, eager))
    assert graphs[3] == graphs[8] > 0, f"compilations per layer count: {graphs}"
    # static context pass, static denoising pass, then one dynamic-shape graph for each after the
    # context grows from 3 to 6 frames
    assert graphs[8] <= 4, graphs


@pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None, reason="inductor on CPU needs a C compiler")
def test_inductor_compiled_blocks_match_eager_fp32():
    eager, _, _ = _run(2, None)
    compiled, _, breaks = _run(2, "inductor")
    assert not breaks
    assert all((a - b).abs().max() <= 1e-4 * max(1.0, a.abs().max().item()) for a, b in zip(compiled, eager))
