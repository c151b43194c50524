"""Command line: ``python -m pipeline {run,caption,geometry,render,generate}`` (``run_pipeline.sh`` wraps ``run``),
``cameras {convert,export}`` (``pipeline.cameras_cli``) and ``presets``.

Every batch command takes the same options (the reference system's flags, same names and meanings,
plus caching and trajectory options); ``run`` computes every stage, a stage command computes that
stage and only reuses what it depends on. ``render`` also works alone on explicit files:
``python -m pipeline render --video V --geometry G.npz --traj T.txt --out DIR``.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import math
import os
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import typer

from pipeline.cameras_cli import app as cameras_app
from pipeline.stages.config import GENERATORS, STAGES, GeometrySettings, OutputSettings, RunConfig
from trajectories import PathOptions
from trajectories.timemap import TIME_PRESETS

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CHECKPOINTS = Path(os.environ.get("INSPATIO_CHECKPOINTS", REPO / "checkpoints"))
_PATH_DEFAULTS = PathOptions()
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it
_GEOMETRY_DEFAULTS = GeometrySettings()
log = logging.getLogger("pipeline")

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Camera- and time-controlled re-rendering of videos: caption -> geometry -> render -> generate.",
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _opt(name: str, annotation: Any, default: Any, help: str, *aliases: str) -> inspect.Parameter:
    decl = [f"--{name}", *aliases]
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=Annotated[annotation, typer.Option(*decl, help=help)])


BATCH_OPTIONS = [
    _opt("input_dir", Optional[Path], None,
         "Folder of inputs: videos (.mp4 .mov .mkv .webm .avi), images (.png .jpg .jpeg .webp; one view each), "
         "sub-folders of images (one scene of several views) and InSpatio-World 1.5 scene folders. Required."),
    _opt("traj_txt_path", Optional[str], None,
         "Trajectory file (3 lines pitch/yaw/displacement, optional 4th time line, optional 'zoom ...' line), "
         "a file of one 4x4 world-to-camera matrix per output frame (target_tcw.txt; see docs/camera_formats.md), "
         "or a preset name (trajectories/presets). Required.", "--traj"),
    _opt("output_folder", Optional[Path], None, "Final outputs. [default: ./output/<input dir name>/<trajectory name>]"),
    _opt("work_dir", Optional[Path], None,
         "Cached stage outputs shared by all trajectories (captions, geometry, renders). [default: <output_folder>/../work]"),
    _opt("geometry_dir", Optional[Path], None,
         "Folder of provided geometry caches <video stem>.npz (+ .json sidecar) used instead of running DA3. "
         "[default: <input_dir>/geometry if it exists]"),
    _opt("captions_file", Optional[Path], None,
         "JSON object mapping video file names to captions, used instead of Florence-2. "
         "[default: <input_dir>/captions.json if it exists]"),
    _opt("caption", Optional[str], None, "One caption for every video, used instead of Florence-2."),
    _opt("checkpoints_dir", Path, DEFAULT_CHECKPOINTS,
         "Root of the weights layout written by scripts/download.sh (env INSPATIO_CHECKPOINTS)."),
    _opt("checkpoint_path", Optional[Path], None,
         "Causal DiT weights. [default: <checkpoints_dir>/InSpatio-World-1.3B/InSpatio-World-1.3B.safetensors]"),
    _opt("config_path", Optional[Path], None,
         "Wan2.1 config.json; its folder also holds the VAE, umT5 encoder and tokenizer. "
         "[default: <checkpoints_dir>/Wan2.1-T2V-1.3B/config.json]"),
    _opt("da3_model_path", Optional[Path], None,
         "Depth-Anything-3 model folder (config.json + model.safetensors). A preset name (e.g. da3-small) "
         "builds random weights and needs --da3_random_weights. [default: <checkpoints_dir>/DA3]"),
    _opt("da3_random_weights", bool, False,
         "Allow --da3_model_path to name a preset: RANDOM weights, meaningless geometry; for tests and timing only."),
    _opt("da3_process_res", int, _GEOMETRY_DEFAULTS.process_res,
         "Long side in pixels of the frames DA3 sees (each side then rounded to a multiple of 14: "
         "480x832 -> 294x504); depth is stored at that resolution."),
    _opt("da3_chunk_size", int, _GEOMETRY_DEFAULTS.chunk_size,
         "Frames per DA3 call; longer videos run in overlapping chunks registered to each other (bounds memory)."),
    _opt("da3_overlap", int, _GEOMETRY_DEFAULTS.overlap,
         "Frames shared by consecutive DA3 chunks, used to register them (at least 1, less than --da3_chunk_size)."),
    _opt("florence_model_path", Optional[Path], None, "Florence-2 model folder. [default: <checkpoints_dir>/Florence-2-large]"),
    _opt("tae_checkpoint_path", Optional[Path], None, "TAEHV decoder for --use_tae. [default: <checkpoints_dir>/taehv/taew2_1.pth]"),
    _opt("generator", Literal[GENERATORS], "causal",
         "Step 3 model: causal (the causal block DiT, conditioned on the render) or spacetimepilot (SpaceTimePilot, "
         "conditioned on source and target cameras and the time map; one 81-frame window, see docs/spacetimepilot.md)."),
    _opt("spacetimepilot_path", Optional[Path], None,
         "SpaceTimePilot DiT for --generator spacetimepilot. "
         "[default: <checkpoints_dir>/SpaceTimePilot/SpacetimePilot_1.3B_v1.ckpt]"),
    _opt("spacetimepilot_steps", int, 20, "Sampler steps of --generator spacetimepilot (flow matching, CFG 5)."),
    _opt("skip_step1", bool, False, "Never recompute captions: reuse them, fail if missing or stale."),
    _opt("skip_step2", bool, False, "Never recompute geometry (depth + poses): reuse it, fail if missing or stale."),
    _opt("skip_step3", bool, False, "Never recompute generation: reuse it, fail if missing or stale."),
    _opt("force", bool, False, "Recompute every stage this command runs, even when up to date."),
    _opt("dry_run", bool, False, "Print the plan (which stages run or are reused, and why); compute nothing."),
    _opt("relative_to_source", bool, False, "Trajectory rides on the moving source camera instead of camera 0."),
    _opt("rotation_only", bool, False, "Rotate in place (tripod pan/tilt): no orbit translation; a dolly still applies."),
    _opt("disable_adaptive_frame", bool, False, "Keep the frame count instead of resampling to 0.3-0.8 degrees/frame."),
    _opt("freeze_repeat", int, 0, "Insert this many copies of the freeze frame (time stops, camera moves)."),
    _opt("freeze_frame", Optional[int], None, "Source frame to freeze. [default: the middle frame]"),
    _opt("num_frames", Optional[int], None, "Nominal output frame count. [default: the source frame count]"),
    _opt("max_frames", int, _PATH_DEFAULTS.max_frames,
         "Cap on the adaptive output frame count (the camera then moves faster than 0.8 degrees/frame); "
         "--num_frames + --freeze_repeat may not exceed it. Raise it for very long paths."),
    _opt("interpolation", Literal["exact", "reference"], _PATH_DEFAULTS.interpolation,
         "Keyframe interpolation: exact (through every key, no overshoot) or reference (its smoothing spline)."),
    _opt("radius_mode", Literal["scene", "absolute"], _PATH_DEFAULTS.radius,
         "Displacement unit: scene (x the first frame's foreground depth) or absolute (scene units)."),
    _opt("time_mode", Literal["forward", "reverse", "pingpong"], _PATH_DEFAULTS.time_mode, "Playback of the source."),
    _opt("slowmo", float, _PATH_DEFAULTS.slowmo, "Slow-motion factor >= 1 (2 = half speed)."),
    _opt("time_preset", Optional[str], None,
         "A named time map instead of --time_mode/--slowmo and the time line (SpaceTimePilot's modes): "
         + ", ".join(TIME_PRESETS) + ". Stretched over the output; freezes still apply."),
    _opt("width", int, 832, "Working/output width in pixels (multiple of 16)."),
    _opt("height", int, 480, "Working/output height in pixels (multiple of 16)."),
    _opt("resize", Literal["stretch", "crop"], "stretch",
         "How the source fills width x height. stretch: the whole frame scaled to width x height, aspect "
         "ignored (as the reference). crop: the centred window with the width:height aspect, scaled to width x "
         "height (the output camera sees that window; a moving camera still shows the rest of the frame). "
         "Source, reference and preview frames follow the same policy; the geometry always covers the whole "
         "frame, so changing this re-renders but never re-runs DA3."),
    _opt("fps", Optional[float], None, "Output frame rate. [default: the source's]"),
    _opt("render_backend", str, "torch", "Point renderer backend: torch, the only one (pure torch, CPU or CUDA)."),
    _opt("seed", int, 0, "Seed of the generator's noise."),
    _opt("use_tae", bool, False, "Decode with the TAEHV tiny decoder instead of the Wan VAE (faster)."),
    _opt("compile_dit", bool, False, "torch.compile the DiT."),
    _opt("step1_gpus", str, "0", "GPU ids for captions; several (e.g. 0,1,2,3) shard videos over torchrun ranks."),
    _opt("step2_gpus", str, "0", "GPU ids for geometry and rendering; several shard videos over torchrun ranks."),
    _opt("step3_gpus", str, "0", "GPU ids visible to generation (CUDA_VISIBLE_DEVICES of its torchrun launch)."),
    _opt("step3_nproc", int, 1, "Generation processes (torchrun ranks over --step3_gpus)."),
    _opt("master_port", int, 29513, "torchrun master port."),
    _opt("verbose", bool, False, "Debug logs.", "-v"),
]

RENDER_FILE_OPTIONS = [
    _opt("video", Optional[Path], None, "Render one video on explicit files: the source video."),
    _opt("geometry", Optional[Path], None, "... its geometry cache (.npz, DA3 format)."),
    _opt("out", Optional[Path], None, "... and the folder for render.mp4, mask.mp4, mask.npz, cameras.json."),
]


def _gpus(text: str) -> list[str]:
    return [g.strip() for g in text.split(",") if g.strip()]


def _path_options(o: dict) -> dict:
    return dataclasses.asdict(PathOptions(
        n_frames=o["num_frames"], interpolation=o["interpolation"], radius=o["radius_mode"],
        relative_to_source=o["relative_to_source"], rotation_only=o["rotation_only"],
        adaptive_frames=not o["disable_adaptive_frame"], freeze_frame=o["freeze_frame"],
        freeze_repeat=o["freeze_repeat"], time_mode=o["time_mode"], slowmo=o["slowmo"], time_preset=o["time_preset"],
        max_frames=o["max_frames"],
    ))


def check_flags(o: dict, batch: bool) -> None:
    """Every option value, checked once before anything is read or written; raises ValueError naming
    the flag. ``batch``: also the options only the batch commands use (GPUs, torchrun; the DA3 options
    are checked by ``build_config``). ``--freeze_frame`` against each video: ``check_time_options``."""
    from pipeline.stages import render as render_stage
    from pipeline.stages.source import MIN_SOURCE_FRAMES

    render_stage.check_settings(_render_settings(o))
    counts = [
        ("--num_frames", o["num_frames"], MIN_SOURCE_FRAMES, "one generation block"),
        ("--max_frames", o["max_frames"], MIN_SOURCE_FRAMES, "one generation block"),
        ("--freeze_repeat", o["freeze_repeat"], 0, "no freeze"),
        ("--freeze_frame", o["freeze_frame"], 0, "the first source frame"),
    ]
    if batch:
        counts.append(("--step3_nproc", o["step3_nproc"], 1, "one process"))
    for flag, value, low, meaning in counts:
        if value is not None and value < low:
            raise ValueError(f"{flag} {value}: must be at least {low} ({meaning})")
    if not (math.isfinite(o["slowmo"]) and o["slowmo"] >= 1):
        raise ValueError(f"--slowmo {o['slowmo']:g}: must be a finite factor of at least 1 (2 = half speed)")
    nominal = o["num_frames"] or MIN_SOURCE_FRAMES  # without --num_frames, the shortest source possible
    if nominal + o["freeze_repeat"] > o["max_frames"]:
        raise ValueError(f"--num_frames {o['num_frames'] or f'(at least {MIN_SOURCE_FRAMES})'} + --freeze_repeat "
                         f"{o['freeze_repeat']} output frames exceed --max_frames {o['max_frames']}; raise "
                         "--max_frames or ask for fewer frames")
    if o["freeze_frame"] is not None and not o["freeze_repeat"]:
        log.warning("--freeze_frame %s has no effect without --freeze_repeat", o["freeze_frame"])
    if not batch:
        return
    if o["geometry_dir"] is not None and not Path(o["geometry_dir"]).is_dir():
        raise ValueError(f"--geometry_dir {o['geometry_dir']}: not a folder; give the folder that holds "
                         "<video stem>.npz caches, or leave it out to estimate the geometry")
    if not 1 <= o["master_port"] <= 65535:
        raise ValueError(f"--master_port {o['master_port']}: must be a TCP port in 1..65535")
    for step in ("1", "2", "3"):
        flag = f"--step{step}_gpus"
        if not all(g.isdigit() for g in _gpus(o[f"step{step}_gpus"])):
            raise ValueError(f"{flag} {o[f'step{step}_gpus']!r}: must be GPU ids separated by commas, e.g. 0,1")


def _render_settings(o: dict) -> OutputSettings:
    return OutputSettings(width=o["width"], height=o["height"], resize=o["resize"], fps=o["fps"], backend=o["render_backend"])


def _geometry_settings(o: dict) -> GeometrySettings:
    from pipeline.stages.geometry import check_settings

    settings = GeometrySettings(process_res=o["da3_process_res"], chunk_size=o["da3_chunk_size"],
                                overlap=o["da3_overlap"])
    check_settings(settings)
    return settings


def build_config(o: dict, stages: tuple[str, ...]) -> RunConfig:
    """Resolve defaults (output/work folders, weights, provided geometry and captions) into a RunConfig."""
    from pipeline.batch import PipelineError
    from pipeline.layout import default_output_folder, default_work_dir
    from pipeline.stages.geometry import check_model_choice
    from pipeline.stages.weights import default_weight_paths

    if o["input_dir"] is None or o["traj_txt_path"] is None:
        raise PipelineError("--input_dir and --traj_txt_path are required")
    input_dir = Path(o["input_dir"])
    traj = Path(o["traj_txt_path"])
    output = o["output_folder"] or default_output_folder(input_dir, traj)
    defaults = default_weight_paths(o["checkpoints_dir"])
    weights = dataclasses.replace(defaults, **{
        field: o[flag] for field, flag in (("checkpoint", "checkpoint_path"), ("config", "config_path"),
                                           ("da3", "da3_model_path"), ("florence", "florence_model_path"),
                                           ("tae", "tae_checkpoint_path"), ("spacetimepilot", "spacetimepilot_path"))
        if o[flag] is not None})
    if o["generator"] == "spacetimepilot" and o["use_tae"]:
        raise PipelineError("--use_tae applies to the causal generator; SpaceTimePilot decodes with the Wan VAE")
    if o["spacetimepilot_steps"] < 1:
        raise PipelineError(f"--spacetimepilot_steps must be at least 1, got {o['spacetimepilot_steps']}")
    warning = check_model_choice(weights.da3, o["da3_random_weights"])
    if warning:
        log.warning(warning)
    geometry_dir = o["geometry_dir"] or (input_dir / "geometry" if (input_dir / "geometry").is_dir() else None)
    captions_file = o["captions_file"] or (input_dir / "captions.json" if (input_dir / "captions.json").is_file() else None)
    skip = tuple(s for s, flag in (("caption", "skip_step1"), ("geometry", "skip_step2"), ("generate", "skip_step3"))
                 if o[flag])
    return RunConfig(
        input_dir=input_dir, traj_path=traj, output_folder=Path(output),
        work_dir=Path(o["work_dir"] or default_work_dir(output)), weights=weights, geometry_dir=geometry_dir,
        path_options=_path_options(o), render=_render_settings(o), geometry=_geometry_settings(o), caption=o["caption"],
        captions_file=captions_file, seed=o["seed"], use_tae=o["use_tae"], compile_dit=o["compile_dit"],
        generator=o["generator"], spacetimepilot_steps=o["spacetimepilot_steps"],
        force=o["force"], dry_run=o["dry_run"], skip=skip, stages=stages,
        gpus={"1": _gpus(o["step1_gpus"]), "2": _gpus(o["step2_gpus"]), "3": _gpus(o["step3_gpus"])},
        step3_nproc=o["step3_nproc"], master_port=o["master_port"], verbose=o["verbose"],
    )


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def _report(summaries: list[dict], dry_run: bool) -> int:
    from pipeline.batch import exit_status, format_table, missing_weights_text

    if dry_run:
        typer.echo("Plan (nothing computed):")
        for s in summaries:
            typer.echo(f"  {s['video']}:" + (f" ERROR {s['error']}" if s["error"] else ""))
            for stage, (action, reason) in s["stages"].items():
                label = action if action in ("would run", "reuse") else "blocked"
                typer.echo(f"    {stage:<9} {label:<9} {reason}")
    typer.echo(format_table(summaries))
    text = missing_weights_text(summaries, dry_run)
    if text:
        typer.echo(text)
    return exit_status(summaries, dry_run)


def run_batch_command(o: dict, stages: tuple[str, ...]) -> None:
    """Shared body of the batch commands: configure, run, print the table, exit with its status."""
    from pipeline.batch import exit_status, run_batch
    from pipeline.dist import current_rank
    from pipeline.logging_utils import setup_logging

    setup_logging(o["verbose"])
    try:
        check_flags(o, batch=True)
        cfg = build_config(o, stages)
        summaries = run_batch(cfg)
    except (ValueError, OSError) as exc:  # run-level problems: input folder, trajectory, options, output folder
        _fail(str(exc))
    # Every rank holds every summary; only rank 0 prints them, all exit with the same status.
    raise typer.Exit(_report(summaries, cfg.dry_run) if current_rank().rank == 0 else exit_status(summaries, cfg.dry_run))


def _render_files(o: dict) -> None:
    """``render --video V --geometry G --traj T --out DIR``: one render, cached by its manifest in DIR."""
    from pipeline.dist import current_rank, device_for
    from pipeline.logging_utils import setup_logging
    from pipeline.stages import render as render_stage
    from pipeline.stages.cached import Policy, run_cached
    from pipeline.stages.source import open_source
    from pipeline.video_io import file_sha256
    from trajectories import find_trajectory, read_trajectory

    setup_logging(o["verbose"])
    if None in (o["video"], o["geometry"], o["out"], o["traj_txt_path"]):
        _fail("render on explicit files needs --video, --geometry, --traj and --out")
    try:
        check_flags(o, batch=False)
        source = open_source(o["video"])
        spec = read_trajectory(find_trajectory(o["traj_txt_path"]))
        options = PathOptions(**_path_options(o))
        render_stage.check_time_options(options, source.info, source.path)
        settings = _render_settings(o)
        geometry_file = Path(o["geometry"])
        if not geometry_file.is_file():
            raise FileNotFoundError(f"geometry cache {geometry_file} not found; check --geometry")
        device = device_for(current_rank(), _gpus(o["step2_gpus"]))
        frames = render_stage.log_frame_count(spec, source, options)
        key = render_stage.render_key(source, file_sha256(geometry_file), spec, options, settings)
        outcome = run_cached(
            "render", o["out"], key, render_stage.OUTPUTS,
            lambda out: render_stage.produce_render(out, source, geometry_file, spec, options, settings, device),
            Policy(force=o["force"], dry_run=o["dry_run"]),
        )
    except (ValueError, OSError, RuntimeError) as exc:
        _fail(str(exc))
    verb = {"run": "would render" if o["dry_run"] else "rendered", "reuse": "reused"}[outcome.action]
    typer.echo(f"{verb} {o['out']}: {frames.describe()} ({outcome.reason})")


def _scout(o: dict) -> None:
    """``scout``: the render stage at reduced size, plot and viewer, for every video; no model."""
    from pipeline.layout import default_output_folder, default_work_dir
    from pipeline.logging_utils import setup_logging
    from pipeline.scout import run_scout, scout_folder_for

    setup_logging(o["verbose"])
    if o["output_folder"] is None and o["input_dir"] is not None and o["traj_txt_path"] is not None:
        full_run = default_output_folder(Path(o["input_dir"]), Path(o["traj_txt_path"]))
        o = {**o, "output_folder": scout_folder_for(full_run), "work_dir": o["work_dir"] or default_work_dir(full_run)}
    try:
        cfg = build_config(o, ("render",))
        results = run_scout(cfg, cfg.output_folder, o["scale"])
    except (ValueError, OSError) as exc:
        _fail(str(exc))
    for r in results:
        typer.echo(f"{r.video:<24} {r.action:<12} {r.folder / 'viewer.html' if r.folder else 'ERROR ' + r.detail}")
    if not cfg.dry_run:
        typer.echo(f"index: {cfg.output_folder / 'index.html'}")
    raise typer.Exit(1 if any(r.action == "failed" for r in results) else 0)


def _command(stages: tuple[str, ...], extra: list[inspect.Parameter] = (), body=None):
    params = [*BATCH_OPTIONS, *extra]

    def command(**o: Any) -> None:
        try:
            if body is not None:
                body(o)
            elif o.get("video") is not None:
                _render_files(o)
            else:
                run_batch_command(o, stages)
        except KeyboardInterrupt:  # Ctrl-C: the open outputs were discarded, the finished stages are kept
            typer.echo("error: interrupted; nothing half-written was kept. Run the same command again to "
                       "continue: finished stages are reused.", err=True)
            raise typer.Exit(EXIT_INTERRUPTED) from None

    command.__signature__ = inspect.Signature(params)
    command.__annotations__ = {p.name: p.annotation for p in params}
    return command


_STAGE_HELP = {
    "caption": "Step 1: one caption per video (given with --caption/--captions_file, else Florence-2).",
    "geometry": "Step 2a: depth, intrinsics and poses per frame (a provided cache, else Depth-Anything-3).",
    "render": "Step 2b: render the geometry along the trajectory (render.mp4, mask.mp4, cameras.json). "
              "Also on explicit files: render --video V --geometry G.npz --traj T.txt --out DIR.",
    "generate": "Step 3: the generated video from source, render and caption (causal DiT; or SpaceTimePilot "
                "from source, cameras and caption with --generator spacetimepilot).",
}

app.command("run", help="Every stage over --input_dir; cached stages are reused (see docs/cli.md, 'Caching rules').")(_command(STAGES))
for _stage in STAGES:
    app.command(_stage, help=_STAGE_HELP[_stage] + " Reuses, never recomputes, the stages it depends on.")(
        _command((_stage,), RENDER_FILE_OPTIONS if _stage == "render" else []))

SCOUT_OPTIONS = [_opt("scale", float, 0.25, "Size of the scout render relative to --width/--height (0.25 = a quarter).")]
app.command("scout", help="Preview a trajectory in seconds, no model: the render stage at --scale of the working size, "
            "plus source.mp4, trajectory.png and viewer.html per video and an index.html. Writes to "
            "<output_folder>-scout (or --output_folder when given); uses provided or already computed geometry.")(
    _command(("render",), SCOUT_OPTIONS, _scout))


@app.command("worker", hidden=True)
def worker(config: Path, stage: str, results: Path) -> None:
    """One torchrun rank of one stage (launched by the batch runner for --stepN_gpus lists)."""
    from pipeline.batch import run_worker
    from pipeline.logging_utils import setup_logging

    cfg = RunConfig.from_json(config.read_text())
    setup_logging(cfg.verbose)
    run_worker(cfg, stage, results)


app.add_typer(cameras_app, name="cameras")


@app.command("presets")
def presets() -> None:
    """List the bundled trajectory presets (usable as --traj_txt_path NAME)."""
    from trajectories import list_presets

    for name, path in list_presets().items():
        typer.echo(f"{name:<24} {path}")


evaluate_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, pretty_exceptions_enable=False,
                           help="Scores: camera x time grid on the synthetic scene; camera accuracy of a video.")
app.add_typer(evaluate_app, name="evaluate")


def _names(text: str | None, default: tuple[str, ...]) -> tuple[str, ...]:
    return default if text is None else tuple(n.strip() for n in text.split(",") if n.strip())


@evaluate_app.command("grid")
def evaluate_grid(
    out: Annotated[Path, typer.Option(help="Folder for grid.csv, grid.md, heatmap.png and cells/.")] = Path("output/evaluate"),
    video: Annotated[Optional[Path], typer.Option(help="Synthetic clip (scripts/make_synthetic.py). [default: the bundled example]")] = None,
    geometry: Annotated[Optional[Path], typer.Option(help="Its geometry cache. [default: the bundled example's]")] = None,
    cameras: Annotated[Optional[str], typer.Option(help="Comma-separated camera paths. [default: all]")] = None,
    times: Annotated[Optional[str], typer.Option(help="Comma-separated time patterns. [default: all]")] = None,
    frames: Annotated[int, typer.Option(help="Output frames per cell (before a freeze's copies).")] = 17,
    width: Annotated[int, typer.Option(help="Render width in pixels (even).")] = 208,
    height: Annotated[int, typer.Option(help="Render height in pixels (even).")] = 120,
    generate: Annotated[bool, typer.Option("--generate", help="Also generate every cell (needs the generation "
                                           "weights and sizes that are multiples of 16) and score the result.")] = False,
    checkpoints_dir: Annotated[Path, typer.Option("--checkpoints_dir", help="Root of the weights layout.")] = DEFAULT_CHECKPOINTS,
    caption: Annotated[Optional[str], typer.Option(help="Caption for --generate. [default: the video's entry in "
                                                   "captions.json beside it]")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the generator's noise.")] = 0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logs.")] = False,
) -> None:
    """Camera x time grid: render (and with --generate, generate) every cell and score it against the synthetic
    scene's analytic ground truth."""
    from pipeline.evaluate import CAMERAS, EXAMPLE_GEOMETRY, EXAMPLE_VIDEO, TIMES, GridSettings, generator_for, run_grid
    from pipeline.stages import render as render_stage
    from pipeline.logging_utils import setup_logging

    setup_logging(verbose)
    video = video or EXAMPLE_VIDEO
    try:
        settings = GridSettings(_names(cameras, tuple(CAMERAS)), _names(times, tuple(TIMES)), frames, width, height)
        generator = None
        if generate:
            if width % render_stage.SIZE_MULTIPLE or height % render_stage.SIZE_MULTIPLE:
                raise ValueError(f"--generate needs --width and --height that are multiples of {render_stage.SIZE_MULTIPLE} "
                                 f"(got {width}x{height}); e.g. --width 832 --height 480")
            if caption is None:
                from models.florence import load_captions_file, lookup_caption

                captions = video.parent / "captions.json"
                caption = lookup_caption(load_captions_file(captions), video) if captions.is_file() else None
                if caption is None:
                    raise ValueError(f"--generate needs a caption for {video}: pass --caption or add it to {captions}")
            generator = generator_for(checkpoints_dir, caption, seed)
        scores = run_grid(out, settings, video, geometry or EXAMPLE_GEOMETRY, generator)
    except (ValueError, OSError) as exc:
        _fail(str(exc))
    typer.echo((out / "grid.md").read_text())
    typer.echo(f"{len(scores)} cells; table: {out / 'grid.csv'}, {out / 'grid.md'}; heat map: {out / 'heatmap.png'}")


@evaluate_app.command("cameras")
def evaluate_cameras_command(
    video: Annotated[Path, typer.Option(help="The video to check (e.g. generated.mp4 or render.mp4).")],
    cameras: Annotated[Path, typer.Option(help="The cameras.json it was asked to follow.")],
    out: Annotated[Optional[Path], typer.Option(help="Folder for cameras.csv and summary.md. [default: <video folder>/camera_accuracy]")] = None,
    checkpoints_dir: Annotated[Path, typer.Option("--checkpoints_dir", help="Root of the weights layout.")] = DEFAULT_CHECKPOINTS,
    da3_model_path: Annotated[Optional[Path], typer.Option("--da3_model_path", help="Depth-Anything-3 model folder. [default: <checkpoints_dir>/DA3]")] = None,
    da3_process_res: Annotated[int, typer.Option("--da3_process_res", help="Long side DA3 sees.")] = _GEOMETRY_DEFAULTS.process_res,
    da3_chunk_size: Annotated[int, typer.Option("--da3_chunk_size", help="Frames per DA3 call.")] = _GEOMETRY_DEFAULTS.chunk_size,
    da3_overlap: Annotated[int, typer.Option("--da3_overlap", help="Frames shared by consecutive chunks.")] = _GEOMETRY_DEFAULTS.overlap,
    gpus: Annotated[str, typer.Option(help="GPU id(s) for DA3; CPU where CUDA is unavailable.")] = "0",
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logs.")] = False,
) -> None:
    """Camera accuracy: re-estimate the video's cameras with DA3, align them to cameras.json by a similarity
    transform, report geodesic rotation error (degrees) and scale-normalised translation error per frame."""
    from pipeline.dist import current_rank, device_for
    from pipeline.evaluate import da3_estimator, evaluate_cameras, write_camera_report
    from pipeline.logging_utils import setup_logging

    setup_logging(verbose)
    model = da3_model_path or checkpoints_dir / "DA3"
    out = out or video.parent / "camera_accuracy"
    try:
        for path, what in ((video, "--video"), (cameras, "--cameras")):
            if not path.is_file():
                raise FileNotFoundError(f"{path} not found; check {what}")
        if not model.exists():
            raise FileNotFoundError(f"Depth-Anything-3 model {model} not found; fetch it with: bash scripts/download.sh da3 "
                                    "(or pass --da3_model_path)")
        estimator = da3_estimator(model, device_for(current_rank(), _gpus(gpus)), da3_process_res, da3_chunk_size,
                                  da3_overlap)
        errors = evaluate_cameras(video, cameras, estimator)
        write_camera_report(out, errors, video, cameras)
    except (ValueError, OSError, RuntimeError) as exc:
        _fail(str(exc))
    typer.echo((out / "summary.md").read_text())


def main() -> None:
    logging.captureWarnings(True)
    app()
