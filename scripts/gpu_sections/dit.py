"""gpu_check section ``dit``: the full-size DiT block loop (1.3B, 832x480, bf16), eager and compiled,
with no decode, TAEHV and Wan VAE decode; per-phase times, steady fps, time to first frame, TFLOP/s,
peak memory (see ``scripts/bench_generate.py``). Smoke: the reduced DiT at 64x32 on the CPU, compiled
with the ``aot_eager`` backend (inductor's C++ build would dominate a CPU run) and a reduced VAE."""

from __future__ import annotations

from models.dit import DiTConfig
from models.wan_vae import WanVAEConfig
from scripts.bench_generate import REDUCED, bench
from scripts.gpu_sections.common import Section, dtype_for, section_main


def run(s: Section) -> None:
    if s.smoke:
        cfg, size, blocks, compile_, vae = REDUCED, (64, 32), 2, "aot_eager", WanVAEConfig(dim=8)
    else:
        cfg, size, blocks, compile_, vae = DiTConfig(), (832, 480), 4, True, WanVAEConfig()
    for mode in (False, compile_):
        bench(cfg, *size, blocks, ("none", "tae", "vae"), mode, s.device, dtype_for(s.device), s.record, vae_config=vae)


if __name__ == "__main__":
    section_main("dit", run)
