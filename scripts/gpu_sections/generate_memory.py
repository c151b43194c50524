"""gpu_check section ``generate_memory``: the generate stage's peak host and GPU memory on a short and
a long input at a reduced size (random weights, fresh process per run; see
``scripts/bench_generate_memory.py``). Full: 57 and 400 frames at 128x80 on the device. Smoke: 9 and 21
frames at 32x16 on the CPU. Needs av and transformers."""

from __future__ import annotations

from scripts.gpu_sections.common import Section, require, section_main


def run(s: Section) -> None:
    require("av", "av")
    require("transformers", "transformers")
    from scripts.bench_generate_memory import measure

    frames, (w, h) = ([9, 21], (32, 16)) if s.smoke else ([57, 400], (128, 80))
    measure(frames, w, h, s.device.type, 8, s.record)


if __name__ == "__main__":
    section_main("generate_memory", run)
