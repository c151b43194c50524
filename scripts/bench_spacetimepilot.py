"""SpaceTimePilot speed and memory: the CFG sampler on one 81-frame window, plus Wan VAE encode/decode.

Random weights (speed and memory do not depend on their values), random prompt embeddings, source
latents and cameras; the umT5 encoder is not loaded (the generate stage releases it before the DiT
loads). Reports seconds per sampler step (two DiT calls: positive and negative prompt), the sampler
total, the VAE encode (81 source frames) and decode (21 latent frames) times, and peak memory
(CUDA: ``torch.cuda.max_memory_allocated``; CPU: the process's max RSS).

  .venv/bin/python scripts/bench_spacetimepilot.py            # CUDA: full size, 480x832x81, bf16, 20 steps
  .venv/bin/python scripts/bench_spacetimepilot.py --smoke    # tiny model, 64x48, 2 steps, CPU (what the test runs)
  options: --steps N, --warmup N, --no-vae, --compile, --device, --dtype, --width/--height
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from models.dit import DiTConfig
from models.spacetimepilot import SpaceTimePilot
from models.spacetimepilot_conditions import WINDOW
from models.spacetimepilot_sampler import Conditions, flow_schedule, sample
from models.wan_vae import WanVAE, WanVAEConfig

SMOKE = DiTConfig(dim=64, ffn_dim=128, num_heads=2, num_layers=2, freq_dim=32, text_len=16, text_dim=32)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _timed(device: torch.device, fn):
    _sync(device)
    t0 = time.perf_counter()
    out = fn()
    _sync(device)
    return out, time.perf_counter() - t0


def _print(metric: str, value, unit: str = "") -> None:
    print(f"{metric:<34} {value:>10.3f} {unit}" if isinstance(value, float) else f"{metric:<34} {value} {unit}")


def run(args, report=_print) -> None:
    """Time the sampler (and the Wan VAE unless ``args.no_vae``); every figure goes to ``report(metric, value,
    unit)`` (printed by default; ``scripts/gpu_check.sh`` records them in its table)."""
    device = torch.device(args.device or ("cpu" if args.smoke or not torch.cuda.is_available() else "cuda"))
    dtype = {"bfloat16": torch.bfloat16, "float32": torch.float32}[
        args.dtype or ("bfloat16" if device.type == "cuda" else "float32")]
    cfg = SMOKE if args.smoke else DiTConfig()
    width, height = args.width or (64 if args.smoke else 832), args.height or (48 if args.smoke else 480)
    steps = args.steps or (2 if args.smoke else 20)
    torch.manual_seed(0)
    with torch.device(device):
        dit = SpaceTimePilot(cfg).to(dtype).eval().requires_grad_(False)
    if args.compile:
        dit.compile_blocks()
    f, h, w = 1 + (WINDOW - 1) // 4, height // 8, width // 8
    g = torch.Generator().manual_seed(0)
    text = [dit.encode_text(torch.randn(1, cfg.text_len, cfg.text_dim, generator=g).to(device)) for _ in range(2)]
    cond = Conditions(
        source=torch.randn(1, f, cfg.out_dim, h, w, generator=g).to(device),
        target_times=torch.arange(WINDOW, dtype=torch.float32).flip(0)[None].to(device),
        source_times=torch.arange(WINDOW, dtype=torch.float32)[None].to(device),
        target_cameras=torch.randn(1, f, 12, generator=g).to(device),
        source_cameras=torch.randn(1, f, 12, generator=g).to(device),
    )
    noise = torch.randn(1, f, cfg.out_dim, h, w, generator=g).to(device)
    tokens = 2 * f * dit.tokens_per_frame(h, w)
    report("SpaceTimePilot setting", f"{width}x{height}x{WINDOW} {str(dtype).removeprefix('torch.')} on {device}, "
           f"{tokens} tokens per DiT call, CFG as two sequential calls, compile={args.compile}")
    report("SpaceTimePilot parameters", sum(p.numel() for p in dit.parameters()) / 1e9, "B")
    with torch.no_grad():
        if args.warmup:
            sample(dit, *text, noise, cond, flow_schedule(args.warmup))
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        _, total = _timed(device, lambda: sample(dit, *text, noise, cond, flow_schedule(steps)))
        report("SpaceTimePilot sampler step", total / steps, "s")
        report(f"SpaceTimePilot sampler ({steps} steps)", total, "s")
        report("SpaceTimePilot sampler peak memory", _peak_gib(device), "GiB")
        if args.no_vae:
            return
        del dit
        with torch.device(device):
            vae = WanVAE(WanVAEConfig(dim=8) if args.smoke else WanVAEConfig(), "wan21").to(dtype).eval()
        video = torch.rand(1, 3, WINDOW, height, width, generator=g).to(device, dtype) * 2 - 1
        _, t_enc = _timed(device, lambda: vae.encode(video))
        _, t_dec = _timed(device, lambda: vae.decode(noise))
        report(f"SpaceTimePilot VAE encode ({WINDOW} frames)", t_enc, "s")
        report(f"SpaceTimePilot VAE decode ({f} latents)", t_dec, "s")
        report("SpaceTimePilot peak memory (whole run)", _peak_gib(device), "GiB")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="tiny model at 64x48 on the CPU, 2 steps")
    p.add_argument("--steps", type=int, default=None, help="sampler steps to time (default 20; smoke 2)")
    p.add_argument("--warmup", type=int, default=1, help="untimed sampler steps first (default 1)")
    p.add_argument("--no-vae", action="store_true", help="skip the Wan VAE encode/decode")
    p.add_argument("--compile", action="store_true", help="torch.compile the DiT blocks")
    p.add_argument("--device", default=None, help="default: cuda if available (cpu with --smoke)")
    p.add_argument("--dtype", default=None, choices=["bfloat16", "float32"], help="default: bf16 on CUDA, fp32 on CPU")
    p.add_argument("--width", type=int, default=None)
    p.add_argument("--height", type=int, default=None)
    run(p.parse_args())


if __name__ == "__main__":
    main()
