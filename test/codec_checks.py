"""Shared check for the autoencoders' streaming contract (Wan VAE and TAEHV)."""

from __future__ import annotations

from typing import Sequence

import torch


def assert_stream_equals_decode(codec, latents: torch.Tensor, splits: Sequence[Sequence[int]]) -> None:
    """Pushing ``latents`` [B, T, 16, h, w] block by block (each split lists block sizes) gives exactly
    one ``decode``: the first push yields 4t - 3 frames, every later push 4t."""
    whole = codec.decode(latents)
    for sizes in splits:
        stream = codec.stream_decoder()
        parts, start = [], 0
        for n in sizes:
            parts.append(stream.push(latents[:, start:start + n]))
            start += n
        assert [p.shape[2] for p in parts] == [4 * n - (3 if i == 0 else 0) for i, n in enumerate(sizes)]
        assert torch.equal(torch.cat(parts, dim=2), whole)
