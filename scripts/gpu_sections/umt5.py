"""gpu_check section ``umt5``: the umT5-XXL text encoder built directly on the device in bf16 (random
weights; no fp32 copy, no cast), its init time, the encode time of one 512-token prompt, and peak
memory. Smoke: a 2-layer encoder on the CPU in fp32."""

from __future__ import annotations

import torch

from models.umt5 import TEXT_LEN, UMT5Config, UMT5Encoder
from scripts.gpu_sections.common import Clock, Section, dtype_for, peak_gib, reset_peak, section_main

SMOKE = UMT5Config(vocab=1000, dim=64, dim_attn=64, dim_ffn=96, num_heads=4, num_layers=2)


def build_on_device(cfg: UMT5Config, device: torch.device, dtype: torch.dtype) -> UMT5Encoder:
    """Parameters allocated and initialised on ``device`` in ``dtype`` from the start."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            return UMT5Encoder(cfg).eval().requires_grad_(False)
    finally:
        torch.set_default_dtype(previous)


def run(s: Section) -> None:
    dev, dtype = s.device, dtype_for(s.device)
    cfg = SMOKE if s.smoke else UMT5Config()
    reset_peak(dev)
    clock = Clock(dev)
    a = clock.mark()
    model = build_on_device(cfg, dev, dtype)
    s.record("umT5 init on device", clock.seconds(a, clock.mark()), "s")
    s.record("umT5 parameters", sum(p.numel() for p in model.parameters()) / 1e9, "B")
    s.record("umT5 weight dtype", str(model.token_embedding.weight.dtype).removeprefix("torch."))
    ids = torch.randint(0, cfg.vocab, (1, TEXT_LEN), device=dev)
    mask = torch.ones_like(ids)
    with torch.no_grad():
        model(ids, mask)  # warm-up
        a = clock.mark()
        model(ids, mask)
        s.record(f"umT5 encode ({TEXT_LEN} tokens)", clock.seconds(a, clock.mark()), "s")
    allocated, reserved = peak_gib(dev)
    s.record("umT5 peak allocated", allocated, "GiB")
    s.record("umT5 peak reserved", reserved, "GiB")


if __name__ == "__main__":
    section_main("umt5", run)
