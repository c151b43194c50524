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


def assert_stream_equals_encode(codec, video: torch.Tensor, want: torch.Tensor, splits: Sequence[Sequence[int]],
                                atol: float) -> None:
    """Pushing ``video`` [B, 3, T, H, W] in pieces (each split lists piece sizes), then ``flush``, gives
    the latents ``want`` of a whole-clip encode to ``atol``; no piece yields more latents than it completes."""
    for sizes in splits:
        assert sum(sizes) == video.shape[2]
        stream = codec.stream_encoder()
        parts, start = [], 0
        for n in sizes:
            parts.append(stream.push(video[:, :, start:start + n]))
            start += n
        parts.append(stream.flush())
        got = torch.cat(parts, dim=1)
        assert got.shape == want.shape, (sizes, got.shape, want.shape)
        torch.testing.assert_close(got, want, atol=atol, rtol=0)
