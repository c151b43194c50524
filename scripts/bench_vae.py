"""Benchmark streaming decode of the full-size Wan VAE and TAEHV (random weights; speed and memory do not
depend on weight values): seconds per latent frame, output frames per second, and peak memory while
pushing blocks of 3 latent frames, for two video lengths (memory should not grow with length).

    python3 -m scripts.bench_vae --width 832 --height 480 --device cuda --dtype bfloat16
    python3 -m scripts.bench_vae            # CPU smoke size (208x120)

(run from the repository root; the project need not be installed). Streamed encode is measured by
the ``vae_encode`` section of ``scripts/gpu_check.sh``.
"""

from __future__ import annotations

import argparse
import time

import torch

from models.taehv import TAEHV
from models.wan_vae import WanVAE
from scripts.gpu_sections.common import peak_gib, reset_peak


def run(model, latents: torch.Tensor, block: int, device: torch.device) -> tuple[float, int, int]:
    """Push ``latents`` in blocks; returns (seconds, frames out, peak bytes during the run)."""
    reset_peak(device)
    stream = model.stream_decoder()
    t0 = time.perf_counter()
    frames = 0
    for start in range(0, latents.shape[1], block):
        frames += stream.push(latents[:, start:start + block]).shape[2]
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0, frames, int(peak_gib(device)[0] * 2**30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=208)
    parser.add_argument("--height", type=int, default=120)
    parser.add_argument("--latents", type=int, nargs="+", default=[3, 6], help="video lengths in latent frames")
    parser.add_argument("--block", type=int, default=3, help="latent frames per push")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default=None, help="default: bfloat16 (VAE) / float16 (TAE) on CUDA, float32 on CPU")
    parser.add_argument("--models", nargs="+", default=["vae", "tae"], choices=["vae", "tae"])
    args = parser.parse_args()
    device = torch.device(args.device)
    h, w = args.height // 8, args.width // 8
    print(f"device {device}, {args.width}x{args.height} (latent {w}x{h}), blocks of {args.block} latent frames")
    for name in args.models:
        default = {"vae": torch.bfloat16, "tae": torch.float16}[name] if device.type == "cuda" else torch.float32
        dtype = getattr(torch, args.dtype) if args.dtype else default
        torch.manual_seed(0)
        model = (WanVAE() if name == "vae" else TAEHV()).eval().requires_grad_(False).to(device, dtype)
        run(model, torch.randn(1, 1, 16, h, w, device=device), 1, device)  # warm-up
        for n in args.latents:
            latents = torch.randn(1, n, 16, h, w, device=device)
            seconds, frames, peak = run(model, latents, args.block, device)
            print(f"{name} {str(dtype).removeprefix('torch.')}: {n} latents -> {frames} frames in {seconds:.2f} s "
                  f"({seconds / n:.3f} s/latent, {frames / seconds:.1f} fps), peak memory {peak / 2**30:.2f} GiB (weights included)")
        del model


if __name__ == "__main__":
    main()
