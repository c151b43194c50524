"""Causal block DiT (Wan2.1-T2V-1.3B body with a 36-channel conditioned input).

Layout conventions:
- latent video tensors are ``[B, F, C, h, w]`` (frames before channels);
- model input channels are ``[noisy latent (out_dim) | mask (mask_dim) | render latent (out_dim)]``;
  clean context frames are ``[latent | 0 | 0]`` (see ``pad_context``);
- tokens are patches flattened in (frame, row, column) order;
- the residual stream, modulation and norms run in float32, linear layers and attention in the
  parameter dtype (float32 or bfloat16).

Inference is split into ``encode_text`` (cross-attention K/V, once per video), ``prefill`` (the
clean-context pass that only fills the self-attention KV cache) and ``forward`` (a pass whose queries
attend ``[cached context ; own tokens]``, or only their own tokens without a cache). State-dict keys
are Wan's (``blocks.0.self_attn.q.weight`` ...); the full-size module equals the published manifest.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Mapping

import torch
import torch.nn.functional as F
from safetensors import safe_open
from torch import nn

from models.attention import attention
from models.manifest import CheckpointError, check_state_dict, model_shapes, strip_prefix
from models.rope import RopeTable, apply_rope, build_rope

MASK_CHANNELS = 4


@dataclass(frozen=True)
class DiTConfig:
    """Architecture sizes; defaults are the published 1.3B model."""

    dim: int = 1536
    ffn_dim: int = 8960
    num_heads: int = 12
    num_layers: int = 30
    freq_dim: int = 256
    text_len: int = 512
    text_dim: int = 4096
    out_dim: int = 16
    eps: float = 1e-6
    patch_size: tuple[int, int, int] = (1, 2, 2)

    @property
    def in_dim(self) -> int:
        """Input channels: noisy latent, mask and render latent."""
        return 2 * self.out_dim + MASK_CHANNELS

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    @classmethod
    def from_dict(cls, d: Mapping, source: str | Path = "config") -> "DiTConfig":
        """From a Wan ``config.json`` or a checkpoint's ``model_config`` metadata.

        A Wan T2V base config (``in_dim`` = ``out_dim``) is accepted: the conditioned input channels
        are implied by the product. ``text_dim`` defaults to umT5-XXL's 4096.
        """
        try:
            cfg = cls(
                dim=int(d["dim"]),
                ffn_dim=int(d["ffn_dim"]),
                num_heads=int(d["num_heads"]),
                num_layers=int(d["num_layers"]),
                freq_dim=int(d["freq_dim"]),
                text_len=int(d.get("text_len", cls.text_len)),
                text_dim=int(d.get("text_dim", cls.text_dim)),
                out_dim=int(d["out_dim"]),
                eps=float(d.get("eps", cls.eps)),
                patch_size=tuple(int(p) for p in d.get("patch_size", cls.patch_size)),
            )
        except KeyError as exc:
            raise CheckpointError(f"{source}: DiT config lacks key {exc.args[0]!r} (expected a Wan config.json)") from None
        if d.get("model_type", "t2v") != "t2v":
            raise CheckpointError(f"{source}: model_type {d['model_type']!r} is not supported; use the Wan2.1-T2V config.json")
        if "in_dim" in d and int(d["in_dim"]) not in (cfg.out_dim, cfg.in_dim):
            raise CheckpointError(f"{source}: in_dim {d['in_dim']} is neither {cfg.out_dim} (T2V base) nor {cfg.in_dim}")
        if cfg.dim % cfg.num_heads or cfg.head_dim % 2:
            raise CheckpointError(f"{source}: dim {cfg.dim} is not divisible into {cfg.num_heads} even-sized heads")
        return cfg

    @classmethod
    def from_json(cls, path: str | Path) -> "DiTConfig":
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"{path}: cannot read the DiT config.json ({exc})") from None
        return cls.from_dict(data, source=path)

    def to_dict(self) -> dict:
        """JSON-ready form accepted by ``from_dict`` (includes ``in_dim``)."""
        return {**asdict(self), "patch_size": list(self.patch_size), "in_dim": self.in_dim, "model_type": "t2v"}


@dataclass
class TextCache:
    """Per-layer cross-attention K/V of the prompt, [B, text_len, heads, head_dim] each."""

    k: list[torch.Tensor]
    v: list[torch.Tensor]


@dataclass
class KVCache:
    """Preallocated self-attention buffers per layer, [B, capacity, heads, head_dim].

    Tokens ``[0, length)`` hold the context K (after RoPE) and V written by ``prefill``; a forward pass
    writes its own K/V right after them (scratch space, overwritten by the next pass) so queries attend
    one contiguous slice without concatenation.
    """

    k: list[torch.Tensor]
    v: list[torch.Tensor]
    length: int = 0

    @property
    def capacity(self) -> int:
        return self.k[0].shape[1]


@dataclass(frozen=True)
class LayerInputs:
    """Everything one block reads besides the residual stream, as tensors bound to that layer.

    ``text_k``/``text_v``: its prompt K/V; ``cache_k``/``cache_v``: its self-attention buffers (None
    without a cache); ``start``: the token where this pass writes its own K/V. Handing a block its own
    tensors (never a list and a Python layer index) lets ``torch.compile`` trace one graph that every
    layer reuses.
    """

    rope: RopeTable
    text_k: torch.Tensor
    text_v: torch.Tensor
    cache_k: torch.Tensor | None = None
    cache_v: torch.Tensor | None = None
    start: int = 0


def layer_inputs(rope: RopeTable, text: TextCache, cache: KVCache | None, start: int) -> list[LayerInputs]:
    """One ``LayerInputs`` per layer for a pass writing its K/V at token ``start`` of ``cache``."""
    return [LayerInputs(rope, k, v, None if cache is None else cache.k[i], None if cache is None else cache.v[i], start)
            for i, (k, v) in enumerate(zip(text.k, text.v))]


def _layer_norm(x: torch.Tensor, eps: float) -> torch.Tensor:
    return F.layer_norm(x.float(), x.shape[-1:], eps=eps)


class RMSNorm(nn.Module):
    """RMS normalisation over the last dim in float32, cast back, times ``weight``."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype) * self.weight


class Attention(nn.Module):
    """Projections q, k, v, o with RMS-normalised q and k over the full width."""

    def __init__(self, dim: int, num_heads: int, eps: float):
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.o = nn.Linear(dim, dim)
        self.norm_q = RMSNorm(dim, eps)
        self.norm_k = RMSNorm(dim, eps)

    def heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.num_heads, -1))

    def query(self, x: torch.Tensor) -> torch.Tensor:
        return self.heads(self.norm_q(self.q(x)))

    def key_value(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.heads(self.norm_k(self.k(x))), self.heads(self.v(x))

    def out(self, attended: torch.Tensor) -> torch.Tensor:
        return self.o(attended.flatten(-2))


class Block(nn.Module):
    """Modulated self-attention (KV-cached), cross-attention to the prompt, modulated FFN."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.eps = cfg.eps
        self.modulation = nn.Parameter(torch.randn(1, 6, cfg.dim) / cfg.dim**0.5)
        self.self_attn = Attention(cfg.dim, cfg.num_heads, cfg.eps)
        self.norm3 = nn.LayerNorm(cfg.dim, eps=cfg.eps)
        self.cross_attn = Attention(cfg.dim, cfg.num_heads, cfg.eps)
        self.ffn = nn.Sequential(nn.Linear(cfg.dim, cfg.ffn_dim), nn.GELU(approximate="tanh"), nn.Linear(cfg.ffn_dim, cfg.dim))

    def _mods(self, e0: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Six float32 [B, 1, dim] modulation vectors (shift, scale, gate for attention and FFN)."""
        return (self.modulation.float() + e0).unsqueeze(2).unbind(1)

    def _attn_input(self, x: torch.Tensor, m: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return (_layer_norm(x, self.eps) * (1 + m[1]) + m[0]).to(self.modulation.dtype)

    def _store_kv(self, h: torch.Tensor, p: LayerInputs) -> tuple[torch.Tensor, torch.Tensor]:
        """K (after RoPE) and V of ``h``; written into the cache at ``p.start`` when there is one."""
        k, v = self.self_attn.key_value(h)
        k = apply_rope(k, p.rope)
        if p.cache_k is None:
            return k, v
        end = p.start + k.shape[1]
        if end > p.cache_k.shape[1]:
            raise ValueError(f"KV cache holds {p.cache_k.shape[1]} tokens, this pass needs {end}")
        p.cache_k[:, p.start:end] = k
        p.cache_v[:, p.start:end] = v
        return p.cache_k[:, :end], p.cache_v[:, :end]

    def forward(self, x: torch.Tensor, e0: torch.Tensor, p: LayerInputs) -> torch.Tensor:
        m = self._mods(e0)
        h = self._attn_input(x, m)
        k, v = self._store_kv(h, p)
        q = apply_rope(self.self_attn.query(h), p.rope)
        x = x + self.self_attn.out(attention(q, k, v)).float() * m[2]
        hc = F.layer_norm(x, x.shape[-1:], self.norm3.weight.float(), self.norm3.bias.float(), self.eps)
        hc = hc.to(self.modulation.dtype)
        x = x + self.cross_attn.out(attention(self.cross_attn.query(hc), p.text_k, p.text_v)).float()
        hf = (_layer_norm(x, self.eps) * (1 + m[4]) + m[3]).to(self.modulation.dtype)
        return x + self.ffn(hf).float() * m[5]

    def write_kv_only(self, x: torch.Tensor, e0: torch.Tensor, p: LayerInputs) -> None:
        """Only the cache entries of this layer (a context pass's last layer needs nothing else)."""
        self._store_kv(self._attn_input(x, self._mods(e0)), p)


class Head(nn.Module):
    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.eps = cfg.eps
        self.modulation = nn.Parameter(torch.randn(1, 2, cfg.dim) / cfg.dim**0.5)
        self.head = nn.Linear(cfg.dim, cfg.out_dim * math.prod(cfg.patch_size))

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        shift, scale = (self.modulation.float() + e[:, None]).unsqueeze(2).unbind(1)
        return self.head((_layer_norm(x, self.eps) * (1 + scale) + shift).to(self.modulation.dtype))


def sinusoidal_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """[cos | sin] of ``t * 10000**(-i/(dim/2))`` in float64, t: [B] → [B, dim]."""
    half = dim // 2
    freqs = torch.pow(10000.0, -torch.arange(half, dtype=torch.float64, device=t.device) / half)
    angles = torch.outer(t.to(torch.float64), freqs)
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)


def pad_context(latents: torch.Tensor, in_dim: int) -> torch.Tensor:
    """Clean latents [B, F, C, h, w] → model input [B, F, in_dim, h, w] with zero condition channels."""
    b, f, c, h, w = latents.shape
    return torch.cat([latents, latents.new_zeros(b, f, in_dim - c, h, w)], dim=2)


def add_wan_embeddings(model: nn.Module, cfg: DiTConfig, in_channels: int) -> None:
    """Wan2.1's input layers with its key names: ``patch_embedding`` (``in_channels`` latent channels ->
    dim), ``text_embedding``, ``time_embedding`` and ``time_projection`` (dim -> 6 modulation rows)."""
    model.patch_embedding = nn.Conv3d(in_channels, cfg.dim, kernel_size=cfg.patch_size, stride=cfg.patch_size)
    model.text_embedding = nn.Sequential(nn.Linear(cfg.text_dim, cfg.dim), nn.GELU(approximate="tanh"),
                                         nn.Linear(cfg.dim, cfg.dim))
    model.time_embedding = nn.Sequential(nn.Linear(cfg.freq_dim, cfg.dim), nn.SiLU(), nn.Linear(cfg.dim, cfg.dim))
    model.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(cfg.dim, 6 * cfg.dim))


class CausalDiT(nn.Module):
    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.config = cfg
        add_wan_embeddings(self, cfg, cfg.in_dim)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.num_layers))
        self.head = Head(cfg)
        self._rope: dict[tuple, RopeTable] = {}
        self._timesteps: dict[tuple, torch.Tensor] = {}

    # ----------------------------------------------------------------- loading
    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        config: DiTConfig | str | Path | None = None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> "CausalDiT":
        """Load a safetensors checkpoint strictly (keys with or without the ``model.`` prefix).

        ``config``: a ``DiTConfig``, a Wan ``config.json`` path, or None to read the file's
        ``model_config`` metadata. Raises ``CheckpointError`` naming the first key/shape mismatch.
        """
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"{path}: DiT checkpoint not found (see docs/models.md, 'Weights')")
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            keys = list(f.keys())
            if config is None:
                if "model_config" not in meta:
                    raise CheckpointError(f"{path}: no model_config metadata; pass the Wan config.json")
                config = DiTConfig.from_dict(json.loads(meta["model_config"]), source=path)
            elif not isinstance(config, DiTConfig):
                config = DiTConfig.from_json(config)
            with torch.device("meta"):
                model = cls(config)
            names = strip_prefix(dict.fromkeys(keys), "model.")
            shapes = {name: f.get_slice(key).get_shape() for name, key in zip(names, keys)}
            check_state_dict({k: torch.empty(s, device="meta") for k, s in shapes.items()}, model_shapes(model), source=path)
            state = {name: f.get_tensor(key).to(device=device, dtype=dtype) for name, key in zip(names, keys)}
        model.load_state_dict(state, assign=True)
        return model.eval().requires_grad_(False)

    # --------------------------------------------------------------- inference
    @property
    def dtype(self) -> torch.dtype:
        return self.patch_embedding.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.patch_embedding.weight.device

    def compile_blocks(self, **kwargs) -> None:
        """``torch.compile`` every transformer block in place (``kwargs`` go to ``torch.compile``).

        All blocks share one code object and receive their per-layer tensors as inputs, so Dynamo
        traces one graph per input shape (context pass, denoising pass) that every layer reuses.
        """
        for block in self.blocks:
            block.compile(**kwargs)

    def encode_text(self, text_embeds: torch.Tensor) -> TextCache:
        """Per-layer cross-attention K/V of prompt embeddings [B, L <= text_len, text_dim] (zero-padded)."""
        cfg = self.config
        b, n, c = text_embeds.shape
        if n > cfg.text_len or c != cfg.text_dim:
            raise ValueError(f"prompt embeddings {list(text_embeds.shape)} do not fit [B, <= {cfg.text_len}, {cfg.text_dim}]")
        padded = text_embeds.new_zeros(b, cfg.text_len, c)
        padded[:, :n] = text_embeds
        ctx = self.text_embedding(padded.to(device=self.device, dtype=self.dtype))
        kv = [blk.cross_attn.key_value(ctx) for blk in self.blocks]
        return TextCache(k=[k for k, _ in kv], v=[v for _, v in kv])

    def new_cache(self, batch: int, tokens: int) -> KVCache:
        """Self-attention buffers for ``tokens`` (context plus one pass's own tokens)."""
        shape = (batch, tokens, self.config.num_heads, self.config.head_dim)
        k = [torch.empty(shape, device=self.device, dtype=self.dtype) for _ in self.blocks]
        v = [torch.empty(shape, device=self.device, dtype=self.dtype) for _ in self.blocks]
        return KVCache(k=k, v=v)

    def tokens_per_frame(self, height: int, width: int) -> int:
        _, ph, pw = self.config.patch_size
        return (height // ph) * (width // pw)

    def _embed(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
        cfg = self.config
        if x.ndim != 5 or x.shape[2] != cfg.in_dim:
            raise ValueError(f"DiT input must be [B, F, {cfg.in_dim}, h, w], got {list(x.shape)}")
        if any(s % p for s, p in zip((x.shape[1], x.shape[3], x.shape[4]), cfg.patch_size)):
            raise ValueError(f"latent grid {list(x.shape[1:2] + x.shape[3:])} is not divisible by patch {cfg.patch_size}")
        y = self.patch_embedding(x.to(self.dtype).transpose(1, 2))
        grid = tuple(y.shape[2:])
        return y.flatten(2).transpose(1, 2).float(), grid

    def _timestep(self, timestep: float | torch.Tensor) -> torch.Tensor:
        """``timestep`` as a float32 tensor on the device; a Python number's tensor is made once and
        cached (a fresh host-to-device copy per pass would make the host wait for the GPU)."""
        if isinstance(timestep, torch.Tensor):
            return timestep.to(device=self.device, dtype=torch.float32)
        key = (float(timestep), self.device)
        if key not in self._timesteps:
            self._timesteps[key] = torch.tensor(float(timestep), dtype=torch.float32, device=self.device)
        return self._timesteps[key]

    def _time(self, timestep: float | torch.Tensor, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        t = self._timestep(timestep).reshape(-1).expand(batch)
        e = self.time_embedding(sinusoidal_embedding(t, self.config.freq_dim).to(self.dtype))
        e0 = self.time_projection(e).unflatten(1, (6, self.config.dim))
        return e.float(), e0.float()

    def _rope_table(self, grid: tuple[int, int, int], offset: int) -> RopeTable:
        key = (grid, offset, self.device)
        if key not in self._rope:
            self._rope[key] = build_rope(self.config.head_dim, *grid, offset=offset, device=self.device)
        return self._rope[key]

    def prefill(self, context: torch.Tensor, text: TextCache, cache: KVCache, rope_offset: int = 0) -> None:
        """Clean-context pass (timestep 0): bidirectional attention among ``context`` [B, F, in_dim, h, w],
        K/V written to ``cache[0:n]``. The last layer's attention/FFN and the head are skipped."""
        x, grid = self._embed(context)
        _, e0 = self._time(0.0, x.shape[0])
        inputs = layer_inputs(self._rope_table(grid, rope_offset), text, cache, start=0)
        for block, p in zip(self.blocks[:-1], inputs):
            x = block(x, e0, p)
        self.blocks[-1].write_kv_only(x, e0, inputs[-1])
        cache.length = x.shape[1]

    def forward(
        self,
        x: torch.Tensor,
        timestep: float | torch.Tensor,
        text: TextCache,
        rope_offset: int,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        """Flow prediction [B, F, out_dim, h, w] for input ``x`` [B, F, in_dim, h, w] at one timestep.

        With ``cache`` the queries attend the cached context followed by their own tokens; the cached
        context is left unchanged. Without it they attend only their own tokens.
        """
        b, f, _, hh, ww = x.shape
        tokens, grid = self._embed(x)
        e, e0 = self._time(timestep, b)
        inputs = layer_inputs(self._rope_table(grid, rope_offset), text, cache, 0 if cache is None else cache.length)
        for block, p in zip(self.blocks, inputs):
            tokens = block(tokens, e0, p)
        out = self.head(tokens, e).float()
        return self._unpatchify(out, grid)

    def _unpatchify(self, out: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        pt, ph, pw = self.config.patch_size
        f, h, w = grid
        b, c = out.shape[0], self.config.out_dim
        u = out.view(b, f, h, w, pt, ph, pw, c).permute(0, 1, 4, 7, 2, 5, 3, 6)
        return u.reshape(b, f * pt, c, h * ph, w * pw)
