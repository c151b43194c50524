"""gpu_check section ``pipeline_run``: one ``python -m pipeline run`` on the bundled example
(``test/example``, orbit_left) with random reduced generation weights (the example ships its caption and
geometry cache, so Florence-2 and DA3 are not needed), through every stage (on CUDA when there is one). Records the
exit status, the wall time and the generated video's frame count. Smoke: 9 frames at 64x48 on the
CPU; full: 45 frames at 416x240. Needs av, typer, plyfile and transformers."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scripts.gpu_sections.common import Section, require, section_main

EXAMPLE = Path(__file__).resolve().parents[2] / "test" / "example"


def run(s: Section) -> None:
    for module in ("av", "typer", "plyfile", "transformers"):
        require(module, module)
    from pipeline.video_io import probe_video
    from scripts.bench_generate_memory import write_weights

    (width, height), frames = ((64, 48), 9) if s.smoke else ((416, 240), 45)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        weights = write_weights(root / "weights")
        out = root / "out"
        cmd = [sys.executable, "-m", "pipeline", "run", "--input_dir", str(EXAMPLE), "--traj_txt_path", "orbit_left",
               "--output_folder", str(out), "--work_dir", str(root / "work"), "--checkpoints_dir", str(root / "none"),
               "--checkpoint_path", str(weights.dit), "--config_path", str(weights.config_path),
               "--width", str(width), "--height", str(height), "--num_frames", str(frames), "--disable_adaptive_frame"]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        s.record("pipeline run wall time", time.perf_counter() - t0, "s")
        s.record("pipeline run exit status", proc.returncode)
        if proc.returncode:
            raise RuntimeError(f"python -m pipeline run failed:\n{(proc.stdout + proc.stderr)[-1500:]}")
        videos = list(out.rglob("generated.mp4"))
        if not videos:
            raise RuntimeError("the run wrote no generated.mp4")
        s.record("generated frames", probe_video(videos[0]).num_frames)


if __name__ == "__main__":
    section_main("pipeline_run", run)
