"""Generate stage: source video + render folder + caption -> generated.mp4 (the causal DiT)."""

from __future__ import annotations

import logging
from pathlib import Path

from pipeline.layout import GENERATED_FILE
from pipeline.manifest import StageKey
from pipeline.stages.config import WeightPaths
from pipeline.stages.source import SourceVideo
from pipeline.stages.weights import weights_identity

log = logging.getLogger("pipeline")

VERSION = 1
OUTPUTS = [GENERATED_FILE]


def generate_key(source: SourceVideo, caption_digest: str | None, render_digest: str | None, weight_files: list[Path],
                 seed: int, use_tae: bool) -> StageKey:
    return StageKey(
        "generate",
        VERSION,
        inputs={**source.key_inputs, "caption": caption_digest, "render": render_digest},
        params={"seed": seed, "use_tae": use_tae, "weights": weights_identity(weight_files)},
    )


def produce_generated(out_dir: Path, source: SourceVideo, render_dir: Path, caption: str, weights: WeightPaths,
                      seed: int, use_tae: bool, compile_dit: bool, resize: str, device: str) -> None:
    from pipeline.generate_output import GenerateOptions, GenerateWeights, generate_to_file

    result = generate_to_file(
        source.path, render_dir, caption,
        GenerateWeights.from_paths(weights.checkpoint, weights.wan_dir, weights.tae if use_tae else None, weights.config),
        Path(out_dir) / GENERATED_FILE,
        GenerateOptions(seed=seed, use_tae=use_tae, compile_dit=compile_dit, device=device, resize=resize),
    )
    log.info("%s: %s", source.path.name, result.plan.describe())
