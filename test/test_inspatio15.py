"""InSpatio-World 1.5 scene folders: a synthetic scene written in that layout imports without loss; the
1.5 checkpoint has the download target and loads with the same loader and manifest."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from geometry.inspatio15 import Q_MAX, SceneFolderError, read_scene
from geometry.render import prepare_sources, render_views
from geometry.metrics import psnr
from geometry.synthetic import SyntheticScene, intrinsics_for
from trajectories import format_matrix_trajectory
from trajectories.orbit import orbit_c2w

H, W = 96, 160


def _views(n: int):
    scene = SyntheticScene()
    c2w = orbit_c2w(np.linspace(0, 6, n), np.linspace(0, 15, n), np.ones(n))
    K = intrinsics_for(W, H)
    shots = [scene.render(m, K, W, H, 0.0) for m in c2w]
    depth = np.stack([np.where(np.isfinite(s.depth), s.depth, 0.0) for s in shots])
    rgb = np.stack([np.round(s.rgb * 255).astype(np.uint8) for s in shots])
    return c2w, K, depth, rgb


def _codes(depth: np.ndarray) -> tuple[np.ndarray, float, float]:
    lo, hi = float(depth.min()), float(depth.max())
    return np.round((depth - lo) / (hi - lo) * Q_MAX).astype(np.uint16), lo, hi


def _write_scene(folder: Path, kind: str, n: int, frames: int, valid: int) -> dict:
    c2w, K, depth, rgb = _views(n)
    (folder / "input").mkdir(parents=True)
    (folder / "depth").mkdir()
    codes, ranges = [], []
    for d in depth:
        q, lo, hi = _codes(d)
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


@pytest.mark.parametrize("kind, n, frames, valid", [("image", 1, 9, 9), ("image", 4, 9, 7), ("video", 5, 5, 3)])
def test_scene_folder_imports_without_loss(tmp_path, kind, n, frames, valid):
    truth = _write_scene(tmp_path / "room", kind, n, frames, valid)
    scene = read_scene(tmp_path / "room")
    count = n if kind == "image" else valid
    geo = scene.geometry
    assert (scene.kind, scene.output_id, scene.fps, scene.resolution) == (kind, "room", 12.0, (H, W))
    assert scene.prompt == "a small room with a red ball" and geo.depth.shape == (count, H, W)
    # depth: within half a quantisation step of the analytic depth, and the uint16 codes come back exactly
    for i in range(count):
        lo, hi = truth["ranges"][i]
        assert np.abs(geo.depth[i] - truth["depth"][i]).max() <= 0.5 * (hi - lo) / Q_MAX + 1e-5 * hi
        assert np.array_equal(np.round((geo.depth[i].astype(np.float64) - lo) / (hi - lo) * Q_MAX), truth["codes"][i])
    np.testing.assert_allclose(geo.c2w, truth["c2w"][:count], atol=1e-12)
    np.testing.assert_allclose(geo.intrinsics, np.broadcast_to(truth["K"], (count, 3, 3)))
    assert len(scene.target) == valid
    np.testing.assert_allclose(np.linalg.inv(scene.target.w2c), truth["target_c2w"][:valid], atol=1e-12)
    np.testing.assert_allclose(scene.target_intrinsics, truth["K"])


def test_imported_geometry_reprojects_its_view(tmp_path):
    """Rendering view 1 of the imported scene from view 0's colour+depth lands on view 1's true image."""
    truth = _write_scene(tmp_path / "room", "image", 2, 9, 9)
    scene = read_scene(tmp_path / "room")
    colour = np.stack([np.asarray(Image.open(p)) for p in scene.inputs])
    geo = scene.geometry
    src = prepare_sources(torch.from_numpy(colour[:1]), torch.from_numpy(geo.depth[:1]),
                          torch.from_numpy(geo.intrinsics[:1]), torch.from_numpy(geo.c2w[:1]))
    out = render_views(src, torch.from_numpy(np.linalg.inv(truth["c2w"][1:2])), torch.from_numpy(truth["K"][None]), W, H)
    rgb, mask = out.rgb[0].permute(1, 2, 0).numpy(), out.mask[0].numpy()
    assert mask.mean() > 0.6
    assert psnr(rgb, truth["rgb"][1] / 255.0, mask) > 24


@pytest.mark.parametrize("edit, words", [
    (lambda f: _json(f, lambda d: d.pop("fps")), "missing field(s) fps"),
    (lambda f: _json(f, lambda d: d.update(depth_encoding="float32")), "not supported"),
    (lambda f: _json(f, lambda d: d.update(valid_frames=12)), "valid_frames 12"),
    (lambda f: (f / "depth" / "source_tcw.txt").write_text("1 0 0 0 0 1 0 0 0 0 1 0 0 0 0\n"), "source_tcw.txt:1"),
    (lambda f: (f / "depth" / "metadata.txt").write_text("0.5\n"), "metadata.txt:1"),
    (lambda f: (f / "depth" / "depth_01.png").unlink(), "depth_01.png: missing"),
])
def test_scene_folder_errors_name_the_file(tmp_path, edit, words):
    _write_scene(tmp_path / "room", "image", 2, 9, 9)
    edit(tmp_path / "room")
    with pytest.raises(SceneFolderError) as info:
        read_scene(tmp_path / "room")
    assert words in str(info.value)


def _json(folder: Path, change) -> None:
    data = json.loads((folder / "scene.json").read_text())
    change(data)
    (folder / "scene.json").write_text(json.dumps(data))


# --- the 1.5 checkpoint -------------------------------------------------------------------------


def test_download_target_and_loader_accept_the_15_checkpoint(tmp_path):
    import os
    import subprocess

    from models.dit import CausalDiT, DiTConfig
    from models.manifest import load_manifest
    from pipeline.weights import main as weights_main

    repo = Path(__file__).resolve().parents[1]
    out = subprocess.run(["bash", "scripts/download.sh", "--dry-run", "inspatio15"], cwd=repo, capture_output=True,
                         text=True, check=True, env={**os.environ, "INSPATIO_CHECKPOINTS": str(tmp_path)}).stdout
    assert f"inspatio/world-1.5 InSpatio-World-1.5-1.3B.safetensors --local-dir {tmp_path}/InSpatio-World-1.5-1.3B" in out
    assert len(load_manifest("dit")) == 825  # the layout 1.5 shares with 1.0
    tiny = DiTConfig(dim=32, ffn_dim=48, num_heads=2, num_layers=2, freq_dim=16, text_len=8, text_dim=12)
    path = tmp_path / "InSpatio-World-1.5-1.3B" / "InSpatio-World-1.5-1.3B.safetensors"
    path.parent.mkdir()
    save_file({f"model.{k}": v for k, v in CausalDiT(tiny).state_dict().items()}, str(path),
              metadata={"model_config": json.dumps(tiny.to_dict())})
    assert CausalDiT.from_checkpoint(path).config == tiny
    assert weights_main(["--dit", str(path)]) == 1  # a tiny model is not the 825-key 1.3B layout
    assert weights_main(["--dit", str(tmp_path / "absent.safetensors")]) == 1
