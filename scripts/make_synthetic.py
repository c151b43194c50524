"""Write a synthetic input: source video, DA3-format geometry cache and caption, laid out as the pipeline reads them.

  <out>/<name>.mp4                  the source video (H.264)
  <out>/geometry/<name>.npz (+.json) analytic geometry at the depth resolution, sidecar with the video's hash
  <out>/captions.json               {"<name>.mp4": caption} (merged into an existing file)

The bundled example was made with:
  .venv/bin/python scripts/make_synthetic.py --out test/example --name synthetic_orbit --no-image --depth-float16
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from geometry.cache import save_geometry
from geometry.synthetic import SyntheticScene, handheld_path, make_geometry, make_source_clip
from pipeline.fsutil import atomic_write
from pipeline.video_io import EncodeOptions, file_sha256, write_video

DEFAULT_CAPTION = (
    "A small room with a colourful patterned wall and a checkered wooden floor; a blue board and a large "
    "striped orange sphere stand in it while a small green ball slides to the right and back, spinning."
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=Path("test/example"), help="output folder [test/example]")
    p.add_argument("--name", default="synthetic_orbit", help="video stem [synthetic_orbit]")
    p.add_argument("--frames", type=int, default=49, help="number of frames [49]")
    p.add_argument("--fps", type=float, default=24.0, help="frame rate [24]")
    p.add_argument("--width", type=int, default=832, help="video width [832]")
    p.add_argument("--height", type=int, default=480, help="video height [480]")
    p.add_argument("--depth-width", type=int, default=504, help="depth map width [504]")
    p.add_argument("--depth-height", type=int, default=294, help="depth map height [294]")
    p.add_argument("--hfov", type=float, default=60.0, help="horizontal field of view in degrees [60]")
    p.add_argument("--motion", choices=("handheld", "static"), default="handheld", help="source camera [handheld]")
    p.add_argument("--crf", type=int, default=12, help="H.264 quality, lower = better [12]")
    p.add_argument("--no-image", action="store_true", help="leave the optional 'image' key out of the cache (smaller)")
    p.add_argument("--depth-float16", action="store_true", help="store depth as float16 (17x smaller for the synthetic room)")
    p.add_argument("--caption", default=DEFAULT_CAPTION, help="caption stored in captions.json")
    return p.parse_args(argv)


def write_caption(captions_path: Path, video_name: str, caption: str) -> None:
    captions = json.loads(captions_path.read_text(encoding="utf-8")) if captions_path.is_file() else {}
    captions[video_name] = caption
    with atomic_write(captions_path) as tmp:
        tmp.write_text(json.dumps(captions, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    start = time.perf_counter()
    scene = SyntheticScene()
    c2w = handheld_path(args.frames, args.fps) if args.motion == "handheld" else None
    clip = make_source_clip(scene, args.frames, args.width, args.height, args.fps, c2w, hfov_deg=args.hfov)
    video = args.out / f"{args.name}.mp4"
    write_video(video, clip.frames, args.fps, EncodeOptions(crf=args.crf, preset="slow"))
    geometry = make_geometry(scene, clip, depth_hw=(args.depth_height, args.depth_width))
    meta = dataclasses.replace(
        geometry.meta,
        source_video=video.name,
        video_sha256=file_sha256(video),
        producer="scripts/make_synthetic.py",
        extra={"scene": "room", "motion": args.motion, "hfov_deg": args.hfov, "video_hw": [args.height, args.width]},
    )
    geometry = dataclasses.replace(geometry, meta=meta, image=None if args.no_image else geometry.image)
    cache_path = args.out / "geometry" / f"{args.name}.npz"
    save_geometry(cache_path, geometry, depth_dtype=np.float16 if args.depth_float16 else np.float32)
    write_caption(args.out / "captions.json", video.name, args.caption)
    sizes = {p: p.stat().st_size / 1e6 for p in (video, cache_path, cache_path.with_suffix(".json"))}
    for path, mb in sizes.items():
        print(f"{path}  {mb:.2f} MB")
    print(f"total {sum(sizes.values()):.2f} MB in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
