"""gpu_check section ``vae_encode``: streamed encode of a short and a long clip (Wan VAE and TAEHV);
seconds, frames per second and peak memory for each, and the long/short peak ratio (flat memory ~ 1).

Frames are pushed 12 at a time (one DiT block's worth), as the generate stage does. Full: 832x480,
49 and 481 frames, bf16 (TAEHV fp16). Smoke: a reduced Wan VAE at 32x16, 5 and 21 frames, fp32.
"""

from __future__ import annotations

import torch

from models.taehv import TAEHV
from models.wan_vae import WanVAE, WanVAEConfig
from scripts.bench_generate import random_module
from scripts.gpu_sections.common import Clock, Section, peak_gib, reset_peak, section_main

PUSH = 12


def encode_clip(model, frames: int, width: int, height: int, device, dtype) -> tuple[float, float]:
    """Seconds and peak GiB to stream-encode ``frames`` random frames (one random chunk pushed repeatedly)."""
    chunk = torch.rand(1, 3, PUSH, height, width, device=device, dtype=dtype) * 2 - 1
    stream = model.stream_encoder()
    reset_peak(device)
    clock = Clock(device)
    a = clock.mark()
    latents = 0
    with torch.no_grad():
        for start in range(0, frames, PUSH):
            latents += stream.push(chunk[:, :, :min(PUSH, frames - start)]).shape[1]
        latents += stream.flush().shape[1]
    seconds = clock.seconds(a, clock.mark())
    if latents != -(-frames // 4) and latents != 1 + (frames - 1) // 4:
        raise RuntimeError(f"{frames} frames gave {latents} latents")
    return seconds, peak_gib(device)[0]


def run(s: Section) -> None:
    dev = s.device
    width, height, lengths = (32, 16, (5, 21)) if s.smoke else (832, 480, (49, 481))
    cuda = dev.type == "cuda"
    models = {"Wan VAE": (WanVAE, (WanVAEConfig(dim=8) if s.smoke else WanVAEConfig(),), torch.bfloat16 if cuda else torch.float32),
              "TAEHV": (TAEHV, (), torch.float16 if cuda else torch.float32)}
    for name, (cls, args, dtype) in models.items():
        model = random_module(cls, *args, device=dev, dtype=dtype)
        encode_clip(model, 5, width, height, dev, dtype)  # warm-up
        peaks = []
        for n in lengths:
            seconds, peak = encode_clip(model, n, width, height, dev, dtype)
            peaks.append(peak)
            s.record(f"{name} encode {n} frames {width}x{height}", seconds, "s")
            s.record(f"{name} encode {n} frames: speed", n / seconds, "frames/s")
            s.record(f"{name} encode {n} frames: peak", peak, "GiB")
        s.record(f"{name} encode peak ratio {lengths[1]}/{lengths[0]} frames", peaks[1] / peaks[0], "x")
        del model


if __name__ == "__main__":
    section_main("vae_encode", run)
