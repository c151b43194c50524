"""Writes synthetic scenes in InSpatio-World 1.5's scene-folder layout (for the tests; see geometry.inspatio15)."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
from PIL import Image

from geometry.inspatio15 import Q_MAX
from geometry.synthetic import SyntheticScene, intrinsics_for
from trajectories import format_matrix_trajectory
from trajectories.orbit import orbit_c2w

H, W = 96, 160


def views(n: int):
    """n views of the synthetic room on a 1 m orbit at time 0: c2w [n,4,4], K, z-depth [n,H,W] (0 = nothing), rgb uint8."""
    scene = SyntheticScene()
    c2w = orbit_c2w(np.linspace(0, 6, n), np.linspace(0, 15, n), np.ones(n))
    K = intrinsics_for(W, H)
    shots = [scene.render(m, K, W, H, 0.0) for m in c2w]
    depth = np.stack([np.where(np.isfinite(s.depth), s.depth, 0.0) for s in shots])
    rgb = np.stack([np.round(s.rgb * 255).astype(np.uint8) for s in shots])
    return c2w, K, depth, rgb


def codes_of(depth: np.ndarray) -> tuple[np.ndarray, float, float]:
    lo, hi = float(depth.min()), float(depth.max())
    return np.round((depth - lo) / (hi - lo) * Q_MAX).astype(np.uint16), lo, hi


def write_scene(folder: Path, kind: str, n: int, frames: int, valid: int) -> dict:
    c2w, K, depth, rgb = views(n)
    (folder / "input").mkdir(parents=True)
    (folder / "depth").mkdir()
    codes, ranges = [], []
    for d in depth:
        q, lo, hi = codes_of(d)
        codes.append(q), ranges.append((lo, hi))
    if kind == "image":
        for v in range(n):
            Image.fromarray(rgb[v]).save(folder / "input" / f"view_{v:02d}.png")
            Image.fromarray(codes[v]).save(folder / "depth" / f"depth_{v:02d}.png")
    else:
        for name, frames_, fmt in (("input/video.mp4", rgb, None), ("depth/depth.mp4", codes, "codes")):
            with av.open(str(folder / name), "w") as out:
                stream = out.add_stream("libx264rgb", rate=12)
                stream.width, stream.height, stream.pix_fmt = W, H, "rgb24"
                stream.options = {"qp": "0", "preset": "ultrafast"}
                for f in frames_:
                    if fmt == "codes":  # R = high byte, G = low byte
                        f = np.stack([f >> 8, f & 0xFF, np.zeros_like(f)], -1).astype(np.uint8)
                    for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                        out.mux(packet)
                for packet in stream.encode():
                    out.mux(packet)
    (folder / "depth" / "metadata.txt").write_text("".join(f"{lo!r} {hi!r}\n" for lo, hi in ranges))
    (folder / "depth" / "source_intrinsics.txt").write_text(" ".join(repr(float(v)) for v in K.reshape(9)) + "\n")
    (folder / "depth" / "source_tcw.txt").write_text(format_matrix_trajectory(np.linalg.inv(c2w)))
    target_c2w = orbit_c2w(np.linspace(0, 4, frames), np.linspace(0, 10, frames), np.ones(frames))
    (folder / "input" / "target_tcw.txt").write_text(format_matrix_trajectory(np.linalg.inv(target_c2w)))
    (folder / "input" / "prompt.txt").write_text("a small room with a red ball\n")
    (folder / "scene.json").write_text(json.dumps({
        "output_id": "room", "kind": kind, "views": n if kind == "image" else 1, "frames": frames,
        "valid_frames": valid, "fps": 12, "resolution": [H, W], "target_intrinsics": K.tolist(),
        "depth_encoding": "uint16_minmax_v1"}))
    return {"c2w": c2w, "K": K, "depth": depth, "rgb": rgb, "codes": np.stack(codes), "ranges": ranges,
            "target_c2w": target_c2w}
