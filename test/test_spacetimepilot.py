"""SpaceTimePilot DiT + sampler vs the upstream reference run ``spacetimepilot_tiny.safetensors`` (float64),
and strict loading against the released checkpoint's manifest.

The model runs in fp32. The DiT output must agree to 1e-5 absolute. The fixture's random N(0, 0.3²)
weights drive the residual stream to |x| ~ 380 (fp32 spacing there: 3e-5) and CFG 5 multiplies
prediction errors by up to 9, so block outputs and sampler latents are compared at 1e-5 relative to
the reference's largest magnitude (measured: 8e-7 and 2.2e-6).
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

from models.dit import DiTConfig
from models.manifest import CheckpointError, load_manifest
from models.spacetimepilot import SpaceTimePilot, TemporalDownsampler, latent_frames
from models.spacetimepilot_sampler import Conditions, flow_schedule, sample

TOL = 1e-5


@pytest.fixture(scope="module")
def ref(shared_dir):
    with safe_open(str(shared_dir / "fixtures" / "spacetimepilot_tiny.safetensors"), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


@pytest.fixture(scope="module")
def checkpoint(ref, tmp_path_factory):
    """The fixture's weights saved as a torch ``.ckpt`` state dict (the released file's format)."""
    path = tmp_path_factory.mktemp("stp") / "tiny.ckpt"
    torch.save({k[3:]: v for k, v in ref[0].items() if k.startswith("sd.")}, path)
    return path


@pytest.fixture(scope="module")
def config(ref):
    return DiTConfig.from_dict(json.loads(ref[1]["model_config"]), source="fixture")


def _load(checkpoint, config, dtype):
    return SpaceTimePilot.from_checkpoint(checkpoint, config, dtype=dtype)


def _lat(x: torch.Tensor) -> torch.Tensor:
    """Spec layout [B, C, F, H, W] -> project layout [B, F, C, H, W]."""
    return x.transpose(1, 2)


def _close(got, want, what, tol=TOL, relative=False):
    err = (got.double() - want.double()).abs().max().item()
    if relative:
        err /= max(1.0, want.abs().max().item())
    assert got.shape == want.shape and err < tol, f"{what}: max {'relative' if relative else 'abs'} error {err:.2e}"


def _inputs(t, dtype):
    return dict(
        target_times=t["A.in.tgt_time"].to(dtype), source_times=t["A.in.src_time"].to(dtype),
        target_cameras=t["A.in.tgt_cam"].to(dtype), source_cameras=t["A.in.src_cam"].to(dtype),
    )


def test_run_matches_the_loaded_config(ref, config):
    run = json.loads(ref[1]["run"])
    assert config.out_dim == json.loads(ref[1]["model_config"])["in_dim"]
    assert latent_frames(run["T"]) == run["F_lat"] == ref[0]["A.in.tgt_cam"].shape[1]


def test_forward_matches_reference(ref, checkpoint, config):
    t, _ = ref
    dtype, tol = torch.float32, TOL
    dit = _load(checkpoint, config, dtype)
    text = dit.encode_text(t["A.in.context"].to(dtype))
    target, source = _lat(t["A.in.tgt_noisy_latents"]).to(dtype), _lat(t["A.in.src_latents"]).to(dtype)
    assert torch.equal(torch.cat([target, source], 1), _lat(t["A.in.x_cat"]).to(dtype))
    pred = dit(target, source, t["A.in.timestep"], text, **_inputs(t, dtype))
    _close(pred, _lat(t["A.out.noise_pred"]), "noise_pred", tol)
    e, e0 = dit._time(t["A.in.timestep"], 1)
    _close(e, t["A.t_emb"], "t_emb", tol)
    _close(e0, t["A.t_mod"], "t_mod", tol)


def test_block0_intermediates(ref, checkpoint, config):
    """Frame-time embedding, downsampler and camera term of block 0 against the recorded tensors."""
    t, _ = ref
    dit = _load(checkpoint, config, torch.float32)
    blk = dit.blocks[0]
    from models.dit import sinusoidal_embedding

    for side, key in (("tgt", "A.in.tgt_time"), ("src", "A.in.src_time")):
        sin = sinusoidal_embedding(t[key].reshape(-1), config.freq_dim).view(1, -1, config.freq_dim).float()
        e = blk.frame_time_embedding(sin)
        _close(e, t[f"A.blk0.frame_time_{side}"], f"frame_time_{side}")
        _close(blk.temporal_downsampler(e), t[f"A.blk0.down_{side}"], f"down_{side}")
        _close(blk.cam_encoder(t[f"A.in.{side}_cam"].float()), t[f"A.blk0.cam_{side}"], f"cam_{side}")
    _, e0 = dit._time(t["A.in.timestep"], 1)
    text = dit.encode_text(t["A.in.context"].float())
    sins = torch.stack([sinusoidal_embedding(t[k].reshape(-1), config.freq_dim).view(1, -1, config.freq_dim)
                        for k in ("A.in.tgt_time", "A.in.src_time")]).float()
    cams = torch.cat([t["A.in.tgt_cam"], t["A.in.src_cam"]], 1).float()
    out = blk(t["A.blk0.x_in"].float(), e0, dit._rope_table((6, 2, 3), 0), text, 0, sins, cams)
    _close(out, t["A.blk0.x_out"], "block 0 output", relative=True)


def test_downsampler_uses_only_the_spec_entries():
    """Entry 4i (u3 of chunk i) never reaches the output; the first entry passes unchanged."""
    torch.manual_seed(0)
    down = TemporalDownsampler(64).double()
    e = torch.randn(2, 9, 64, dtype=torch.float64)
    moved = e.clone()
    moved[:, 4] += 1.0  # u3 of chunk 1
    moved[:, 8] += 1.0  # u3 of chunk 2
    assert torch.equal(down(e), down(moved))
    assert torch.equal(down(e)[:, 0], e[:, 0])
    assert not torch.equal(down(e)[:, 1], down(e + (torch.arange(9) == 3).double()[None, :, None])[:, 1])


def test_sampler_matches_reference(ref, checkpoint, config):
    t, meta = ref
    run = json.loads(meta["run"])
    sched = flow_schedule(run["num_steps"], run["scheduler"]["shift"])
    assert torch.equal(torch.tensor(sched.sigmas, dtype=torch.float32), t["B.sched.sigmas"].float())
    assert torch.equal(torch.tensor(sched.timesteps, dtype=torch.float32), t["B.sched.timesteps"].float())
    dit = _load(checkpoint, config, torch.float32)
    pos, neg = dit.encode_text(t["B.in.context_pos"].float()), dit.encode_text(t["B.in.context_neg"].float())
    cond = Conditions(source=_lat(t["A.in.src_latents"]).float(), **_inputs(t, torch.float32))
    steps = []
    out = sample(dit, pos, neg, _lat(t["B.in.noise"]).float(), cond, sched, run["cfg_scale"],
                 on_step=lambda k, x: steps.append(x))
    for k, x in enumerate(steps):
        _close(x, _lat(t[f"B.step{k}.latents"]), f"latents after step {k}", relative=True)
    _close(out, _lat(t["B.out.latents"]), "final latents", relative=True)


def test_full_size_module_equals_the_released_manifest():
    """Built on the meta device (no memory): every key and shape of SpacetimePilot_1.3B_v1.ckpt."""
    shapes = SpaceTimePilot.expected_shapes(DiTConfig())
    manifest = load_manifest("spacetimepilot")
    assert shapes == manifest
    assert len(manifest) == 1305 and sum(torch.Size(s).numel() for s in manifest.values()) == 1_998_038_080


def test_manifest_equals_the_reference_listing(shared_dir):
    listing = (shared_dir / "reference" / "keys" / "spacetimepilot_1.3b_dit.tsv").read_text()
    reference = {k: tuple(json.loads(s)) for k, s in (line.split("\t") for line in listing.splitlines() if line.strip())}
    assert load_manifest("spacetimepilot") == reference


def test_strict_loading_names_the_first_bad_key(ref, config, tmp_path):
    sd = {k[3:]: v for k, v in ref[0].items() if k.startswith("sd.")}
    cases = {
        "missing": ({k: v for k, v in sd.items() if k != "blocks.1.projector.weight"}, "blocks.1.projector.weight"),
        "extra": ({**sd, "blocks.0.cam_encoder.extra": torch.zeros(1)}, "blocks.0.cam_encoder.extra"),
        "shape": ({**sd, "blocks.0.cam_encoder.weight": torch.zeros(64, 13)}, "blocks.0.cam_encoder.weight"),
        "prefixed": ({f"model.{k}": v for k, v in sd.items()}, "patch_embedding.weight"),
    }
    for name, (state, key) in cases.items():
        path = tmp_path / f"{name}.ckpt"
        torch.save(state, path)
        with pytest.raises(CheckpointError, match=key.replace(".", r"\.")) as info:
            SpaceTimePilot.from_checkpoint(path, config)
        assert str(path) in str(info.value)
    with pytest.raises(CheckpointError, match="download.sh spacetimepilot"):
        SpaceTimePilot.from_checkpoint(tmp_path / "absent.ckpt", config)


def test_benchmark_smoke_run():
    """scripts/bench_spacetimepilot.py --smoke (what scripts/gpu_check.sh runs at full size) reports its figures."""
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "scripts/bench_spacetimepilot.py", "--smoke", "--no-vae", "--warmup", "0"],
                          cwd=repo, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "504 tokens per DiT call" in done.stdout and "SpaceTimePilot sampler (2 steps)" in done.stdout
    assert "SpaceTimePilot sampler step" in done.stdout and "peak memory" in done.stdout
