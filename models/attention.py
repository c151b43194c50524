"""Unmasked multi-head attention with an optional flash-attention fast path.

Tensors are ``[batch, tokens, heads, head_dim]``; the scale is ``1/sqrt(head_dim)``. The default is
``torch.nn.functional.scaled_dot_product_attention``. When the ``flash_attn`` package (FlashAttention 2,
Ampere or newer) or ``flash_attn_interface`` (FlashAttention 3, Hopper) is installed, CUDA half/bfloat16
inputs go through it instead; results agree with SDPA to dtype tolerance. ``set_backend("sdpa")``
forces the torch path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

try:
    from flash_attn_interface import flash_attn_func as _fa3
except ImportError:
    _fa3 = None
try:
    from flash_attn import flash_attn_func as _fa2
except ImportError:
    _fa2 = None

BACKENDS = ("auto", "sdpa")
_backend = "auto"


def set_backend(name: str) -> None:
    """``"auto"`` (flash-attention where available, else SDPA) or ``"sdpa"`` (always torch SDPA)."""
    global _backend
    if name not in BACKENDS:
        raise ValueError(f"unknown attention backend {name!r}; choose one of {BACKENDS}")
    _backend = name


def backend_for(q: torch.Tensor) -> str:
    """Name of the kernel ``attention`` uses for tensors like ``q``: "fa3", "fa2" or "sdpa"."""
    if _backend == "sdpa" or not q.is_cuda or q.dtype not in (torch.float16, torch.bfloat16):
        return "sdpa"
    major, _ = torch.cuda.get_device_capability(q.device)
    if _fa3 is not None and major == 9:
        return "fa3"
    if _fa2 is not None and major >= 8:
        return "fa2"
    return "sdpa"


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q kᵀ / sqrt(d)) v for q [B, Lq, H, d], k/v [B, Lk, H, d] → [B, Lq, H, d]."""
    kind = backend_for(q)
    if kind == "fa3":
        out = _fa3(q, k, v)
        return out[0] if isinstance(out, tuple) else out
    if kind == "fa2":
        return _fa2(q, k, v)
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    return out.transpose(1, 2)
