"""Depth-Anything-3 through the real network code (da3-small config, random weights, CPU)."""

from __future__ import annotations

import contextlib
import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from da3_models import tiny_da3, write_da3_folder

from geometry.cache import GeometryMeta, load_geometry, save_geometry
from geometry.da3 import (
    DA3Error,
    check_da3_folder,
    estimate_geometry,
    is_preset,
    load_da3,
    predict,
    preprocess_frames,
    processed_size,
    validate_output,
)
from geometry.synthetic import SyntheticScene, handheld_path, make_source_clip

RES = 70  # small processing resolution keeps the tests fast; the reference uses 504


@pytest.fixture(scope="module")
def model():
    return tiny_da3()


@pytest.fixture(scope="module")
def frames():
    fps = 8.0
    return make_source_clip(SyntheticScene(), 7, 80, 48, fps, handheld_path(7, fps)).frames


@pytest.mark.parametrize("hw", [(480, 832), (832, 480), (294, 504), (301, 504), (36, 64), (250, 333)])
@pytest.mark.parametrize("res", [504, RES])
def test_preprocessing_matches_the_package(package_input_processor, hw, res):
    rng = np.random.default_rng(hw[0])
    imgs = (rng.random((2, *hw, 3)) * 255).astype(np.uint8)
    ref, _, _ = package_input_processor(list(imgs), process_res=res, process_res_method="upper_bound_resize",
                                        num_workers=1)
    ours = preprocess_frames(imgs, res)
    assert ours.shape == ref.shape and ours.shape[-2:] == processed_size(*hw, res)
    assert torch.allclose(ours, ref.float(), atol=1e-6)


def test_reference_resolution():
    assert processed_size(480, 832) == (294, 504)
    assert processed_size(832, 480) == (504, 294)


def test_single_chunk_equals_direct_fp32_network_call(model, frames, package_input_processor):
    """Oracle: the package's preprocessing, the network called in fp32, frame 0 moved to the origin."""
    x, _, _ = package_input_processor(list(frames), process_res=RES, num_workers=1)
    with torch.inference_mode():
        out = model.net(x[None].float(), None, None, [], False, False, "saddle_balanced")
    w2c = np.tile(np.eye(4), (len(frames), 1, 1))
    w2c[:, :3] = out["extrinsics"][0].double().numpy()
    expect_ext = w2c @ np.linalg.inv(w2c[0])

    geo = estimate_geometry(frames, model, chunk_size=16, overlap=4, process_res=RES, progress=False)
    assert geo.depth.dtype == np.float32 and geo.depth.shape == (len(frames), *processed_size(48, 80, RES))
    assert np.array_equal(geo.depth, out["depth"][0].numpy())
    assert np.array_equal(geo.conf, out["depth_conf"][0].numpy())
    assert np.allclose(geo.intrinsics, out["intrinsics"][0].numpy(), rtol=1e-6)
    assert np.allclose(geo.extrinsics, expect_ext, atol=1e-5)
    assert np.array_equal(geo.extrinsics[0], np.eye(4))


def test_chunked_estimate_writes_a_cache_that_validates(model, frames, tmp_path):
    meta = GeometryMeta(source_video="clip.mp4", video_sha256="ab" * 32, fps=8.0)
    geo = estimate_geometry(list(frames), model, chunk_size=4, overlap=2, process_res=RES, meta=meta,
                            smoothing_sigma=1.0, progress=False)
    path = tmp_path / "geometry.npz"
    save_geometry(path, geo)
    back = load_geometry(path, expect_frames=len(frames), expect_video_sha256="ab" * 32)
    assert back.conf is not None and back.depth.shape == geo.depth.shape
    assert np.array_equal(back.extrinsics[0], np.eye(4))
    extra = back.meta.extra
    assert back.meta.source_video == "clip.mp4" and back.meta.producer.startswith("depth-anything-3")
    assert extra["chunks"] == [[0, 4], [2, 6], [3, 7]] and extra["model"] == "da3-small"
    assert len(extra["overlap_errors"]) == 2 and extra["pose_smoothing_sigma"] == 1.0


def test_model_folder_loads_the_same_network(model, frames, tmp_path):
    folder = write_da3_folder(tmp_path / "DA3", model.net)
    assert check_da3_folder(folder) == []
    loaded = load_da3(folder)
    assert loaded.name == "da3-small" and loaded.source == str(folder)
    a, b = predict(model, frames[:3], RES), predict(loaded, frames[:3], RES)
    assert np.array_equal(a.depth, b.depth) and np.array_equal(a.c2w, b.c2w)


def test_model_folder_problems_name_file_and_problem(model, tmp_path):
    wrong = write_da3_folder(tmp_path / "wrong", model.net, name="da3-base")
    with pytest.raises(DA3Error, match=r"model\.safetensors.*da3-base.*shape"):
        load_da3(wrong)
    assert any("shape" in p for p in check_da3_folder(wrong))

    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "config.json").write_text(json.dumps({"model_name": "da3-small"}))
    state = {f"model.{k}": v.contiguous() for k, v in model.net.state_dict().items() if not k.startswith("head.")}
    save_file(state, str(partial / "model.safetensors"))
    with pytest.raises(DA3Error, match="missing key 'head"):
        load_da3(partial)

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DA3Error, match=r"config\.json: missing"):
        load_da3(empty)
    with pytest.raises(DA3Error, match="neither a DA3 model folder nor a preset"):
        load_da3(tmp_path / "nowhere")


def test_bad_frames_are_rejected(model):
    with pytest.raises(DA3Error, match="uint8"):
        predict(model, np.zeros((2, 32, 32, 3), np.float32), RES)
    with pytest.raises(DA3Error, match="process_res 10 is too small for 80x48 frames"):
        predict(model, np.zeros((2, 48, 80, 3), np.uint8), 10)


@contextlib.contextmanager
def _zero_field_of_view(model):
    """The camera head predicts a field of view of 0 (what untrained weights tend to give)."""
    bias = model.net.cam_dec.fc_fov[0].bias
    saved = bias.detach().clone()
    with torch.no_grad():
        bias.fill_(-1.0)
    try:
        yield
    finally:
        with torch.no_grad():
            bias.copy_(saved)


def test_implausible_output_names_model_and_video_not_force(model, frames, tmp_path):
    meta = GeometryMeta(source_video="clip.mp4")
    with _zero_field_of_view(model):
        with pytest.raises(DA3Error) as preset_err:
            validate_output(estimate_geometry(frames, model, process_res=RES, meta=meta, progress=False), model)
        folder = write_da3_folder(tmp_path / "DA3", model.net)
    message = str(preset_err.value)
    assert "preset 'da3-small' (random weights) produced implausible geometry for clip.mp4" in message
    assert "'intrinsics' of frame 0 are implausible: focal lengths" in message
    assert "tests and timing only" in message and "--force" not in message

    loaded = load_da3(folder)
    with pytest.raises(DA3Error) as folder_err:
        validate_output(estimate_geometry(frames, loaded, process_res=RES, progress=False), loaded)
    message = str(folder_err.value)
    assert f"model {folder} (da3-small) produced implausible geometry for the given frames" in message
    assert "corrupt" in message and "--force" not in message


def test_presets_are_names_not_folders(tmp_path, monkeypatch):
    assert is_preset("da3-small") and is_preset("da3nested-giant-large")
    assert not is_preset("da3-tiny") and not is_preset(tmp_path)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "da3-small").mkdir()
    assert not is_preset("da3-small")  # an existing folder is loaded as a model folder
