"""gpu_check section ``spacetimepilot``: the second generator's CFG sampler on one 81-frame window at
480x832 in bf16 (random weights; ``scripts/bench_spacetimepilot.py`` measures it), 3 timed steps after one
warm-up step, then the Wan VAE encode/decode of the window; peak memory. Smoke: the tiny model, 2 steps,
no VAE."""

from __future__ import annotations

from argparse import Namespace

from scripts.bench_spacetimepilot import run as bench
from scripts.gpu_sections.common import Section, section_main


def run(s: Section) -> None:
    args = Namespace(smoke=s.smoke, steps=None if s.smoke else 3, warmup=0 if s.smoke else 1, no_vae=s.smoke,
                     compile=False, device=str(s.device), dtype=None, width=None, height=None)
    bench(args, report=s.record)


if __name__ == "__main__":
    section_main("spacetimepilot", run)
