"""SpaceTimePilot DiT: the Wan2.1-T2V-1.3B body conditioned on target/source cameras and frame times.

Differences from Wan2.1 (contract: ``SPACETIMEPILOT_SPEC.md``, sections 2-5):
- the input is ``[noisy target latents (F frames) | clean source latents (F frames)]`` along time,
  16 channels, one shared timestep; RoPE frame positions run 0..2F-1 over both halves;
- every block adds, to its self-attention input only, a per-frame time term (sinusoid of each video
  frame's time -> ``frame_time_embedding`` -> ``temporal_downsampler``: T = 4(F-1)+1 entries -> F) and a
  camera term (``cam_encoder`` of a 12-vector per latent frame), broadcast over that frame's tokens;
- the self-attention output passes through ``projector`` before the gate.

Layout: latent videos are ``[B, F, C, h, w]`` (frames before channels, as in ``models.dit``); frame
times are ``[B, T]`` floats in video frames; cameras are ``[B, F, 12]`` (see
``models.spacetimepilot_conditions``). Numerics follow ``models.dit``: residual stream, modulation and
norms in float32, linear layers and attention in the parameter dtype. The text, timestep, RoPE and
unpatchify code is ``CausalDiT``'s (same Wan2.1 body); the checkpoint is the released
``SpacetimePilot_1.3B_v1.ckpt`` state dict, keys without prefix.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from models.attention import attention
from models.dit import (
    Block,
    CausalDiT,
    DiTConfig,
    Head,
    TextCache,
    _layer_norm,
    add_wan_embeddings,
    sinusoidal_embedding,
)
from models.manifest import CheckpointError, check_state_dict, load_manifest, model_shapes, read_state_dict
from models.rope import RopeTable, apply_rope

CAMERA_DIM = 12  # a [3, 4] pose, row-major
TEMPORAL_STRIDE = 4  # video frames per latent frame (after the first)
DOWNSAMPLER_GROUPS = 32
DOWNSAMPLER_EPS = 1e-5
WEIGHTS_FIX = "bash scripts/download.sh spacetimepilot"


def latent_frames(time_entries: int) -> int:
    """F latent frames for T = 4(F-1)+1 video-frame time entries (raises for other T)."""
    if time_entries < 1 or (time_entries - 1) % TEMPORAL_STRIDE:
        raise ValueError(f"{time_entries} frame times: SpaceTimePilot needs 4k+1 (e.g. 81)")
    return 1 + (time_entries - 1) // TEMPORAL_STRIDE


class TemporalDownsampler(nn.Module):
    """[B, T, D] per-frame vectors -> [B, F, D]: entry 0 kept; each later chunk of 4 entries goes through
    two causal (left zero-padded) stride-2 Conv1d + GroupNorm(32) + SiLU stages, independently."""

    def __init__(self, dim: int):
        super().__init__()
        self.temporal_conv1 = nn.Conv1d(dim, dim, 3, stride=2)
        self.norm1 = nn.GroupNorm(DOWNSAMPLER_GROUPS, dim, eps=DOWNSAMPLER_EPS)
        self.temporal_conv2 = nn.Conv1d(dim, dim, 3, stride=2)
        self.norm2 = nn.GroupNorm(DOWNSAMPLER_GROUPS, dim, eps=DOWNSAMPLER_EPS)

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        b, t, d = e.shape
        f = latent_frames(t)
        if f == 1:
            return e[:, :1]
        chunks = e[:, 1:].reshape(b * (f - 1), TEMPORAL_STRIDE, d).transpose(1, 2)  # [B(F-1), D, 4]
        y = F.silu(self.norm1(self.temporal_conv1(F.pad(chunks, (2, 0)))))
        z = F.silu(self.norm2(self.temporal_conv2(F.pad(y, (2, 0)))))  # [B(F-1), D, 1]
        return torch.cat([e[:, :1], z.reshape(b, f - 1, d)], dim=1)


class SpaceTimeBlock(Block):
    """A Wan2.1 block plus the frame-time, camera and projector additions."""

    def __init__(self, cfg: DiTConfig):
        super().__init__(cfg)
        self.frame_time_embedding = nn.Sequential(nn.Linear(cfg.freq_dim, cfg.dim), nn.SiLU(), nn.Linear(cfg.dim, cfg.dim))
        self.temporal_downsampler = TemporalDownsampler(cfg.dim)
        self.cam_encoder = nn.Linear(CAMERA_DIM, cfg.dim)
        self.projector = nn.Linear(cfg.dim, cfg.dim)

    def frame_terms(self, times: torch.Tensor, cameras: torch.Tensor) -> torch.Tensor:
        """[B, 2F, D] float32 additions per latent frame: time term (target then source) plus camera term.

        ``times``: frame-time sinusoids [2, B, T, freq_dim] (target, source); ``cameras`` [B, 2F, 12]."""
        e = self.frame_time_embedding(times)  # [2, B, T, D]
        time_term = torch.cat([self.temporal_downsampler(e[0]), self.temporal_downsampler(e[1])], dim=1)
        return time_term.float() + self.cam_encoder(cameras).float()

    def forward(self, x: torch.Tensor, e0: torch.Tensor, rope: RopeTable, text: TextCache, layer: int,
                frame_sinusoids: torch.Tensor, cameras: torch.Tensor) -> torch.Tensor:
        m = self._mods(e0)
        b, n, d = x.shape
        frames = cameras.shape[1]
        h = _layer_norm(x, self.eps) * (1 + m[1]) + m[0]
        h = (h.view(b, frames, n // frames, d) + self.frame_terms(frame_sinusoids, cameras)[:, :, None]).view(b, n, d)
        h = h.to(self.modulation.dtype)
        k, v = self.self_attn.key_value(h)
        q = apply_rope(self.self_attn.query(h), rope)
        attended = self.self_attn.out(attention(q, apply_rope(k, rope), v))
        x = x + self.projector(attended).float() * m[2]
        hc = F.layer_norm(x, x.shape[-1:], self.norm3.weight.float(), self.norm3.bias.float(), self.eps)
        hc = hc.to(self.modulation.dtype)
        x = x + self.cross_attn.out(attention(self.cross_attn.query(hc), text.k[layer], text.v[layer])).float()
        hf = (_layer_norm(x, self.eps) * (1 + m[4]) + m[3]).to(self.modulation.dtype)
        return x + self.ffn(hf).float() * m[5]


class SpaceTimePilot(nn.Module):
    """The SpaceTimePilot DiT (``DiTConfig`` sizes; input and output channels are both ``out_dim``)."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.config = cfg
        add_wan_embeddings(self, cfg, cfg.out_dim)
        self.blocks = nn.ModuleList(SpaceTimeBlock(cfg) for _ in range(cfg.num_layers))
        self.head = Head(cfg)
        self._rope: dict[tuple, RopeTable] = {}

    # Same Wan2.1 body as the causal DiT: its text, timestep, RoPE and unpatchify code applies unchanged.
    dtype = CausalDiT.dtype
    device = CausalDiT.device
    compile_blocks = CausalDiT.compile_blocks
    encode_text = CausalDiT.encode_text
    tokens_per_frame = CausalDiT.tokens_per_frame
    _rope_table = CausalDiT._rope_table
    _unpatchify = CausalDiT._unpatchify

    def _time(self, timestep: float | torch.Tensor, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Timestep embedding e [B, D] and the six modulation rows e0 [B, 6, D] (float32). The timestep
        enters the sinusoid in float64 as given (the sampler's values are float32 numbers)."""
        t = torch.as_tensor(timestep, dtype=torch.float64, device=self.device).reshape(-1).expand(batch)
        e = self.time_embedding(sinusoidal_embedding(t, self.config.freq_dim).to(self.dtype))
        return e.float(), self.time_projection(e).unflatten(1, (6, self.config.dim)).float()

    # ----------------------------------------------------------------- loading
    @staticmethod
    def expected_shapes(cfg: DiTConfig) -> dict[str, tuple[int, ...]]:
        """Key -> shape of the state dict: the released manifest at full size, else the module's own."""
        with torch.device("meta"):
            shapes = model_shapes(SpaceTimePilot(cfg))
        if cfg == DiTConfig():
            manifest = load_manifest("spacetimepilot")
            check_state_dict({k: torch.empty(s, device="meta") for k, s in shapes.items()}, manifest, source="SpaceTimePilot module")
        return shapes

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        config: DiTConfig | str | Path,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> "SpaceTimePilot":
        """Load ``SpacetimePilot_1.3B_v1.ckpt`` (torch state dict, or the same keys in ``.safetensors``) strictly.

        ``config``: a ``DiTConfig`` or the Wan2.1 ``config.json`` path. The module is built on the meta
        device; ``CheckpointError`` names the first missing/unexpected key or wrong shape.
        """
        if not isinstance(config, DiTConfig):
            config = DiTConfig.from_json(config)
        state = read_state_dict(path, "SpaceTimePilot checkpoint", WEIGHTS_FIX)
        check_state_dict(state, cls.expected_shapes(config), source=path)
        with torch.device("meta"):
            model = cls(config)
        model.load_state_dict({k: v.to(device=device, dtype=dtype) for k, v in state.items()}, assign=True)
        return model.eval().requires_grad_(False)

    # --------------------------------------------------------------- inference
    def forward(
        self,
        target: torch.Tensor,
        source: torch.Tensor,
        timestep: float | torch.Tensor,
        text: TextCache,
        target_times: torch.Tensor,
        source_times: torch.Tensor,
        target_cameras: torch.Tensor,
        source_cameras: torch.Tensor,
    ) -> torch.Tensor:
        """Flow prediction [B, F, C, h, w] for the target half.

        ``target`` (noisy) and ``source`` (clean) latents [B, F, C, h, w]; ``target_times`` and
        ``source_times`` [B, T] video-frame times with T = 4(F-1)+1; cameras [B, F, 12].
        """
        cfg = self.config
        b, f, c, hh, ww = target.shape
        if tuple(source.shape) != tuple(target.shape) or c != cfg.out_dim:
            raise ValueError(f"target {list(target.shape)} and source {list(source.shape)} latents must both be [B, F, {cfg.out_dim}, h, w]")
        for name, times in (("target_times", target_times), ("source_times", source_times)):
            if times.ndim != 2 or times.shape[0] != b or latent_frames(times.shape[1]) != f:
                raise ValueError(f"{name} {list(times.shape)} must be [{b}, {TEMPORAL_STRIDE * (f - 1) + 1}] for {f} latent frames")
        for name, cams in (("target_cameras", target_cameras), ("source_cameras", source_cameras)):
            if tuple(cams.shape) != (b, f, CAMERA_DIM):
                raise ValueError(f"{name} {list(cams.shape)} must be [{b}, {f}, {CAMERA_DIM}]")
        x = torch.cat([target, source], dim=1).to(device=self.device, dtype=self.dtype)
        y = self.patch_embedding(x.transpose(1, 2))
        grid = tuple(y.shape[2:])
        tokens = y.flatten(2).transpose(1, 2).float()
        e, e0 = self._time(timestep, b)
        times = torch.stack([target_times, source_times]).to(self.device)
        sinusoids = sinusoidal_embedding(times.reshape(-1), cfg.freq_dim).view(2, b, -1, cfg.freq_dim).to(self.dtype)
        cameras = torch.cat([target_cameras, source_cameras], dim=1).to(device=self.device, dtype=self.dtype)
        rope = self._rope_table(grid, 0)
        for layer, block in enumerate(self.blocks):
            tokens = block(tokens, e0, rope, text, layer, sinusoids, cameras)
        out = self._unpatchify(self.head(tokens, e).float(), grid)
        return out[:, :f]
