"""3-axis rotary position embedding of the causal DiT (real cos/sin form).

Per head (``head_dim`` = d channels) the channels split into a time, a row and a column part of
``d - 4*(d//6)``, ``2*(d//6)``, ``2*(d//6)`` channels. A part with c channels rotates channel pair
(2i, 2i+1) of a token at position p by the angle ``p * 10000**(-2i/c)``. Tokens are flattened in
(frame, row, column) order; the frame position is ``offset + local frame index`` and the row and
column positions start at 0. Angles are computed in float64 and stored as float32 cos/sin tables;
the rotation itself runs in float32 and is cast back to the input dtype.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

MAX_POSITIONS = 1024
THETA = 10000.0


def rope_channel_split(head_dim: int) -> tuple[int, int, int]:
    """Channel counts of the (time, row, column) parts of one head."""
    spatial = 2 * (head_dim // 6)
    return head_dim - 2 * spatial, spatial, spatial


def _axis_angles(positions: torch.Tensor, channels: int) -> torch.Tensor:
    """float64 [P, channels/2] angles ``p * THETA**(-2i/channels)``."""
    inv = 1.0 / torch.pow(THETA, torch.arange(0, channels, 2, dtype=torch.float64) / channels)
    return torch.outer(positions.to(torch.float64), inv)


@dataclass(frozen=True)
class RopeTable:
    """cos/sin tables float32 [L, 1, head_dim/2] for L = frames*rows*cols tokens."""

    cos: torch.Tensor
    sin: torch.Tensor


def build_rope(head_dim: int, frames: int, rows: int, cols: int, offset: int, device) -> RopeTable:
    """Tables for a (frames, rows, cols) token grid whose first frame sits at temporal position ``offset``."""
    if offset < 0 or offset + frames > MAX_POSITIONS or rows > MAX_POSITIONS or cols > MAX_POSITIONS:
        raise ValueError(
            f"RoPE positions exceed the table: frames {offset}..{offset + frames - 1}, "
            f"grid {rows}x{cols} (max {MAX_POSITIONS} per axis)"
        )
    ct, ch, cw = rope_channel_split(head_dim)
    at = _axis_angles(torch.arange(offset, offset + frames), ct)
    ah = _axis_angles(torch.arange(rows), ch)
    aw = _axis_angles(torch.arange(cols), cw)
    angles = torch.cat(
        [
            at[:, None, None, :].expand(frames, rows, cols, -1),
            ah[None, :, None, :].expand(frames, rows, cols, -1),
            aw[None, None, :, :].expand(frames, rows, cols, -1),
        ],
        dim=-1,
    ).reshape(frames * rows * cols, 1, head_dim // 2)
    return RopeTable(
        cos=torch.cos(angles).to(device=device, dtype=torch.float32),
        sin=torch.sin(angles).to(device=device, dtype=torch.float32),
    )


def apply_rope(x: torch.Tensor, table: RopeTable) -> torch.Tensor:
    """Rotate interleaved channel pairs of ``x`` [B, L, heads, head_dim] by the table's angles."""
    xf = x.float().unflatten(-1, (-1, 2))
    re, im = xf[..., 0], xf[..., 1]
    out = torch.stack((re * table.cos - im * table.sin, re * table.sin + im * table.cos), dim=-1)
    return out.flatten(-2).to(x.dtype)
