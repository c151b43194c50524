"""Depth, intrinsics and camera poses of a video with Depth-Anything-3 (the ``depth-anything-3`` package).

The network is built from the package's own configs (``depth_anything_3.cfg``/``registry``) and
called directly; its ``DepthAnything3`` wrapper class is not used. That wrapper imports torchvision
(for ``ToTensor``/``Normalize`` in its input processor) and the exporters (trimesh, pycolmap, evo,
moviepy), and it autocasts to fp16 on CPU, which is ~3× slower than fp32. The input processing is
done here instead, with the same steps as the package's ``upper_bound_resize`` method: resize so the
long side is ``process_res`` (cv2 INTER_AREA when shrinking, INTER_CUBIC when enlarging), round each
side to the nearest multiple of 14 with a second small resize, scale to [0, 1], ImageNet-normalise.

Weights: ``load_da3(dir)`` reads a folder laid out as the Hugging Face repos
(``depth-anything/DA3NESTED-GIANT-LARGE``: ``config.json`` naming the preset in ``model_name``,
``model.safetensors`` with keys prefixed ``model.``); ``load_da3("da3-small")`` (any preset name)
builds randomly initialised weights from the package config, which the tests use. Nothing is
downloaded.

Outputs (``estimate_geometry``): a ``GeometryCache`` with depth and conf [N, h, w] at the processed
resolution (480×832 → 294×504), intrinsics [N, 3, 3] in pixels at (h, w), extrinsics [N, 4, 4]
world-to-camera (OpenCV axes) with frame 0 the identity (world = camera 0). The nested model's
depth is metric (metres); other presets give relative units shared by depth and poses. Long videos
run in overlapping chunks registered by similarity transforms (``geometry.registration``), so
memory is bounded by ``chunk_size``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence, Union

import cv2
import numpy as np
import torch
from safetensors import safe_open
from tqdm import tqdm

from geometry.cache import GeometryCache, GeometryCacheError, GeometryMeta, validate_geometry
from geometry.registration import ChunkStitcher, chunk_ranges
from geometry.smoothing import smooth_poses

PATCH_SIZE = 14
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
DEFAULT_PROCESS_RES = 504
DEFAULT_CHUNK_SIZE = 128
DEFAULT_OVERLAP = 32
REFERENCE_MODEL = "da3nested-giant-large"
WEIGHTS_FILE = "model.safetensors"
RANDOM_INIT = "random-init"
CONFIG_FILE = "config.json"


class DA3Error(ValueError):
    """A DA3 model folder or preset cannot be loaded, the input frames are unusable, or the model's
    output is implausible."""


@dataclass(frozen=True)
class DA3Model:
    """A ready network. ``name``: package preset; ``source``: weights folder or 'random-init'."""

    net: torch.nn.Module
    name: str
    source: str
    device: torch.device

    @property
    def is_metric(self) -> bool:
        return self.name.startswith(("da3nested", "da3metric"))

    @property
    def random_weights(self) -> bool:
        return self.source == RANDOM_INIT

    def describe(self) -> str:
        """Which model this is, for messages: the preset and where its weights came from."""
        if self.random_weights:
            return f"Depth-Anything-3 preset '{self.name}' (random weights)"
        return f"Depth-Anything-3 model {self.source} ({self.name})"


def _quiet_package_logger() -> None:
    """The package prints INFO/WARN lines on stdout (e.g. about its unused Gaussian-splat head); keep errors only unless DA3_LOG_LEVEL is set."""
    if "DA3_LOG_LEVEL" not in os.environ:
        from depth_anything_3.utils.logger import LOG_LEVELS, logger

        logger.level = LOG_LEVELS["ERROR"]


def presets() -> list[str]:
    """Model presets the installed package knows (e.g. da3-small, da3nested-giant-large)."""
    from depth_anything_3.registry import MODEL_REGISTRY

    return list(MODEL_REGISTRY)


def is_preset(model_dir_or_preset: Union[str, Path]) -> bool:
    """True when ``load_da3`` would build random weights: a preset name and not an existing folder."""
    return not Path(model_dir_or_preset).is_dir() and str(model_dir_or_preset) in presets()


@contextlib.contextmanager
def _parameters_on_meta() -> Iterator[None]:
    """Create module parameters without storage or initialisation (buffers stay real).

    Used to build a network whose weights come from a checkpoint right after (``assign=True``),
    or whose key/shape layout alone is needed. The package's constructors call ``.item()`` on
    tensors, so a ``torch.device('meta')`` context cannot be used for the whole build.
    """
    register = torch.nn.Module.register_parameter

    def register_on_meta(module, name, param):
        if param is not None:
            param = torch.nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
        register(module, name, param)

    torch.nn.Module.register_parameter = register_on_meta
    try:
        yield
    finally:
        torch.nn.Module.register_parameter = register


def build_network(preset: str, empty: bool = False) -> torch.nn.Module:
    """The package's network for ``preset`` in eval mode: random weights, or (``empty``) meta parameters."""
    from depth_anything_3.cfg import create_object, load_config
    from depth_anything_3.registry import MODEL_REGISTRY

    _quiet_package_logger()
    if preset not in MODEL_REGISTRY:
        raise DA3Error(f"unknown DA3 preset '{preset}'; known: {', '.join(MODEL_REGISTRY)}")
    with _parameters_on_meta() if empty else contextlib.nullcontext():
        net = create_object(load_config(MODEL_REGISTRY[preset]))
    return net.eval()


def read_model_name(model_dir: Path) -> str:
    """The preset named by ``<model_dir>/config.json`` (key ``model_name``)."""
    cfg_path = model_dir / CONFIG_FILE
    try:
        cfg = json.loads(cfg_path.read_text())
    except FileNotFoundError:
        raise DA3Error(f"{cfg_path}: missing; expected a DA3 model folder (see docs/models.md, 'Weights')") from None
    except json.JSONDecodeError as e:
        raise DA3Error(f"{cfg_path}: not valid JSON ({e})") from None
    name = cfg.get("model_name") if isinstance(cfg, dict) else None
    if not isinstance(name, str):
        raise DA3Error(f"{cfg_path}: no 'model_name' entry naming a DA3 preset")
    return name


def _tied_groups(net: torch.nn.Module) -> list[list[str]]:
    """State-dict keys grouped by the tensor they name (tied weights share one group).

    A safetensors file written by the package (``save_model``) stores each tied tensor once.
    """
    groups: dict[int, list[str]] = {}
    for key, tensor in net.state_dict(keep_vars=True).items():
        groups.setdefault(id(tensor), []).append(key)
    return list(groups.values())


def _read_checkpoint(weights_path: Path, device: str = "cpu", header_only: bool = False) -> dict:
    """Key (without the ``model.`` prefix) → tensor, or → shape tuple when ``header_only``."""
    with safe_open(str(weights_path), framework="pt", device=device) as f:
        return {
            k.removeprefix("model."): tuple(f.get_slice(k).get_shape()) if header_only else f.get_tensor(k)
            for k in f.keys()
        }


def checkpoint_problems(net: torch.nn.Module, found: dict) -> list[str]:
    """Missing/unexpected keys and shape mismatches of a checkpoint (key → shape) against ``net``."""
    expected = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    problems = [f"missing key '{g[0]}'" for g in _tied_groups(net) if not any(k in found for k in g)]
    problems += [f"unexpected key '{k}'" for k in found if k not in expected]
    problems += [
        f"key '{k}' has shape {list(found[k])}, expected {list(s)}"
        for k, s in expected.items()
        if k in found and tuple(found[k]) != s
    ]
    return problems


def check_da3_folder(model_dir: Union[str, Path]) -> list[str]:
    """Problems of a DA3 weights folder (config.json preset, keys and shapes), reading headers only."""
    model_dir = Path(model_dir)
    try:
        net = build_network(read_model_name(model_dir), empty=True)
    except DA3Error as e:
        return [str(e)]
    weights = model_dir / WEIGHTS_FILE
    if not weights.is_file():
        return [f"{weights}: missing"]
    try:
        found = _read_checkpoint(weights, header_only=True)
    except Exception as e:  # safetensors raises its own error types for a corrupt header
        return [f"{weights}: unreadable safetensors file ({e})"]
    return [f"{weights}: {p}" for p in checkpoint_problems(net, found)]


def load_da3(model_dir_or_preset: Union[str, Path], device: Union[str, torch.device] = "cpu") -> DA3Model:
    """Load a DA3 model folder (config.json + model.safetensors) or build a preset with random weights."""
    device = torch.device(device)
    path = Path(model_dir_or_preset)
    if path.is_dir():
        name = read_model_name(path)
        weights = path / WEIGHTS_FILE
        if not weights.is_file():
            raise DA3Error(f"{weights}: missing (download with: bash scripts/download.sh da3)")
        net = build_network(name, empty=True)
        state = _read_checkpoint(weights, device=str(device))
        problems = checkpoint_problems(net, {k: v.shape for k, v in state.items()})
        if problems:
            raise DA3Error(f"{weights}: does not match preset '{name}': {problems[0]} ({len(problems)} problem(s))")
        for group in _tied_groups(net):
            tensor = next(state[k] for k in group if k in state)
            state.update({k: tensor for k in group})
        net.load_state_dict(state, strict=True, assign=True)
        net = net.to(device=device, dtype=torch.float32)
        return DA3Model(net.eval(), name, str(path), device)
    if is_preset(model_dir_or_preset):
        name = str(model_dir_or_preset)
        return DA3Model(build_network(name).to(device), name, RANDOM_INIT, device)
    raise DA3Error(
        f"{model_dir_or_preset}: neither a DA3 model folder nor a preset ({', '.join(presets())}); "
        "get the weights with: bash scripts/download.sh da3"
    )


def processed_size(height: int, width: int, process_res: int = DEFAULT_PROCESS_RES) -> tuple[int, int]:
    """(h, w) the network sees for an input of (height, width) (``upper_bound_resize``)."""
    return _resize_plan(height, width, process_res)[1]


def _resize_plan(height: int, width: int, process_res: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """((h1, w1), (h2, w2)): long side → process_res, then each side → nearest multiple of 14 (ties up)."""
    longest = max(height, width)
    if longest == process_res:
        h1, w1 = height, width
    else:
        scale = process_res / float(longest)
        h1, w1 = max(1, int(round(height * scale))), max(1, int(round(width * scale)))

    def nearest(x: int) -> int:
        down = (x // PATCH_SIZE) * PATCH_SIZE
        return max(1, down + PATCH_SIZE if (down + PATCH_SIZE - x) <= (x - down) else down)

    return (h1, w1), (nearest(h1), nearest(w1))


def _resize(img: np.ndarray, h: int, w: int, enlarge: bool) -> np.ndarray:
    if img.shape[:2] == (h, w):
        return img
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_CUBIC if enlarge else cv2.INTER_AREA)


def preprocess_frames(frames: np.ndarray, process_res: int = DEFAULT_PROCESS_RES) -> torch.Tensor:
    """uint8 [n, H, W, 3] RGB → float32 [n, 3, h, w], ImageNet-normalised, at ``processed_size``."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise DA3Error(f"frames must be uint8 [n,H,W,3], got {frames.dtype} {list(frames.shape)}")
    height, width = frames.shape[1:3]
    (h1, w1), (h2, w2) = _resize_plan(height, width, process_res)
    if min(h2, w2) < PATCH_SIZE:
        raise DA3Error(
            f"process_res {process_res} is too small for {width}x{height} frames: they would be processed at "
            f"{w2}x{h2}, and the network needs sides of at least {PATCH_SIZE} px; use a larger process_res"
        )
    out = np.empty((len(frames), 3, h2, w2), np.float32)
    for i, frame in enumerate(frames):
        img = _resize(np.ascontiguousarray(frame), h1, w1, enlarge=h1 * w1 > height * width)
        img = _resize(img, h2, w2, enlarge=h2 > h1 or w2 > w1)
        out[i] = ((img.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)
    return torch.from_numpy(out)


def _autocast(device: torch.device):
    """Mixed precision as the package uses it on CUDA (bf16 where supported); plain fp32 on CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
    return contextlib.nullcontext()


@dataclass(frozen=True)
class RawPrediction:
    """One network call: depth/conf [n, h, w] float32, c2w [n, 4, 4] float64, intrinsics [n, 3, 3]."""

    depth: np.ndarray
    conf: np.ndarray
    c2w: np.ndarray
    intrinsics: np.ndarray
    scale_factor: Optional[float]


def predict(model: DA3Model, frames: np.ndarray, process_res: int = DEFAULT_PROCESS_RES) -> RawPrediction:
    """Run the network once on uint8 frames [n, H, W, 3] (poses from the camera decoder, not rays)."""
    x = preprocess_frames(frames, process_res).to(model.device)[None]
    with torch.inference_mode(), _autocast(model.device):
        out = model.net(x, None, None, [], False, False, "saddle_balanced")
    w2c = np.tile(np.eye(4), (len(frames), 1, 1))
    w2c[:, :3, :] = out["extrinsics"][0].float().cpu().numpy()
    scale = out.get("scale_factor")
    return RawPrediction(
        depth=out["depth"][0].float().cpu().numpy(),
        conf=out["depth_conf"][0].float().cpu().numpy(),
        c2w=np.linalg.inv(w2c),
        intrinsics=out["intrinsics"][0].float().cpu().numpy().astype(np.float64),
        scale_factor=None if scale is None else float(scale),
    )


def _gather(frames, idx: range) -> np.ndarray:
    if hasattr(frames, "get_batch"):
        return np.asarray(frames.get_batch(list(idx)))
    if isinstance(frames, np.ndarray):
        return frames[idx.start:idx.stop]
    return np.stack([np.asarray(frames[i]) for i in idx])


def estimate_geometry(
    frames: Union[np.ndarray, Sequence[np.ndarray]],
    model: DA3Model,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    overlap: int = DEFAULT_OVERLAP,
    process_res: int = DEFAULT_PROCESS_RES,
    smoothing_sigma: float = 0.0,
    meta: Optional[GeometryMeta] = None,
    progress: bool = True,
) -> GeometryCache:
    """Depth, conf, intrinsics and world-to-camera poses (frame 0 = identity) of uint8 RGB frames.

    ``frames``: [N, H, W, 3] array, or any sequence of [H, W, 3] frames (a video reader with
    ``len``/``[i]``/``get_batch`` is read one chunk at a time). ``chunk_size``/``overlap``: frames per
    network call and frames shared by consecutive calls. ``smoothing_sigma`` > 0 smooths the poses
    (``geometry.smoothing``; off by default). ``meta``: source video fields; producer, frame count
    and the estimation parameters are filled in here. The result is not validated: see
    :func:`validate_output`.
    """
    n = len(frames)
    ranges = chunk_ranges(n, chunk_size, overlap)
    stitcher = ChunkStitcher(n)
    scale_factors = []
    bar = tqdm(ranges, desc="depth+poses (DA3 chunks)", unit="chunk", disable=None if progress else True)
    for idx in bar:
        pred = predict(model, _gather(frames, idx), process_res)
        stitcher.add(idx, pred.c2w, pred.depth, pred.conf, pred.intrinsics)
        scale_factors.append(pred.scale_factor)
    c2w = smooth_poses(stitcher.c2w, smoothing_sigma) if smoothing_sigma > 0 else stitcher.c2w
    extrinsics = np.linalg.inv(c2w)
    extrinsics[0] = np.eye(4)
    extra = {
        "model": model.name,
        "weights": model.source,
        "metric": model.is_metric,
        "process_res": process_res,
        "process_res_method": "upper_bound_resize",
        "chunk_size": chunk_size,
        "overlap": overlap,
        "chunks": [[r.start, r.stop] for r in ranges],
        "chunk_scales": [t.scale for t in stitcher.transforms],
        "overlap_errors": stitcher.overlap_errors,
        "metric_scale_factors": scale_factors,
        "pose_smoothing_sigma": smoothing_sigma,
    }
    base = meta or GeometryMeta()
    meta = dataclasses.replace(
        base,
        frame_count=n,
        producer=f"depth-anything-3 {importlib.metadata.version('depth-anything-3')} ({model.name})",
        extra={**base.extra, **extra},
    )
    return GeometryCache(
        depth=stitcher.depth,
        extrinsics=extrinsics,
        intrinsics=stitcher.intrinsics,
        conf=stitcher.conf,
        meta=meta,
    )


def validate_output(cache: GeometryCache, model: DA3Model) -> GeometryCache:
    """``validate_geometry`` for what ``model`` estimated: implausible output (e.g. the near-zero
    field of view of random weights) raises :class:`DA3Error` naming the model, the video
    (``cache.meta.source_video``) and the finding, with the fix for that model."""
    try:
        return validate_geometry(cache, source=model.describe())
    except GeometryCacheError as exc:
        raise DA3Error(_implausible_output(model, cache.meta.source_video, exc.problem)) from None


def _implausible_output(model: DA3Model, video: str, problem: str) -> str:
    if model.random_weights:
        fix = ("random-weight presets are for tests and timing only; pass a model folder with real weights "
               "(bash scripts/download.sh da3 puts one in checkpoints/DA3)")
    else:
        fix = (f"the weights in {model.source} have the expected keys and shapes, so their values may be corrupt "
               "(fetch them again: bash scripts/download.sh da3) or the frames may show no scene (blank or uniform)")
    return f"{model.describe()} produced implausible geometry for {video or 'the given frames'}: {problem}; {fix}"
