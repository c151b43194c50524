"""InSpatio-World 1.5 scene folders: a synthetic scene written in that layout imports without loss; the
1.5 checkpoint has the download target and loads with the same loader and manifest."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from geometry.inspatio15 import Q_MAX, SceneFolderError, read_scene
from geometry.metrics import psnr
from geometry.render import prepare_sources, render_views
from scene15_writer import H, W, write_scene

@pytest.mark.parametrize("kind, n, frames, valid", [("image", 1, 9, 9), ("image", 4, 9, 7), ("video", 5, 5, 3)])
def test_scene_folder_imports_without_loss(tmp_path, kind, n, frames, valid):
    truth = write_scene(tmp_path / "room", kind, n, frames, valid)
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
    truth = write_scene(tmp_path / "room", "image", 2, 9, 9)
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
    write_scene(tmp_path / "room", "image", 2, 9, 9)
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
