"""Generate stage: source video + render folder + caption -> generated.mp4 (the causal DiT, or SpaceTimePilot
with ``--generator spacetimepilot``, which also reads the geometry cache's source cameras)."""

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
                 seed: int, use_tae: bool, generator: str = "causal", steps: int | None = None) -> StageKey:
    """The causal generator's key is unchanged from earlier versions; SpaceTimePilot's adds its name and steps
    (its geometry input is covered by the render digest, which depends on the geometry)."""
    params = {"seed": seed, "use_tae": use_tae, "weights": weights_identity(weight_files)}
    if generator != "causal":
        params |= {"generator": generator, "steps": steps}
    return StageKey(
        "generate",
        VERSION,
        inputs={**source.key_inputs, "caption": caption_digest, "render": render_digest},
        params=params,
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


def produce_spacetimepilot(out_dir: Path, source: SourceVideo, render_dir: Path, geometry_file: Path, caption: str,
                           weights: WeightPaths, seed: int, steps: int, compile_dit: bool, resize: str, device: str) -> None:
    from pipeline.generate_output import GenerateOptions
    from pipeline.generate_spacetimepilot import SpaceTimePilotSettings, SpaceTimePilotWeights, generate_spacetimepilot_to_file

    result = generate_spacetimepilot_to_file(
        source.path, render_dir, geometry_file, caption,
        SpaceTimePilotWeights(weights.spacetimepilot, weights.wan_dir), Path(out_dir) / GENERATED_FILE,
        GenerateOptions(seed=seed, compile_dit=compile_dit, device=device, resize=resize),
        SpaceTimePilotSettings(steps=steps),
    )
    log.info("%s: %s; %.2f s per sampler step", source.path.name, result.window.describe(), result.seconds_per_step)
