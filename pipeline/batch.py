"""Batch runner: every video of a folder through the stages, stage by stage, one failure never stops the rest.

Stages run in the order caption, geometry, render, generate, then the outputs are published. Each
model is loaded once per stage for all videos. A video that fails (unreadable, too short, bad
geometry cache, ...) is reported and skipped; a stage whose weights are missing is reported and
skipped too, while every stage that does not depend on it still runs (captions and generation do
not hold up geometry and rendering).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from pipeline import dist
from pipeline.fsutil import atomic_write, folder_lock
from pipeline.inputs import InputItem, PreparedInput, find_inputs, prepare_input
from pipeline.layout import GEOMETRY_FILE, GENERATED_FILE, VideoPaths
from pipeline.stages import caption as caption_stage
from pipeline.stages import generate as generate_stage
from pipeline.stages import geometry as geometry_stage
from pipeline.stages import publish as publish_stage
from pipeline.stages import render as render_stage
from pipeline.stages.cached import (
    MissingWeightsError,
    Outcome,
    Policy,
    current_digest,
    decide,
    describe_missing,
    produce_and_commit,
    run_cached,
)
from pipeline.stages.config import SKIP_FLAGS, STAGES, STEP_OF_STAGE, RunConfig
from pipeline.stages.source import SourceVideo, open_source
from pipeline.stages.weights import stage_weights
from pipeline.weights import WeightFile
from trajectories import PathOptions, Trajectory, find_trajectory, read_trajectory

log = logging.getLogger("pipeline")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_WEIGHTS_MISSING = 3
DEPENDS = {"caption": (), "geometry": (), "render": ("geometry",), "generate": ("caption", "render"),
           "publish": ("render",)}


def _weight(row: list) -> WeightFile:
    """A WeightFile from its JSON row in a summary."""
    return WeightFile(row[0], Path(row[1]), *row[2:])


class PipelineError(ValueError):
    """A problem with the run as a whole (input folder, trajectory, output folder, options)."""


@dataclass
class VideoRecord:
    """One video's progress through the stages (JSON-able summary for the final table)."""

    path: Path
    paths: VideoPaths
    source: SourceVideo | None = None
    prepared: PreparedInput | None = None
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    blocked: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    missing: list[WeightFile] = field(default_factory=list)
    output: Path | None = None

    def ready_for(self, stage: str) -> bool:
        return self.error is None and self.source is not None and all(d in self.outcomes for d in DEPENDS[stage])

    def summary(self, dry_run: bool = False) -> dict:
        verbs = {"run": "would run", "reuse": "reuse"} if dry_run else {"run": "ran", "reuse": "reused"}
        cells = {s: (verbs[o.action], o.reason) for s, o in self.outcomes.items()}
        missing = self.missing + [n for o in self.outcomes.values() for n in o.missing if n not in self.missing]
        cells.update({s: (b, b) for s, b in self.blocked.items()})
        return {
            "video": self.path.name,
            "stages": cells,
            "error": self.error,
            "missing": [[n.name, str(n.path), n.download_cmd, n.required_for, n.check] for n in missing],
            "output": str(self.output) if self.output else None,
        }


@dataclass
class Batch:
    """What every stage of one run shares."""

    cfg: RunConfig
    spec: Trajectory
    path_options: PathOptions
    captions: dict[str, str]
    rank: dist.Rank
    weights: dict[str, list[WeightFile]]
    models: dict[str, object] = field(default_factory=dict)

    def policy(self, stage: str) -> Policy:
        if stage in self.cfg.stages or stage == "publish":
            if stage in self.cfg.skip:
                flag = SKIP_FLAGS[stage]
                return Policy(reuse_only=f"{flag} was given", fix=f"run without {flag} to recompute it",
                              dry_run=self.cfg.dry_run)
            return Policy(force=self.cfg.force, dry_run=self.cfg.dry_run)
        return Policy(reuse_only=f"this command does not compute the {stage} stage",
                      fix=f"run `python -m pipeline {stage}` (or `run`) first", dry_run=self.cfg.dry_run)

    def device(self, stage: str) -> str:
        return dist.device_for(self.rank, self.cfg.gpus.get(str(STEP_OF_STAGE[stage]), []))

    def model(self, name: str, load: Callable[[], object]) -> object:
        if name not in self.models:
            self.models[name] = load()
        return self.models[name]


def _check_writable(folder: Path, what: str, flag: str, dry_run: bool) -> None:
    try:
        if dry_run:
            existing = next(p for p in [folder, *folder.parents] if p.exists())
            if not os.access(existing, os.W_OK):
                raise PermissionError(f"no write permission on {existing}")
            return
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test."):
            pass
    except OSError as exc:
        raise PipelineError(f"{what} {folder} is not writable ({exc}); choose another {flag}") from None


def prepare(cfg: RunConfig) -> tuple[list[InputItem], Batch]:
    """Validate the run (raises PipelineError/TrajectoryError naming the file) and list the videos."""
    if not cfg.input_dir.is_dir():
        raise PipelineError(f"input folder {cfg.input_dir} does not exist or is not a folder; check --input_dir")
    videos = find_inputs(cfg.input_dir)
    if not videos:
        raise PipelineError(
            f"input folder {cfg.input_dir} contains no videos or photos (looked for videos .mp4 .mov .mkv .webm .avi, images "
            ".png .jpg .jpeg .webp, sub-folders of images, and InSpatio-World 1.5 scene folders with scene.json)"
        )
    stems: dict[str, Path] = {}
    for item in videos:
        if item.name in stems:
            raise PipelineError(f"{stems[item.name]} and {item.path} share the name '{item.name}'; rename one "
                                "(outputs are named by it)")
        stems[item.name] = item.path
    try:
        traj = find_trajectory(cfg.traj_path)
    except FileNotFoundError as exc:
        raise PipelineError(f"{exc}; check --traj_txt_path") from None
    spec = read_trajectory(traj)
    try:
        options = PathOptions(**cfg.path_options)
    except ValueError as exc:
        raise PipelineError(f"invalid trajectory option: {exc}") from None
    render_stage.check_settings(cfg.render)
    captions: dict[str, str] = {}
    if cfg.captions_file is not None:
        from models.florence import load_captions_file

        captions = load_captions_file(cfg.captions_file)
    _check_writable(cfg.output_folder, "output folder", "--output_folder", cfg.dry_run)
    _check_writable(cfg.work_dir, "work folder", "--work_dir", cfg.dry_run)
    batch = Batch(cfg=cfg, spec=spec, path_options=options, captions=captions, rank=dist.current_rank(),
                  weights=stage_weights(cfg))
    return videos, batch


def _given_caption(batch: Batch, record: VideoRecord) -> str | None:
    from models.florence import lookup_caption

    if batch.cfg.caption is not None:
        return batch.cfg.caption
    given = lookup_caption(batch.captions, record.path)
    if given is None and record.prepared is not None:
        return record.prepared.caption  # a scene folder's prompt.txt
    return given


def _fail(record: VideoRecord, stage: str, exc: Exception) -> None:
    if isinstance(exc, MissingWeightsError):
        record.blocked[stage] = "missing weights"
        record.missing += [n for n in exc.missing if n not in record.missing]
        log.warning("%s: %s skipped, weights missing", record.path.name, stage)
        return
    record.error = f"{stage}: {exc}"
    log.error("%s: %s failed: %s", record.path.name, stage, exc)
    log.debug("traceback", exc_info=exc)


def _log_outcome(r: VideoRecord, stage: str, seconds: float | None = None) -> None:
    o = r.outcomes[stage]
    took = "" if seconds is None else f" in {seconds:.1f} s"
    log.info("%s: %s %s%s (%s)", r.path.name, stage, o.action, took, o.reason)


def _caption_stage(batch: Batch, records: list[VideoRecord]) -> None:
    """All captions at once: given texts are written directly, the rest go through Florence-2 in batches."""
    cfg, policy = batch.cfg, batch.policy("caption")
    todo: list[tuple[VideoRecord, object, str | None, str]] = []
    for r in records:
        given = _given_caption(batch, r)
        key = caption_stage.caption_key(r.source, given, cfg.weights.florence)
        try:
            decision = decide("caption", r.paths.caption, key, policy, batch.weights["caption"] if given is None else ())
        except Exception as exc:  # noqa: BLE001 - reported per video
            _fail(r, "caption", exc)
            continue
        if decision.action == "reuse":
            r.outcomes["caption"] = Outcome("caption", "reuse", decision.reason, current_digest(r.paths.caption))
            _log_outcome(r, "caption")
        elif cfg.dry_run:
            r.outcomes["caption"] = Outcome("caption", "run", decision.reason, None, decision.missing)
        else:
            todo.append((r, key, given, decision.reason))
    if not todo:
        return
    need_model = [t for t in todo if t[2] is None]
    texts: dict[str, str] = {}
    if need_model:
        try:
            generated = caption_stage.florence_captions([t[0].source for t in need_model], cfg.weights.florence,
                                                        batch.device("caption"))
            texts = {t[0].path.name: g for t, g in zip(need_model, generated)}
        except Exception as exc:  # noqa: BLE001 - the model failed for the whole batch
            for t in need_model:
                _fail(t[0], "caption", exc)
    for r, key, given, reason in todo:
        text = given if given is not None else texts.get(r.path.name)
        if text is None:
            continue
        try:
            with folder_lock(r.paths.caption):
                digest = produce_and_commit(r.paths.caption, key, caption_stage.OUTPUTS,
                                            lambda out: caption_stage.write_caption(out, text))
            r.outcomes["caption"] = Outcome("caption", "run", reason, digest)
            _log_outcome(r, "caption")
        except Exception as exc:  # noqa: BLE001
            _fail(r, "caption", exc)


def _geometry_one(batch: Batch, r: VideoRecord) -> Outcome:
    cfg = batch.cfg
    scene = r.prepared.geometry if r.prepared is not None else None
    if scene is not None:
        return run_cached("geometry", r.paths.geometry, geometry_stage.scene_geometry_key(r.source, r.prepared.digest),
                          geometry_stage.OUTPUTS,
                          lambda out: geometry_stage.store_geometry(out, scene, r.source, f"scene folder {r.path}"),
                          batch.policy("geometry"))
    provided = geometry_stage.provided_cache(cfg.geometry_dir, r.source)
    key = geometry_stage.geometry_key(r.source, provided, cfg.weights.da3, cfg.render, cfg.geometry)
    if provided is not None:
        return run_cached("geometry", r.paths.geometry, key, geometry_stage.OUTPUTS,
                          lambda out: geometry_stage.import_cache(out, provided, r.source), batch.policy("geometry"))

    def produce(out: Path) -> None:
        from geometry.da3 import load_da3

        model = batch.model("da3", lambda: load_da3(cfg.weights.da3, batch.device("geometry")))
        geometry_stage.estimate(out, model, r.source, cfg.render, cfg.geometry)

    return run_cached("geometry", r.paths.geometry, key, geometry_stage.OUTPUTS, produce, batch.policy("geometry"),
                      batch.weights["geometry"])


def _render_one(batch: Batch, r: VideoRecord) -> Outcome:
    cfg = batch.cfg
    spec = r.prepared.trajectory if r.prepared is not None and r.prepared.trajectory is not None else batch.spec
    frames = render_stage.log_frame_count(spec, r.source, batch.path_options)
    key = render_stage.render_key(r.source, r.outcomes["geometry"].digest, spec, batch.path_options, cfg.render)
    outcome = run_cached(
        "render", r.paths.render, key, render_stage.OUTPUTS,
        lambda out: render_stage.produce_render(out, r.source, r.paths.geometry / GEOMETRY_FILE, spec,
                                                batch.path_options, cfg.render, batch.device("render")),
        batch.policy("render"),
    )
    return dataclasses.replace(outcome, reason=f"{outcome.reason}; {frames.describe()}")


def _generate_one(batch: Batch, r: VideoRecord) -> Outcome:
    cfg = batch.cfg
    needed = batch.weights["generate"]
    key = generate_stage.generate_key(r.source, r.outcomes["caption"].digest, r.outcomes["render"].digest,
                                      [n.path for n in needed], cfg.seed, cfg.use_tae, cfg.generator,
                                      cfg.spacetimepilot_steps)

    def produce(out: Path) -> None:
        caption = caption_stage.read_caption(r.paths.caption)
        if cfg.generator == "spacetimepilot":
            generate_stage.produce_spacetimepilot(
                out, r.source, r.paths.render, r.paths.geometry / GEOMETRY_FILE, caption, cfg.weights, cfg.seed,
                cfg.spacetimepilot_steps, cfg.compile_dit, cfg.render.resize, batch.device("generate"))
        else:
            generate_stage.produce_generated(out, r.source, r.paths.render, caption, cfg.weights, cfg.seed,
                                             cfg.use_tae, cfg.compile_dit, cfg.render.resize, batch.device("generate"))

    return run_cached("generate", r.paths.generated, key, generate_stage.OUTPUTS, produce, batch.policy("generate"),
                      needed)


def _publish_one(batch: Batch, r: VideoRecord) -> Outcome:
    generated = r.outcomes.get("generate")
    key = publish_stage.publish_key(r.source, r.outcomes["render"].digest, generated.digest if generated else None,
                                    batch.cfg.render)
    result = r.paths.generated / GENERATED_FILE if generated else None
    outcome = run_cached(
        "publish", r.paths.output, key, publish_stage.outputs(generated is not None),
        lambda out: publish_stage.produce_outputs(out, r.source, r.paths.render, result, batch.cfg.render,
                                                  r.paths.geometry / GEOMETRY_FILE),
        batch.policy("publish"),
    )
    if not batch.cfg.dry_run:
        r.output = r.paths.output / (GENERATED_FILE if generated else "preview.mp4")
    return outcome


PER_VIDEO = {"geometry": _geometry_one, "render": _render_one, "generate": _generate_one, "publish": _publish_one}


def run_stage(batch: Batch, stage: str, records: list[VideoRecord]) -> None:
    """Run (or reuse) ``stage`` for every record whose upstream stages succeeded."""
    ready = [r for r in records if r.ready_for(stage)]
    for r in records:
        if r.error is None and r.source is not None and not r.ready_for(stage):
            r.blocked.setdefault(stage, "needs " + ", ".join(d for d in DEPENDS[stage] if d not in r.outcomes))
    if stage == "caption":
        _caption_stage(batch, ready)
        return
    for r in tqdm(ready, desc=stage, unit="video", disable=None, leave=False):
        start = time.perf_counter()
        try:
            r.outcomes[stage] = PER_VIDEO[stage](batch, r)
        except Exception as exc:  # noqa: BLE001 - reported per video, the batch goes on
            _fail(r, stage, exc)
        else:
            _log_outcome(r, stage, time.perf_counter() - start)


def _stage_nproc(cfg: RunConfig, stage: str) -> int:
    step = STEP_OF_STAGE[stage]
    return cfg.step3_nproc if step == 3 else len(cfg.gpus.get(str(step), []))


def _run_stage_on_ranks(batch: Batch, stage: str, records: list[VideoRecord]) -> None:
    """Launch torchrun for one stage (its GPUs from --stepN_gpus) and merge the ranks' results."""
    cfg = batch.cfg
    with tempfile.TemporaryDirectory(prefix="pipeline-dist-") as tmp:
        cfg_file, results = Path(tmp) / "config.json", Path(tmp) / "results.json"
        cfg_file.write_text(cfg.to_json())
        gpus = cfg.gpus.get(str(STEP_OF_STAGE[stage]), [])
        code = dist.launch(_stage_nproc(cfg, stage), gpus, cfg.master_port,
                           ["worker", str(cfg_file), stage, str(results)])
        summaries = json.loads(results.read_text()) if results.is_file() else {}
    for r in records:
        if not r.ready_for(stage):
            continue
        s = summaries.get(r.path.name)
        if s is None:
            r.error = f"{stage}: no result from the torchrun workers (exit status {code})"
        elif s["error"]:
            r.error = s["error"]
        elif stage in s["stages"] and s["stages"][stage][0] in ("ran", "reused"):
            action, reason = s["stages"][stage]
            digest = current_digest(r.paths.stage_dir(stage))
            r.outcomes[stage] = Outcome(stage, "run" if action == "ran" else "reuse", reason, digest)
        else:
            r.blocked[stage] = s["stages"].get(stage, ("not run",))[0]
            r.missing += [_weight(m) for m in s["missing"] if _weight(m) not in r.missing]


def open_records(batch: Batch, videos: list[InputItem]) -> list[VideoRecord]:
    cfg = batch.cfg
    records = []
    for item in dist.shard(videos, batch.rank.rank, batch.rank.world_size):
        r = VideoRecord(item.path, VideoPaths.make(item.path, cfg.work_dir, cfg.output_folder, cfg.traj_path.stem))
        try:
            r.prepared = prepare_input(item, r.paths.work)
            r.source = open_source(r.prepared.video, static=r.prepared.static)
            render_stage.check_time_options(batch.path_options, r.source.info, r.source.path)
        except Exception as exc:  # noqa: BLE001
            _fail(r, "input", exc)
        records.append(r)
    return records


def stages_to_touch(cfg: RunConfig) -> list[str]:
    """The selected stages plus everything upstream of them (reused only), in pipeline order."""
    need = set(cfg.stages)
    for stage in reversed(STAGES):
        if stage in need:
            need.update(DEPENDS[stage])
    return [s for s in STAGES if s in need]


def _gather(batch: Batch, records: list[VideoRecord]) -> list[dict]:
    """Every rank's video summaries, sorted by video name; ends the process group."""
    parts = dist.gather([r.summary(batch.cfg.dry_run) for r in records], batch.rank)
    dist.finish(batch.rank)
    return sorted((s for part in parts for s in part), key=lambda s: s["video"])


def run_batch(cfg: RunConfig) -> list[dict]:
    """Run every stage over the input folder (this rank's share), then publish; returns every video's summary."""
    videos, batch = prepare(cfg)
    records = open_records(batch, videos)
    publish = ["publish"] if "render" in cfg.stages or "generate" in cfg.stages else []
    for stage in stages_to_touch(cfg) + publish:
        on_ranks = (stage in cfg.stages and not batch.rank.distributed and not cfg.dry_run
                    and _stage_nproc(cfg, stage) > 1)
        log.info("stage %s%s", stage, " (torchrun)" if on_ranks else "")
        (_run_stage_on_ranks if on_ranks else run_stage)(batch, stage, records)
    if not cfg.dry_run and publish:
        for r in records:
            if "publish" not in r.outcomes:
                _withdraw_outputs(r)
    summaries = _gather(batch, records)
    if publish and not cfg.dry_run and batch.rank.rank == 0:
        from pipeline.viewer import index_rows, write_index

        write_index(cfg.output_folder, index_rows(summaries, cfg.output_folder),
                    f"{cfg.input_dir.name} / {cfg.traj_path.stem}")
    return summaries


def _withdraw_outputs(r: VideoRecord) -> None:
    """A video that failed or was blocked before publishing: its earlier published outputs would look
    current, so they are removed, and the error (or the log) says so."""
    removed = publish_stage.withdraw(r.paths.output)
    if not removed:
        return
    note = f"the outputs of an earlier run in {r.paths.output} were withdrawn ({', '.join(removed)})"
    log.warning("%s: %s", r.path.name, note)
    if r.error is not None:
        r.error += f"; {note}"


def run_worker(cfg: RunConfig, stage: str, results: Path) -> None:
    """One torchrun rank of a single stage: its share of the videos; rank 0 writes everyone's results."""
    videos, batch = prepare(dataclasses.replace(cfg, stages=(stage,)))
    records = open_records(batch, videos)
    for s in stages_to_touch(batch.cfg):
        run_stage(batch, s, records)
    summaries = _gather(batch, records)
    if batch.rank.rank == 0:
        with atomic_write(results) as tmp:
            tmp.write_text(json.dumps({s["video"]: s for s in summaries}))


COLUMNS = ("caption", "geometry", "render", "generate")


def format_table(summaries: list[dict]) -> str:
    """The end-of-run table: video, each stage's action, and the output or the error."""
    rows = [("video", *COLUMNS, "output / error")]
    for s in summaries:
        cells = [s["stages"].get(c, ("-",))[0] for c in COLUMNS]
        if s["error"]:
            failed_stage = s["error"].split(":", 1)[0]
            cells = ["FAILED" if c == failed_stage else x for c, x in zip(COLUMNS, cells)]
        rows.append((s["video"], *cells, f"ERROR {s['error']}" if s["error"] else (s["output"] or "-")))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:-1], widths)) + "  " + r[-1] for r in rows]
    return "\n".join([lines[0], "-" * len(lines[0]), *lines[1:]])


def missing_weights_text(summaries: list[dict], dry_run: bool = False) -> str:
    """One explanation of every missing weight file (deduplicated), or '' when none is missing."""
    missing: list[WeightFile] = []
    for s in summaries:
        missing += [_weight(m) for m in s["missing"] if _weight(m) not in missing]
    if not missing:
        return ""
    if dry_run:
        return "These weights are missing; the stages that need them will be skipped:\n" + describe_missing(missing)
    return ("Stages that need these weights were skipped (everything else ran); put the files in place "
            "and rerun the same command to finish:\n" + describe_missing(missing))


def exit_status(summaries: list[dict], dry_run: bool = False) -> int:
    if any(s["error"] for s in summaries):
        return EXIT_FAILED
    if not dry_run and any(s["missing"] for s in summaries):
        return EXIT_WEIGHTS_MISSING
    return EXIT_OK
