"""The resolved settings of one pipeline run (built by the CLI, read by every stage)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STAGES = ("caption", "geometry", "render", "generate")
GENERATORS = ("causal", "spacetimepilot")  # --generator: the causal block DiT, or SpaceTimePilot
# --skip_stepN of the reference: step 1 = captions, step 2 = depth/poses, step 3 = generation.
SKIP_FLAGS = {"caption": "--skip_step1", "geometry": "--skip_step2", "generate": "--skip_step3"}
# Multi-GPU: which --stepN_gpus list a stage runs on (rendering belongs to step 2, as in the reference).
STEP_OF_STAGE = {"caption": 1, "geometry": 2, "render": 2, "generate": 3}


@dataclass(frozen=True)
class WeightPaths:
    """Where each model's weights are read from (defaults under ``checkpoints_dir``)."""

    checkpoints_dir: Path
    checkpoint: Path  # causal DiT .safetensors (--checkpoint_path)
    config: Path  # Wan2.1 config.json (--config_path); its folder holds the VAE, umT5 and tokenizer
    da3: Path  # Depth-Anything-3 model folder (--da3_model_path)
    florence: Path  # Florence-2 model folder (--florence_model_path)
    tae: Path  # TAEHV decoder taew2_1.pth (--tae_checkpoint_path)
    spacetimepilot: Path  # SpaceTimePilot DiT SpacetimePilot_1.3B_v1.ckpt (--spacetimepilot_path)

    @property
    def wan_dir(self) -> Path:
        return self.config.parent


@dataclass(frozen=True)
class OutputSettings:
    """Working (output) resolution, resize policy, fps and render backend; ``fps`` None keeps the source frame rate."""

    width: int = 832
    height: int = 480
    resize: str = "stretch"
    fps: float | None = None
    backend: str = "torch"


@dataclass(frozen=True)
class GeometrySettings:
    """Depth-Anything-3 options: ``process_res`` is the long side (pixels) the network sees;
    ``chunk_size``/``overlap`` are frames per network call and frames shared by consecutive calls.
    Defaults are the reference's resolution and ``geometry.da3``'s chunking defaults."""

    process_res: int = 504
    chunk_size: int = 128
    overlap: int = 32


@dataclass(frozen=True)
class RunConfig:
    """Everything one run needs; JSON round-trips so torchrun workers get the same settings."""

    input_dir: Path
    traj_path: Path
    output_folder: Path
    work_dir: Path
    weights: WeightPaths
    geometry_dir: Path | None = None
    path_options: dict[str, Any] = field(default_factory=dict)  # trajectories.PathOptions fields
    render: OutputSettings = OutputSettings()
    geometry: GeometrySettings = GeometrySettings()
    caption: str | None = None
    captions_file: Path | None = None
    seed: int = 0
    use_tae: bool = False
    compile_dit: bool = False
    generator: str = "causal"
    spacetimepilot_steps: int = 20
    force: bool = False
    dry_run: bool = False
    skip: tuple[str, ...] = ()  # stages given --skip_stepN
    stages: tuple[str, ...] = STAGES  # stages this command computes; the others are only reused
    gpus: dict[str, list[str]] = field(default_factory=dict)  # "1"/"2"/"3" -> GPU ids
    step3_nproc: int = 1
    master_port: int = 29513
    verbose: bool = False

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), default=str)

    @classmethod
    def from_json(cls, text: str) -> "RunConfig":
        data = json.loads(text)
        paths = {"input_dir", "traj_path", "output_folder", "work_dir", "geometry_dir", "captions_file"}
        for k in paths:
            data[k] = None if data[k] is None else Path(data[k])
        data["weights"] = WeightPaths(**{k: Path(v) for k, v in data["weights"].items()})
        data["render"] = OutputSettings(**data["render"])
        data["geometry"] = GeometrySettings(**data["geometry"])
        data["skip"] = tuple(data["skip"])
        data["stages"] = tuple(data["stages"])
        return cls(**data)
