"""What every section of ``scripts/gpu_check.sh`` shares: its command line, its result file, timers.

A section is a module ``scripts.gpu_sections.<name>`` with ``run(section: Section)``; ``section_main``
parses ``--smoke`` and ``--results DIR``, runs it and writes ``DIR/<name>.json``:
``{"section", "status": "ok" | "skipped" | "failed", "rows": [[metric, value, unit], ...], "note"}``.
A failure is recorded (last line of the error) and the section exits non-zero; the other sections
still run. Rows recorded before a failure are kept.

Timing on CUDA uses CUDA events (device time, no host sync inside the timed region); on the CPU the
wall clock. Memory on CUDA is the allocator's peak; on the CPU the process's peak resident set.
"""

from __future__ import annotations

import argparse
import json
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch


class Skip(Exception):
    """Raised by a section that cannot run here (a missing wheel, no GPU); the message says what to carry."""


@dataclass
class Section:
    name: str
    smoke: bool
    device: torch.device
    rows: list[list] = field(default_factory=list)

    def record(self, metric: str, value, unit: str = "") -> None:
        """One table row; printed at once so a slow section shows progress."""
        value = round(value, 4) if isinstance(value, float) else value
        self.rows.append([metric, value, unit])
        print(f"  {self.name}: {metric} = {value} {unit}".rstrip(), flush=True)


def section_main(name: str, run: Callable[[Section], None]) -> None:
    parser = argparse.ArgumentParser(description=f"gpu_check section {name!r}")
    parser.add_argument("--smoke", action="store_true", help="reduced sizes on the CPU")
    parser.add_argument("--results", type=Path, default=None, help="folder for <section>.json")
    args = parser.parse_args()
    device = torch.device("cpu" if args.smoke or not torch.cuda.is_available() else "cuda")
    section = Section(name, args.smoke, device)
    status, note = "ok", ""
    t0 = time.perf_counter()
    try:
        run(section)
    except Skip as exc:
        status, note = "skipped", str(exc)
    except Exception as exc:  # noqa: BLE001 - a section reports its own failure, the script goes on
        traceback.print_exc()
        status, note = "failed", f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
    section.record("section seconds", time.perf_counter() - t0, "s")
    print(f"[{name}] {status}{': ' + note if note else ''}", flush=True)
    if args.results is not None:
        args.results.mkdir(parents=True, exist_ok=True)
        (args.results / f"{name}.json").write_text(json.dumps(
            {"section": name, "status": status, "rows": section.rows, "note": note}, indent=1))
    raise SystemExit(1 if status == "failed" else 0)


def require(module: str, wheel: str) -> None:
    """Skip the section when ``module`` cannot be imported, naming the wheel to carry."""
    try:
        __import__(module)
    except ImportError as exc:
        raise Skip(f"needs {module} ({exc}); carry and pip install the {wheel} wheel") from None


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Clock:
    """Marks on the device's timeline: CUDA events on a GPU (read after one sync at the end), the
    wall clock on the CPU. ``mark()`` returns a handle; ``seconds(a, b)`` the time between two marks."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    def mark(self):
        if not self.cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def seconds(self, a, b) -> float:
        if not self.cuda:
            return b - a
        b.synchronize()
        return a.elapsed_time(b) / 1e3


def reset_peak(device: torch.device) -> None:
    """Start a new peak measurement (CUDA allocator stats; on Linux CPU the process high-water mark)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    elif Path("/proc/self/clear_refs").exists():
        Path("/proc/self/clear_refs").write_text("5")


def peak_gib(device: torch.device) -> tuple[float, float]:
    """(peak allocated, peak reserved) GiB on CUDA; (peak resident set, same) on the CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30, torch.cuda.max_memory_reserved(device) / 2**30
    for line in Path("/proc/self/status").read_text().splitlines() if Path("/proc/self/status").exists() else []:
        if line.startswith("VmHWM:"):
            rss = int(line.split()[1]) / 2**20
            return rss, rss
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return rss, rss


def dtype_for(device: torch.device) -> torch.dtype:
    """bf16 on CUDA (the product's dtype), fp32 on the CPU."""
    return torch.bfloat16 if device.type == "cuda" else torch.float32
