"""Generate-stage memory against video length: ``generate_to_file`` on a short and a long input, each
in a fresh process, with random weights at a reduced size; peak host memory (VmHWM) and, on CUDA,
peak GPU memory, and the long/short ratios (flat memory: ratio close to 1).

  python3 -m scripts.bench_generate_memory                       # 57 and 400 frames, 128x80, CPU
  python3 -m scripts.bench_generate_memory --frames 57 400 --device cuda

Needs PyAV (video IO) and transformers (the umT5 tokenizer). The reduced models: DiT dim 256, 4
layers; Wan VAE dim 8 (``--vae_dim``); a 2-layer umT5 with the test suite's tiny tokenizer. Inputs:
a source of N random-texture frames, its render (the same frames), a half-covered mask and an
identity camera path with the identity time map.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from models.dit import CausalDiT, DiTConfig
from models.umt5 import CHECKPOINT_NAME, TOKENIZER_SUBDIR, UMT5Config, UMT5Encoder
from models.wan_vae import WanVAE, WanVAEConfig
from scripts.gpu_sections.common import peak_gib

TOKENIZER = Path(__file__).resolve().parents[1] / "test" / "assets" / "tiny_umt5_tokenizer"
TEXT = UMT5Config(vocab=1000, dim=64, dim_attn=64, dim_ffn=96, num_heads=4, num_layers=2)
DIT = DiTConfig(dim=256, ffn_dim=1024, num_heads=2, num_layers=4, text_len=16, text_dim=TEXT.dim)
FPS = 16.0


def write_weights(root: Path, dit: DiTConfig = DIT, vae: WanVAEConfig = WanVAEConfig(dim=8)):
    """Random DiT, Wan VAE and umT5 files in the published layout under ``root``; returns GenerateWeights."""
    from safetensors.torch import save_file

    from pipeline.generate_output import GenerateWeights

    torch.manual_seed(0)
    wan = root / "Wan2.1-T2V-1.3B"
    shutil.copytree(TOKENIZER, wan / TOKENIZER_SUBDIR, dirs_exist_ok=True)
    (wan / "config.json").write_text(json.dumps(dit.to_dict()))
    torch.save(WanVAE(vae).state_dict(), wan / "Wan2.1_VAE.pth")
    torch.save(UMT5Encoder(TEXT).state_dict(), wan / CHECKPOINT_NAME)
    save_file({k: v.contiguous() for k, v in CausalDiT(dit).state_dict().items()}, root / "dit.safetensors")
    return GenerateWeights.from_paths(root / "dit.safetensors", wan)


def write_inputs(root: Path, frames: int, width: int, height: int) -> tuple[Path, Path]:
    """A source video of ``frames`` frames and a render folder following it one to one."""
    from pipeline.video_io import write_video
    from trajectories.camera_path import CameraPath

    rng = np.random.default_rng(0)
    base = rng.integers(0, 200, (height, width, 3))
    video = np.stack([np.roll(base, 2 * i, axis=1) + (i % 50) for i in range(frames)]).astype(np.uint8)
    source = root / "source.mp4"
    write_video(source, video, FPS)
    render_dir = root / "render"
    render_dir.mkdir(parents=True, exist_ok=True)
    write_video(render_dir / "render.mp4", video, FPS)
    mask = np.zeros((frames, height, width), bool)
    mask[:, :, : width // 2] = True
    np.savez_compressed(render_dir / "mask.npz", packed=np.packbits(mask, axis=-1), shape=np.array(mask.shape))
    K = np.array([[width, 0, (width - 1) / 2], [0, width, (height - 1) / 2], [0, 0, 1.0]])
    CameraPath(np.tile(np.eye(4), (frames, 1, 1)), np.tile(K, (frames, 1, 1)), width, height, FPS,
               np.arange(frames)).save(render_dir / "cameras.json")
    return source, render_dir


def child(args) -> None:
    """Run the stage once and print its figures as one JSON line."""
    from pipeline.generate_output import GenerateOptions, GenerateWeights, generate_to_file

    weights = GenerateWeights.from_paths(args.weights / "dit.safetensors", args.weights / "Wan2.1-T2V-1.3B")
    device = torch.device(args.device)
    t0 = time.perf_counter()
    result = generate_to_file(args.inputs / "source.mp4", args.inputs / "render", "a room", weights,
                              args.inputs / "generated.mp4", GenerateOptions(device=args.device))
    host = peak_gib(torch.device("cpu"))[0]
    gpu = peak_gib(device)[0] if device.type == "cuda" else 0.0
    print(json.dumps({"frames": result.frames_written, "seconds": time.perf_counter() - t0,
                      "first_frame_s": result.first_frame_seconds, "host_peak_gib": host, "gpu_peak_gib": gpu}))


def measure(frames: list[int], width: int, height: int, device: str, vae_dim: int, report) -> list[dict]:
    """Figures of one fresh-process run per length; ``report(metric, value, unit)`` gets each one."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_weights(root / "weights", vae=WanVAEConfig(dim=vae_dim))
        runs = []
        for n in frames:
            inputs = root / f"in{n}"
            write_inputs(inputs, n, width, height)
            cmd = [sys.executable, "-m", "scripts.bench_generate_memory", "--child", "--weights", str(root / "weights"),
                   "--inputs", str(inputs), "--device", device]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode:
                raise RuntimeError(f"generate run on {n} frames failed:\n{out.stderr[-2000:]}")
            run = json.loads(out.stdout.strip().splitlines()[-1])
            runs.append(run)
            report(f"generate {n} frames {width}x{height}: seconds", run["seconds"], "s")
            report(f"generate {n} frames: host peak (VmHWM)", run["host_peak_gib"], "GiB")
            if device.startswith("cuda"):
                report(f"generate {n} frames: GPU peak allocated", run["gpu_peak_gib"], "GiB")
        report(f"host peak ratio {frames[-1]}/{frames[0]} frames", runs[-1]["host_peak_gib"] / runs[0]["host_peak_gib"], "x")
        if device.startswith("cuda"):
            report(f"GPU peak ratio {frames[-1]}/{frames[0]} frames", runs[-1]["gpu_peak_gib"] / runs[0]["gpu_peak_gib"], "x")
        return runs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, nargs="+", default=[57, 400], help="input lengths (default 57 400)")
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--height", type=int, default=80)
    p.add_argument("--vae_dim", type=int, default=8, help="Wan VAE base width (96 = full size)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--weights", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--inputs", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return
    measure(args.frames, args.width, args.height, args.device, args.vae_dim,
            lambda metric, value, unit: print(f"{metric:55s} {value:10.3f} {unit}"))


if __name__ == "__main__":
    main()
