"""gpu_check section ``dit``: the full-size DiT block loop (1.3B, 832x480, bf16), eager and compiled,
with no decode, TAEHV and Wan VAE decode; per-phase times, steady fps, time to first frame, TFLOP/s,
peak memory (see ``scripts/bench_generate.py``). Smoke: a 2-layer DiT at 32x16 on the CPU with a
reduced VAE; the compiled run uses the ``aot_eager`` backend (inductor's C++ build would dominate a
CPU run) and no decode (the decode code is the same as in the eager run)."""

from __future__ import annotations

from models.dit import DiTConfig
from models.wan_vae import WanVAEConfig
from scripts.bench_generate import bench
from scripts.gpu_sections.common import Section, dtype_for, section_main

SMOKE = DiTConfig(dim=64, ffn_dim=128, num_heads=2, num_layers=2, text_len=16, text_dim=64)


def run(s: Section) -> None:
    if s.smoke:
        cfg, size, compile_, vae = SMOKE, (32, 16), "aot_eager", WanVAEConfig(dim=8)
        runs = ((False, ("none", "tae", "vae")), (compile_, ("none",)))
    else:
        cfg, size, compile_, vae = DiTConfig(), (832, 480), True, WanVAEConfig()
        runs = ((False, ("none", "tae", "vae")), (compile_, ("none", "tae", "vae")))
    for mode, decoders in runs:
        bench(cfg, *size, 2 if s.smoke else 4, decoders, mode, s.device, dtype_for(s.device), s.record, vae_config=vae)


if __name__ == "__main__":
    section_main("dit", run)
