"""The GPU check script: its analytic FLOP count against torch's FLOP counter, and its CPU smoke run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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


def test_gpu_check_smoke_runs_every_section(tmp_path):
    """``bash scripts/gpu_check.sh --smoke`` (the CPU run of every section) succeeds and writes its table
    as JSON; sections that need a wheel this environment lacks may only be skipped, never fail."""
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path)}
    proc = subprocess.run(["bash", str(root / "scripts" / "gpu_check.sh"), "--smoke"], cwd=tmp_path, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    entries = json.loads((tmp_path / "gpu_check.json").read_text())
    status = {e["section"]: e["status"] for e in entries}
    assert set(status) == {"env", "dit", "vae_encode", "umt5", "render", "generate_memory", "pipeline_run",
                           "spacetimepilot"}
    assert all(s in ("ok", "skipped") for s in status.values()), status
    assert status["dit"] == status["vae_encode"] == "ok"
    rows = {r[0]: r[1] for e in entries for r in e["rows"]}
    assert rows["DiT eager: steady fps (excl. block 0)"] > 0
    assert rows["DiT compiled (aot_eager): time to first frame"] > 0
    assert 0.8 < rows["Wan VAE encode peak ratio 21/5 frames"] < 1.2
    assert status["spacetimepilot"] == "ok" and rows["SpaceTimePilot sampler step"] > 0
    assert "gpu_check summary" in proc.stdout


def test_a_failing_section_does_not_stop_the_others(tmp_path):
    """The summary names a section that left no result and exits 1; the others' rows are still shown."""
    (tmp_path / "env.json").write_text(json.dumps({"section": "env", "status": "ok", "rows": [["torch", "x", ""]], "note": ""}))
    proc = subprocess.run([sys.executable, "-m", "scripts.gpu_sections.summary", "--results", str(tmp_path),
                           "--sections", "env", "dit", "--json", str(tmp_path / "all.json")],
                          cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True)
    assert proc.returncode == 1
    assert "== env: ok" in proc.stdout and "== dit: failed (no result file" in proc.stdout
    assert [e["status"] for e in json.loads((tmp_path / "all.json").read_text())] == ["ok", "failed"]
