"""umT5-XXL text encoder (Wan2.1 ``models_t5_umt5-xxl-enc-bf16.pth``) and the prompt → embedding step.

The module keeps the checkpoint's own key names (``token_embedding.weight``, ``blocks.N.attn.q.weight``,
``blocks.N.ffn.gate.0.weight``, ``blocks.N.pos_embedding.embedding.weight``, ``norm.weight``), so the file loads
strictly with no key map. Architecture (T5 v1.1 / umT5 encoder): pre-norm blocks with RMS norm (no mean, no
bias, statistics in fp32), unscaled dot-product attention plus a per-layer bidirectional relative position bias
(32 buckets, max distance 128), gated FFN ``fc2(fc1(x) * gelu_tanh(gate(x)))``, final RMS norm, no dropout.

``transformers``' ``UMT5EncoderModel`` is not reused: in half precision it differs numerically (softmax in the
input dtype instead of fp32, FFN output projection forced to fp32), and it would need a key map and a config
translation. This module follows the Wan computation exactly.
"""

from __future__ import annotations

import gc
import html
import logging
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from models.manifest import CheckpointError, check_state_dict, load_manifest, model_shapes, read_state_dict

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "models_t5_umt5-xxl-enc-bf16.pth"
TOKENIZER_SUBDIR = "google/umt5-xxl"
TEXT_LEN = 512


@dataclass(frozen=True)
class UMT5Config:
    """Encoder hyper-parameters; the defaults are the full-size umT5-XXL of Wan2.1."""

    vocab: int = 256384
    dim: int = 4096
    dim_attn: int = 4096
    dim_ffn: int = 10240
    num_heads: int = 64
    num_layers: int = 24
    num_buckets: int = 32
    max_distance: int = 128
    eps: float = 1e-6

    @classmethod
    def from_dict(cls, d: Mapping) -> "UMT5Config":
        """Build from a Wan-style config dict (``vocab, dim, dim_attn, dim_ffn, num_heads, num_layers,
        num_buckets``; ``shared_pos`` must be false, ``dropout`` is ignored: inference only)."""
        if d.get("shared_pos", False):
            raise ValueError("umT5 config: shared_pos=true (one position bias for all layers) is not umT5; expected false")
        fields = {k: d[k] for k in asdict(cls()) if k in d}
        return cls(**fields)

    @classmethod
    def from_state_dict(cls, sd: Mapping[str, torch.Tensor], source: str | Path = "umT5 checkpoint") -> "UMT5Config":
        """Read the sizes off the tensors: vocab/dim from ``token_embedding``, attention and FFN widths from
        block 0, heads and buckets from its relative position table ``[num_buckets, num_heads]``."""
        try:
            vocab, dim = sd["token_embedding.weight"].shape
            num_buckets, num_heads = sd["blocks.0.pos_embedding.embedding.weight"].shape
            dim_attn = sd["blocks.0.attn.q.weight"].shape[0]
            dim_ffn = sd["blocks.0.ffn.fc1.weight"].shape[0]
        except KeyError as e:
            raise CheckpointError(f"{source}: key {e} missing; not a Wan umT5 encoder checkpoint") from e
        layers = {int(k.split(".")[1]) for k in sd if k.startswith("blocks.")}
        return cls(vocab=vocab, dim=dim, dim_attn=dim_attn, dim_ffn=dim_ffn, num_heads=num_heads,
                   num_layers=max(layers) + 1, num_buckets=num_buckets)


class RMSNorm(nn.Module):
    """T5 layer norm: ``w * x / sqrt(mean(x²) + eps)``, statistics in fp32, result in the weight's dtype."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * torch.rsqrt(x.float().pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return self.weight * x.to(self.weight.dtype)


def relative_position_buckets(length: int, num_buckets: int, max_distance: int, device=None) -> torch.Tensor:
    """Bucket index [L, L] of ``key_pos − query_pos`` (bidirectional T5 scheme): half the buckets per sign,
    exact below ``num_buckets/4``, logarithmic up to ``max_distance``, clipped beyond."""
    pos = torch.arange(length, device=device)
    rel = pos[None, :] - pos[:, None]
    half = num_buckets // 2
    buckets = (rel > 0).long() * half
    rel = rel.abs()
    exact = half // 2
    large = exact + (
        torch.log(rel.float().clamp(min=1) / exact) / math.log(max_distance / exact) * (half - exact)
    ).long()
    large = large.clamp(max=half - 1)
    return buckets + torch.where(rel < exact, rel, large)


class RelativePositionBias(nn.Module):
    """Learned per-head bias ``[1, heads, L, L]`` indexed by relative-position bucket."""

    def __init__(self, num_buckets: int, num_heads: int, max_distance: int):
        super().__init__()
        self.num_buckets = num_buckets
        self.max_distance = max_distance
        self.embedding = nn.Embedding(num_buckets, num_heads)

    def forward(self, length: int) -> torch.Tensor:
        idx = relative_position_buckets(length, self.num_buckets, self.max_distance, self.embedding.weight.device)
        return self.embedding(idx).permute(2, 0, 1).unsqueeze(0)


class Attention(nn.Module):
    def __init__(self, dim: int, dim_attn: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim_attn, bias=False)
        self.k = nn.Linear(dim, dim_attn, bias=False)
        self.v = nn.Linear(dim, dim_attn, bias=False)
        self.o = nn.Linear(dim_attn, dim, bias=False)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """x [B, L, dim]; bias [B|1, heads, L, L] additive (position bias with masked keys at dtype min)."""
        b, n = x.shape[0], self.num_heads
        q, k, v = (proj(x).view(b, -1, n, proj.out_features // n).transpose(1, 2) for proj in (self.q, self.k, self.v))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=1.0)
        return self.o(out.transpose(1, 2).reshape(b, -1, self.o.in_features))


class FeedForward(nn.Module):
    def __init__(self, dim: int, dim_ffn: int):
        super().__init__()
        self.gate = nn.Sequential(nn.Linear(dim, dim_ffn, bias=False), nn.GELU(approximate="tanh"))
        self.fc1 = nn.Linear(dim, dim_ffn, bias=False)
        self.fc2 = nn.Linear(dim_ffn, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.fc1(x) * self.gate(x))


def _fp16_clamp(x: torch.Tensor) -> torch.Tensor:
    """Keep fp16 activations finite (no-op for other dtypes), as the reference encoder does."""
    if x.dtype == torch.float16 and torch.isinf(x).any():
        limit = torch.finfo(x.dtype).max - 1000
        x = x.clamp(-limit, limit)
    return x


class Block(nn.Module):
    def __init__(self, cfg: UMT5Config):
        super().__init__()
        self.norm1 = RMSNorm(cfg.dim, cfg.eps)
        self.attn = Attention(cfg.dim, cfg.dim_attn, cfg.num_heads)
        self.norm2 = RMSNorm(cfg.dim, cfg.eps)
        self.ffn = FeedForward(cfg.dim, cfg.dim_ffn)
        self.pos_embedding = RelativePositionBias(cfg.num_buckets, cfg.num_heads, cfg.max_distance)

    def forward(self, x: torch.Tensor, key_padding: torch.Tensor | None) -> torch.Tensor:
        bias = self.pos_embedding(x.shape[1]).to(x.dtype)
        if key_padding is not None:
            bias = bias.masked_fill(key_padding[:, None, None, :], torch.finfo(x.dtype).min)
        x = _fp16_clamp(x + self.attn(self.norm1(x), bias))
        return _fp16_clamp(x + self.ffn(self.norm2(x)))


class UMT5Encoder(nn.Module):
    """umT5 encoder with Wan key names. ``forward(ids [B,L] int64, mask [B,L] (1 = token, 0 = pad))``
    returns hidden states [B, L, dim] for every position (padding rows included)."""

    def __init__(self, cfg: UMT5Config = UMT5Config()):
        super().__init__()
        self.config = cfg
        self.token_embedding = nn.Embedding(cfg.vocab, cfg.dim)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.num_layers))
        self.norm = RMSNorm(cfg.dim, cfg.eps)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self.token_embedding(ids)
        key_padding = None if mask is None else mask == 0
        for block in self.blocks:
            x = block(x, key_padding)
        return self.norm(x)

    @classmethod
    def from_state_dict(
        cls,
        state_dict: Mapping[str, torch.Tensor],
        cfg: UMT5Config | None = None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.bfloat16,
        source: str | Path = "umT5 checkpoint",
    ) -> "UMT5Encoder":
        """Strict load. ``cfg=None`` reads the sizes off the file: the full-size sizes are checked against the
        official manifest (242 keys), any other size (tiny test models) against the module's own layout."""
        cfg = cfg or UMT5Config.from_state_dict(state_dict, source)
        with torch.device("meta"):
            model = cls(cfg)
        expected = load_manifest("umt5") if cfg == UMT5Config() else model_shapes(model)
        if cfg != UMT5Config():
            log.warning("%s: not the full-size umT5-XXL encoder (%s)", source, cfg)
        check_state_dict(state_dict, expected, source)
        model.load_state_dict({k: v.to(device=device, dtype=dtype) for k, v in state_dict.items()}, assign=True)
        return model.eval().requires_grad_(False)

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        cfg: UMT5Config | None = None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.bfloat16,
    ) -> "UMT5Encoder":
        """Load ``models_t5_umt5-xxl-enc-bf16.pth`` (memory-mapped, so peak host memory stays near one copy)."""
        sd = read_state_dict(path, "umT5 encoder checkpoint",
                             f"expected '{CHECKPOINT_NAME}' in the Wan2.1-T2V-1.3B folder; see docs/models.md, 'Weights'")
        return cls.from_state_dict(sd, cfg, device, dtype, source=path)


def clean_prompt(text: str) -> str:
    """Prompt normalisation before tokenising: HTML entities unescaped (twice), whitespace runs collapsed to one
    space, ends stripped. (The reference also runs ``ftfy.fix_text``, which only repairs mis-decoded text.)"""
    text = html.unescape(html.unescape(text))
    return re.sub(r"\s+", " ", text).strip()


class TextEncoder:
    """Prompts → text embeddings for the DiT: ``encode(prompts) -> [B, text_len, dim]``; rows past each prompt's
    token count (including its end token) are zero. Call ``release()`` once the prompts are encoded: the
    full-size encoder holds 11.4 GB of bf16 weights."""

    def __init__(self, model: UMT5Encoder, tokenizer, text_len: int = TEXT_LEN):
        self.model: UMT5Encoder | None = model
        self.tokenizer = tokenizer
        self.text_len = text_len

    @classmethod
    def from_dir(
        cls,
        wan_dir: str | Path,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.bfloat16,
        cfg: UMT5Config | None = None,
        text_len: int = TEXT_LEN,
    ) -> "TextEncoder":
        """Load from a Wan2.1 folder: ``<wan_dir>/models_t5_umt5-xxl-enc-bf16.pth`` and the tokenizer files in
        ``<wan_dir>/google/umt5-xxl/`` (local files only). ``cfg=None`` reads the sizes off the checkpoint."""
        from transformers import AutoTokenizer

        wan_dir = Path(wan_dir)
        tok_dir = wan_dir / TOKENIZER_SUBDIR
        if not tok_dir.is_dir():
            raise FileNotFoundError(f"{tok_dir}: umT5 tokenizer folder not found (it ships with Wan2.1-T2V-1.3B; "
                                    "see docs/models.md, 'Weights')")
        tokenizer = AutoTokenizer.from_pretrained(tok_dir, local_files_only=True)
        model = UMT5Encoder.from_checkpoint(wan_dir / CHECKPOINT_NAME, cfg, device, dtype)
        return cls(model, tokenizer, text_len)

    def tokenize(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """ids, mask [B, text_len] int64: end token appended, padded / truncated to ``text_len``."""
        out = self.tokenizer(
            [clean_prompt(p) for p in prompts],
            padding="max_length",
            truncation=True,
            max_length=self.text_len,
            add_special_tokens=True,
            return_tensors="pt",
        )
        return out["input_ids"], out["attention_mask"]

    @torch.no_grad()
    def encode(self, prompts: Sequence[str]) -> torch.Tensor:
        if self.model is None:
            raise RuntimeError("TextEncoder.encode called after release(); load it again with TextEncoder.from_dir")
        device = self.model.token_embedding.weight.device
        ids, mask = self.tokenize(prompts)
        ids, mask = ids.to(device), mask.to(device)
        hidden = self.model(ids, mask)
        return hidden * mask[..., None].to(hidden.dtype)

    def release(self) -> None:
        """Drop the weights (and return cached GPU memory); ``encode`` is unusable afterwards."""
        device = None if self.model is None else self.model.token_embedding.weight.device
        self.model = None
        gc.collect()
        if device is not None and device.type == "cuda":
            torch.cuda.empty_cache()

