"""Benchmarks of the geometry stage (prints figures; no assertions).

  da3           CPU time and peak memory per frame of DA3 (da3-small, random weights) on a synthetic
                480×832 clip, one chunk versus several (each setting in a fresh process).
  registration  pose error of chunked estimation on the synthetic scene: ground-truth cameras and
                depth split into chunks, each put in its own random similarity frame with noise,
                registered, and compared with ground truth (and with a single chunk carrying the
                same noise).
  smoothing     pose error with and without smoothing on a handheld path (true shake) and on a
                smooth path with estimation jitter.

Usage: .venv/bin/python scripts/bench_da3.py [da3|registration|smoothing ...] [--frames N]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np


def synthetic_clip(n: int, width: int = 832, height: int = 480):
    from geometry.synthetic import SyntheticScene, handheld_path, make_source_clip

    fps = 24.0
    return make_source_clip(SyntheticScene(), n, width, height, fps, handheld_path(n, fps, drift_m_per_s=(0.4, 0.0, 0.2)))


def run_one(n: int, chunk: int, overlap: int) -> dict:
    """One DA3 run in this process: CPU seconds and peak RSS (the caller starts a fresh process)."""
    import torch

    from geometry.da3 import estimate_geometry, load_da3

    frames = synthetic_clip(n).frames
    torch.manual_seed(0)
    model = load_da3("da3-small")
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cpu0, wall0 = time.process_time(), time.perf_counter()
    estimate_geometry(frames, model, chunk_size=chunk, overlap=overlap, progress=False)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"frames": n, "chunk": chunk, "overlap": overlap, "cpu_s": cpu, "wall_s": wall,
            "rss_before_mb": rss_before, "peak_rss_mb": peak, "threads": torch.get_num_threads()}


def bench_da3(n: int) -> None:
    from geometry.registration import chunk_ranges

    print(f"DA3 da3-small (random weights), {n} frames 480x832 -> 294x504, CPU fp32, {os.cpu_count()} cores")
    print(f"{'chunk/overlap':>14} {'frames run':>10} {'CPU s/frame':>12} {'wall s/frame':>13} {'RSS after load MB':>18} {'peak RSS MB':>12}")
    for chunk, overlap in ((n, 1), (n // 2, max(1, n // 6)), (n // 4, max(1, n // 12))):
        out = subprocess.run([sys.executable, __file__, "_one", str(n), str(chunk), str(overlap)],
                             capture_output=True, text=True, check=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        run = sum(len(c) for c in chunk_ranges(n, chunk, overlap))
        print(f"{chunk:>8}/{overlap:<5} {run:>10} {r['cpu_s'] / n:>12.3f} {r['wall_s'] / n:>13.3f} "
              f"{r['rss_before_mb']:>18.0f} {r['peak_rss_mb']:>12.0f}")


def bench_registration(n: int) -> None:
    from scipy.spatial.transform import Rotation

    from geometry.registration import ChunkStitcher, Sim3, chunk_ranges, pose_errors
    from geometry.synthetic import SyntheticScene, make_geometry

    clip = synthetic_clip(n, 208, 120)
    depth = make_geometry(SyntheticScene(), clip, depth_hw=(60, 104)).depth.astype(np.float64)
    gt = clip.c2w
    extent = np.linalg.norm(gt[:, :3, 3], axis=1).max()
    print(f"chunk registration on the synthetic scene: {n} frames, handheld path spanning {extent:.2f} m")
    print(f"{'noise (m, deg, depth)':>22} {'chunks':>8} {'centre err mean/max mm':>23} {'rot err mean/max deg':>21}")
    for pos_sigma, rot_deg, depth_sigma in ((0.0, 0.0, 0.0), (0.002, 0.05, 0.01), (0.01, 0.2, 0.05)):
        for chunk, overlap in ((n, 1), (16, 6), (8, 3)):
            rng = np.random.default_rng(0)
            s = ChunkStitcher(n)
            for i, r in enumerate(chunk_ranges(n, min(chunk, n), overlap)):
                t = Sim3(1.0 if i == 0 else float(rng.uniform(0.3, 3)), Rotation.random(random_state=rng).as_matrix(),
                         rng.normal(0, 2, 3))
                local = t.apply_c2w(gt[r.start:r.stop])
                local[:, :3, 3] += rng.normal(0, pos_sigma * t.scale, (len(r), 3))
                local[:, :3, :3] = local[:, :3, :3] @ Rotation.from_rotvec(
                    rng.normal(0, np.radians(rot_deg) + 1e-12, (len(r), 3))).as_matrix()
                d = depth[r.start:r.stop] * t.scale * np.exp(rng.normal(0, depth_sigma, (len(r), *depth.shape[1:])))
                s.add(r, local, d.astype(np.float32), np.ones(d.shape, np.float32), np.tile(np.eye(3), (len(r), 1, 1)))
            rot, pos = pose_errors(s.c2w, gt)
            n_chunks = len(chunk_ranges(n, min(chunk, n), overlap))
            print(f"{pos_sigma:>8.3f} {rot_deg:>5.2f} {depth_sigma:>6.2f} {n_chunks:>8} "
                  f"{1000 * pos.mean():>11.2f}/{1000 * pos.max():<11.2f} {rot.mean():>10.4f}/{rot.max():<10.4f}")


def bench_smoothing(n: int) -> None:
    from scipy.spatial.transform import Rotation

    from geometry.registration import pose_errors
    from geometry.smoothing import smooth_poses
    from geometry.synthetic import handheld_path

    rng = np.random.default_rng(0)
    handheld = handheld_path(n, 24.0)
    smooth = handheld_path(n, 24.0, shake_m=0.0, shake_deg=0.0)
    jitter = smooth.copy()
    jitter[1:, :3, 3] += rng.normal(0, 0.005, (n - 1, 3))
    jitter[1:, :3, :3] = jitter[1:, :3, :3] @ Rotation.from_rotvec(rng.normal(0, np.radians(0.3), (n - 1, 3))).as_matrix()
    print(f"pose smoothing, {n} frames at 24 fps: error against the true path (mean centre mm / mean rot deg)")
    for label, observed, truth in (("handheld, exact poses", handheld, handheld),
                                   ("smooth path + 5 mm / 0.3 deg jitter", jitter, smooth)):
        cells = []
        for sigma in (0.0, 1.0, 2.0, 4.0):
            rot, pos = pose_errors(smooth_poses(observed, sigma), truth)
            cells.append(f"σ={sigma:g}: {1000 * pos.mean():6.2f} / {rot.mean():.3f}")
        print(f"  {label:<36} " + "   ".join(cells))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_one":
        print(json.dumps(run_one(*map(int, sys.argv[2:5]))))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sections", nargs="*", default=["da3", "registration", "smoothing"],
                        choices=["da3", "registration", "smoothing"])
    parser.add_argument("--frames", type=int, default=48)
    args = parser.parse_args()
    for section in args.sections:
        {"da3": bench_da3, "registration": bench_registration, "smoothing": bench_smoothing}[section](args.frames)
        print()


if __name__ == "__main__":
    main()
