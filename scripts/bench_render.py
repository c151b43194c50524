"""Benchmark and quality check of the render stage on the synthetic scene.

Speed: the render stage end to end (open the DA3-layout compressed geometry npz with depth, conf and
image as the stage does, streaming depth and conf and checking image's layout; decode the source video, render, encode render.mp4
and mask.mp4, write mask.npz and cameras.json) in a fresh child process, reporting wall ms/frame,
CPU ms/frame and peak RSS.
Quality (``--quality``): PSNR of the decoded render.mp4 against the analytic ground truth over the
covered pixels that are truly visible, and over those within 5 px of a depth edge; mask IoU.

  .venv/bin/python scripts/bench_render.py --frames 49 --quality --repeat 10
  .venv/bin/python scripts/bench_render.py --frames 400 --repeat 3   # 49 source frames, ping-pong time map
  .venv/bin/python scripts/bench_render.py --frames 400 --source-frames 400   # a 400-frame geometry cache
  .venv/bin/python scripts/bench_render.py --frames 49 --quality --scene yard --edge-conf 0.05   # the harder scene
  .venv/bin/python scripts/bench_render.py --frames 49 --depth-width 832 --depth-height 480   # depth at output size

With --repeat, wall/CPU/RSS are medians over the runs, with their ranges.

The scene (--scene, 832x480 video, depth at 504x294, handheld source camera) is cached in --workdir
as a DA3-layout compressed npz (depth, conf, image, cameras). The camera path orbits 1 m around the
point 1 m in front of the first camera (yaw 0 -> --yaw degrees, pitch 0 -> --pitch degrees).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from geometry.cache import open_geometry, save_geometry
from geometry.synthetic import SCENES, SourceClip, ground_truth, handheld_path, intrinsics_for, make_geometry, make_scene, make_source_clip
from pipeline.render_folder import RenderFolder
from pipeline.render_output import RenderOptions, render_to_folder
from pipeline.video_io import EncodeOptions, file_sha256, read_video, write_video
from trajectories.camera_path import CameraPath
from trajectories.orbit import orbit_c2w


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--frames", type=int, default=49, help="output frames [49]")
    p.add_argument("--source-frames", type=int, default=49, help="source video frames [49]")
    p.add_argument("--width", type=int, default=832)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--depth-width", type=int, default=504)
    p.add_argument("--depth-height", type=int, default=294)
    p.add_argument("--fps", type=float, default=24.0)
    p.add_argument("--scene", choices=sorted(SCENES), default="room", help="synthetic scene (geometry.synthetic.SCENES) [room]")
    p.add_argument("--edge-conf", type=float, default=1.0,
                   help="conf of depth pixels within 1 px of a depth edge, as a depth network reports them [1 = uniform]")
    p.add_argument("--yaw", type=float, default=20.0, help="final yaw of the orbit in degrees [20]")
    p.add_argument("--pitch", type=float, default=5.0, help="final pitch of the orbit in degrees [5]")
    p.add_argument("--radius", type=float, default=1.0, help="orbit radius in metres [1]")
    p.add_argument("--chunk", type=int, default=None, help="frames rendered per batch [RenderOptions default]")
    p.add_argument("--workers", type=int, default=None, help="render threads [RenderOptions default]")
    p.add_argument("--source-cache", type=int, default=None, help="prepared source frames kept [RenderOptions default]")
    p.add_argument("--crf", type=int, default=None, help="render.mp4 crf [the render stage's: RenderOptions().encode]")
    p.add_argument("--preset", default=None, help="render.mp4 x264 preset [the render stage's: RenderOptions().encode]")
    p.add_argument("--workdir", type=Path, default=Path("/tmp/bench_render"))
    p.add_argument("--quality", action="store_true", help="also score against the analytic ground truth")
    p.add_argument("--repeat", type=int, default=1, help="runs (each in a fresh process); reports median, min and max [1]")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def scene_dir(args: argparse.Namespace) -> Path:
    name = f"{args.scene}_{args.source_frames}_{args.width}x{args.height}_{args.depth_width}x{args.depth_height}_conf{args.edge_conf:g}"
    return args.workdir / name


def prepare(args: argparse.Namespace) -> None:
    d = scene_dir(args)
    if (d / "geometry.npz").exists():
        return
    t = time.perf_counter()
    scene = make_scene(args.scene)
    clip = make_source_clip(scene, args.source_frames, args.width, args.height, args.fps, handheld_path(args.source_frames, args.fps))
    write_video(d / "source.mp4", clip.frames, clip.fps, EncodeOptions(crf=10, preset="medium"))
    geo = make_geometry(scene, clip, (args.depth_height, args.depth_width), edge_conf=args.edge_conf)
    geo = dataclasses.replace(geo, meta=dataclasses.replace(geo.meta, video_sha256=file_sha256(d / "source.mp4")))
    np.save(d / "source_c2w.npy", clip.c2w)
    save_geometry(d / "geometry.npz", geo)
    print(f"prepared {d} in {time.perf_counter() - t:.1f} s")


def camera_path(args: argparse.Namespace, source_c2w: np.ndarray) -> CameraPath:
    n, m = args.frames, args.source_frames
    s = np.linspace(0, 1, n)
    pose = orbit_c2w(args.pitch * s, args.yaw * s, np.full(n, args.radius))
    cycle = np.concatenate([np.arange(m), np.arange(m - 2, 0, -1)]) if m > 1 else np.zeros(1, np.int64)
    source_index = np.arange(n) if n <= m else cycle[np.arange(n) % len(cycle)]
    K = intrinsics_for(args.width, args.height)
    return CameraPath(source_c2w[:1] @ pose, np.repeat(K[None], n, 0), args.width, args.height, args.fps, source_index.astype(np.int64))


def options(args: argparse.Namespace) -> RenderOptions:
    defaults = RenderOptions()
    enc = defaults.encode  # what the render stage writes
    enc = dataclasses.replace(enc, crf=enc.crf if args.crf is None else args.crf, preset=args.preset or enc.preset)
    return RenderOptions(
        chunk_frames=args.chunk or defaults.chunk_frames,
        workers=args.workers or defaults.workers,
        source_cache=defaults.source_cache if args.source_cache is None else args.source_cache,
        encode=enc,
    )


def peak_rss_mb() -> float:
    """This process's peak resident memory: VmHWM, which starts afresh at exec. (ru_maxrss does not:
    Linux carries the forking parent's high-water mark into the child, so a parent that has just
    built a 400-frame scene in memory would be charged to the render.)"""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(args: argparse.Namespace) -> None:
    d = scene_dir(args)
    out = d / f"out_{args.frames}"
    out.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()[0]
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    with open_geometry(d / "geometry.npz", scratch_dir=out, image=False) as geo:  # as the render stage reads it
        path = camera_path(args, np.load(d / "source_c2w.npy"))
        result = render_to_folder(d / "source.mp4", geo, path, out, options(args))
    wall, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
    n = result.num_frames
    print(json.dumps({
        "frames": n,
        "wall_ms_per_frame": 1000 * wall / n,
        "cpu_ms_per_frame": 1000 * (r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime) / n,
        "of_which_system_ms": 1000 * (r1.ru_stime - r0.ru_stime) / n,
        "load_average_before": load,
        "load_average_after": os.getloadavg()[0],
        "peak_rss_mb": peak_rss_mb(),
        "geometry_mb": sum(a.nbytes for a in (geo.depth, geo.conf, geo.image) if a is not None) / 2**20,
        "geometry_npz_mb": (d / "geometry.npz").stat().st_size / 2**20,
        "coverage": result.coverage,
        "threads": torch.get_num_threads(),
        "out": str(out),
    }))


def quality(args: argparse.Namespace, out: Path) -> dict:
    from geometry.metrics import edge_band, mask_iou, psnr

    d = scene_dir(args)
    c2w = np.load(d / "source_c2w.npy")
    folder = RenderFolder(out)
    path = folder.cameras()
    n = len(c2w)
    clip = SourceClip(np.broadcast_to(np.zeros((1, args.height, args.width, 3), np.uint8), (n, args.height, args.width, 3)), c2w, intrinsics_for(args.width, args.height), args.fps)
    gt, visible, depth = ground_truth(make_scene(args.scene), path, clip, return_depth=True)
    rendered = read_video(folder.render_video)
    mask = folder.load_mask()
    band = np.stack([edge_band(dd, px=5) for dd in depth])
    sel = mask & visible
    return {
        "psnr_mask": psnr(rendered, gt, sel),
        "psnr_edge_band": psnr(rendered, gt, sel & band),
        "mask_iou_vs_visibility": mask_iou(mask, visible),
        "covered_not_visible": float((mask & ~visible).sum() / mask.sum()),
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child:
        child(args)
        return
    prepare(args)
    cmd = [sys.executable, __file__, "--child", *(argv if argv is not None else sys.argv[1:])]
    runs = []
    for _ in range(max(args.repeat, 1)):
        res = subprocess.run(cmd, check=True, capture_output=True, text=True)
        runs.append(json.loads(res.stdout.strip().splitlines()[-1]))
    report = runs[0]
    if len(runs) > 1:  # a shared machine drifts: the spread matters as much as the middle
        for key in ("wall_ms_per_frame", "cpu_ms_per_frame", "peak_rss_mb"):
            values = [r[key] for r in runs]
            report[key] = float(np.median(values))
            report[key.replace("_ms_per_frame", "").replace("_mb", "") + "_range"] = f"{min(values):.1f} - {max(values):.1f}"
        report["runs"] = len(runs)
    if args.quality:
        report.update(quality(args, Path(report["out"])))
    for k, v in report.items():
        print(f"{k:>24}: {v:.3f}" if isinstance(v, float) else f"{k:>24}: {v}")


if __name__ == "__main__":
    main()
