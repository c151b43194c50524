"""The bundled example input (test/example) is complete, consistent and matches the synthetic scene."""

import json
from pathlib import Path

import numpy as np

from geometry.cache import load_geometry
from geometry.synthetic import SyntheticScene
from pipeline.video_io import file_sha256, probe_video

EXAMPLE = Path(__file__).resolve().parent / "example"
REGENERATE = "regenerate it: .venv/bin/python scripts/make_synthetic.py --out test/example --name synthetic_orbit --no-image --depth-float16"


def test_example_is_small_and_complete():
    files = sorted(p.relative_to(EXAMPLE).as_posix() for p in EXAMPLE.rglob("*") if p.is_file())
    assert files == ["captions.json", "geometry/synthetic_orbit.json", "geometry/synthetic_orbit.npz", "synthetic_orbit.mp4"]
    assert sum((EXAMPLE / f).stat().st_size for f in files) < 5e6
    captions = json.loads((EXAMPLE / "captions.json").read_text())
    assert captions["synthetic_orbit.mp4"].strip()


def test_example_geometry_matches_video_and_scene():
    video = EXAMPLE / "synthetic_orbit.mp4"
    info = probe_video(video)
    assert (info.width, info.height, info.fps, info.num_frames) == (832, 480, 24.0, 49)
    geo = load_geometry(EXAMPLE / "geometry" / "synthetic_orbit.npz", info.num_frames, file_sha256(video))
    assert geo.resolution == (294, 504) and geo.meta.source_video == video.name
    h, w = geo.resolution
    for i in (0, 48):
        view = SyntheticScene().render(geo.c2w[i], geo.intrinsics[i], w, h, i / info.fps)
        assert np.allclose(geo.depth[i], view.depth, rtol=2.0**-11), f"the example is stale; {REGENERATE}"


def test_make_synthetic_script_writes_a_loadable_input(tmp_path: Path):
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "scripts" / "make_synthetic.py"
    (tmp_path / "captions.json").write_text(json.dumps({"other.mp4": "kept"}))
    args = ["--out", str(tmp_path), "--name", "tiny", "--frames", "3", "--fps", "12", "--width", "64", "--height", "48",
            "--depth-width", "32", "--depth-height", "24", "--motion", "static", "--caption", "A tiny room."]
    subprocess.run([sys.executable, str(script), *args], check=True, capture_output=True)
    video = tmp_path / "tiny.mp4"
    assert probe_video(video).num_frames == 3
    geo = load_geometry(tmp_path / "geometry" / "tiny.npz", 3, file_sha256(video))
    assert geo.resolution == (24, 32) and geo.image is not None and geo.meta.fps == 12.0
    np.testing.assert_array_equal(geo.extrinsics, np.tile(np.eye(4), (3, 1, 1)))
    assert json.loads((tmp_path / "captions.json").read_text()) == {"other.mp4": "kept", "tiny.mp4": "A tiny room."}
