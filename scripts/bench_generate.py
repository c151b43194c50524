"""Generation speed: the causal DiT block loop alone and with streaming decode (Wan VAE, TAEHV).

Random weights (speed does not depend on their values), random prompt embeddings and conditions.
Reports frames per second of output video, time to the first decoded frame and peak memory.

  .venv/bin/python scripts/bench_generate.py                 # CUDA: full size, 832x480, bf16
  .venv/bin/python scripts/bench_generate.py --reduced       # reduced model and 256x144 (CPU smoke run)
  options: --blocks N (default 4), --compile, --decode vae,tae,none, --dtype, --width/--height

Frame counting: block 0 yields 9 output frames, every later block 12 (4 per latent frame); fps =
output frames / wall time of the loop, after an untimed two-block warm-up.
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from models.dit import CausalDiT, DiTConfig
from models.sampler import BLOCK_FRAMES, generate_latents
from models.taehv import TAEHV
from models.wan_vae import WanVAE, WanVAEConfig

REDUCED = DiTConfig(dim=256, ffn_dim=1024, num_heads=2, num_layers=4, text_len=64, text_dim=256)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _random_module(cls, *args, device, dtype):
    with torch.device(device):
        return cls(*args).to(dtype).eval().requires_grad_(False)


def run(args) -> None:
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = {"bfloat16": torch.bfloat16, "float32": torch.float32, "float16": torch.float16}[
        args.dtype or ("bfloat16" if device.type == "cuda" else "float32")]
    if args.blocks < 2:
        raise SystemExit("--blocks must be at least 2")
    cfg = REDUCED if args.reduced else DiTConfig()
    width, height = args.width or (256 if args.reduced else 832), args.height or (144 if args.reduced else 480)
    torch.manual_seed(0)
    dit = _random_module(CausalDiT, cfg, device=device, dtype=dtype)
    if args.compile:
        dit.compile_blocks()
    h, w = height // 8, width // 8
    t_lat = BLOCK_FRAMES * args.blocks
    g = torch.Generator().manual_seed(0)
    ref, render, mask, noise = (torch.randn(1, t_lat, c, h, w, generator=g) for c in (16, 16, 4, 16))
    inputs = (torch.randn(1, cfg.text_len, cfg.text_dim, generator=g), ref, render, mask.sign(), noise)
    frames_out = 4 * t_lat - 3
    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}), dtype {dtype}, "
          f"{width}x{height}, DiT {sum(p.numel() for p in dit.parameters()) / 1e9:.3f} B params "
          f"({cfg.num_layers} layers, dim {cfg.dim}), {args.blocks} blocks = {frames_out} frames, compile={args.compile}")

    # Warm-up on two blocks: both context lengths (ref only, ref + history) meet every kernel once.
    warm = tuple(x[:, :2 * BLOCK_FRAMES] if x.ndim == 5 else x for x in inputs)
    with torch.no_grad():
        generate_latents(dit, *warm, renoise=torch.Generator().manual_seed(1))
    for decode in args.decode.split(","):
        decoder = None
        if decode == "vae":
            module = _random_module(WanVAE, WanVAEConfig(), device=device, dtype=dtype)
        elif decode == "tae":
            module = _random_module(TAEHV, device=device, dtype=dtype)
        elif decode != "none":
            raise SystemExit(f"unknown --decode entry {decode!r} (vae, tae, none)")
        if decode != "none":  # warm the decoder's kernels on one block, then time a fresh stream
            module.stream_decoder().push(ref[:, :BLOCK_FRAMES].to(device))
            decoder = module.stream_decoder()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        first = []
        _sync(device)
        t0 = time.perf_counter()

        def on_block(b, x0):
            if decoder is not None:
                decoder.push(x0)
            if not first:
                _sync(device)
                first.append(time.perf_counter() - t0)

        with torch.no_grad():
            generate_latents(dit, *inputs, renoise=torch.Generator().manual_seed(1), on_block=on_block)
        _sync(device)
        total = time.perf_counter() - t0
        label = {"none": "DiT alone", "vae": "DiT + Wan VAE decode", "tae": "DiT + TAEHV decode"}[decode]
        print(f"{label:24s} {frames_out / total:7.2f} fps   {total / args.blocks:7.3f} s/block   "
              f"first frame {first[0]:7.3f} s   peak memory {_peak_mb(device):8.0f} MiB")
        del decoder
        if decode != "none":
            del module


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reduced", action="store_true", help="reduced DiT and 256x144 (for a CPU smoke run)")
    p.add_argument("--blocks", type=int, default=4, help="blocks of 3 latent frames to time, >= 2 (default 4)")
    p.add_argument("--decode", default="none,vae,tae", help="comma list of none, vae, tae (default all)")
    p.add_argument("--compile", action="store_true", help="torch.compile the DiT blocks")
    p.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    p.add_argument("--dtype", default=None, choices=["bfloat16", "float16", "float32"], help="default: bf16 on CUDA, fp32 on CPU")
    p.add_argument("--width", type=int, default=None)
    p.add_argument("--height", type=int, default=None)
    run(p.parse_args())


if __name__ == "__main__":
    main()
