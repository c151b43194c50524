"""gpu_check section ``render``: the render stage's torch renderer on the device (ms per frame for
``prepare_sources`` and ``render_views``) on a random plane-and-noise scene at 832x480 with depth at
504x294 (smoke: 128x72, depth 64x36), batches of 8 frames, camera moved 5 cm sideways."""

from __future__ import annotations

import torch

from geometry.render import prepare_sources, render_views
from scripts.gpu_sections.common import Clock, Section, section_main

BATCH = 8


def run(s: Section) -> None:
    dev = s.device
    (w, h), (dw, dh) = ((128, 72), (64, 36)) if s.smoke else ((832, 480), (504, 294))
    g = torch.Generator(dev).manual_seed(0)
    colour = torch.randint(0, 256, (BATCH, h, w, 3), generator=g, device=dev, dtype=torch.uint8)
    depth = 2 + 0.1 * torch.rand(BATCH, dh, dw, generator=g, device=dev)
    K_depth = torch.tensor([[dw * 0.9, 0, (dw - 1) / 2], [0, dw * 0.9, (dh - 1) / 2], [0, 0, 1.0]], device=dev).expand(BATCH, 3, 3)
    K = torch.tensor([[w * 0.9, 0, (w - 1) / 2], [0, w * 0.9, (h - 1) / 2], [0, 0, 1.0]], device=dev).expand(BATCH, 3, 3)
    c2w = torch.eye(4, device=dev).expand(BATCH, 4, 4)
    clock = Clock(dev)
    times = {"prepare_sources": [], "render_views": []}
    coverage = 0.0
    for i in range(4):  # the first round warms up
        a = clock.mark()
        src = prepare_sources(colour, depth, K_depth, c2w)
        b = clock.mark()
        w2c = torch.eye(4, device=dev).repeat(BATCH, 1, 1)  # a new tensor each round: render_views caches by identity
        w2c[:, 0, 3] = 0.05
        out = render_views(src, w2c, K, w, h)
        c = clock.mark()
        if i:
            times["prepare_sources"].append(clock.seconds(a, b))
            times["render_views"].append(clock.seconds(b, c))
        coverage = out.mask.float().mean().item()
    for name, secs in times.items():
        s.record(f"{name} {w}x{h}", 1e3 * sum(secs) / len(secs) / BATCH, "ms/frame")
    s.record("rendered coverage", coverage, "fraction")


if __name__ == "__main__":
    section_main("render", run)
