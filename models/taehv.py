"""TAEHV: tiny causal video autoencoder for the Wan2.1 latent space (checkpoint ``taew2_1.pth``).

Architecture: 2D convolutions per frame, ``MemBlock`` s that also see their own input of the previous
frame (zeros before the first), ``TPool`` (merge ``stride`` consecutive frames by a 1x1 conv over their
stacked channels) in the encoder and ``TGrow`` (split one frame into ``stride`` frames) in the decoder.
Temporal factor 4, spatial factor 8, 16 latent channels, no latent mean/std.

Frame rules: encoding pads the end with copies of the last frame to a multiple of 4 and gives
``ceil(T/4)`` latents; decoding ``N`` latents gives ``4N`` frames of which the first 3 are dropped, so
``4N - 3`` frames, the same count as the Wan VAE. The network works on ``[N, T, C, H, W]`` in [0, 1];
:class:`TAEHV`'s ``encode``/``decode`` take and give the Wan VAE conventions instead (pixels
``[B, 3, T, H, W]`` in [-1, 1], latents ``[B, T_lat, 16, h, w]``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from models.manifest import check_state_dict, load_manifest, read_state_dict

LATENT_CHANNELS = 16
TEMPORAL_STRIDE = 4
SPATIAL_STRIDE = 8
ENCODER_TIME_POOL = (2, 2, 1)
DECODER_TIME_GROW = (1, 2, 2)
DECODER_WIDTHS = (256, 128, 64, 64)
FRAMES_TO_TRIM = TEMPORAL_STRIDE - 1

Memory = dict  # layer index -> input frame of the previous step ([N, 1, C, H, W]), one per causal run


def _conv(n_in: int, n_out: int, **kwargs) -> nn.Conv2d:
    return nn.Conv2d(n_in, n_out, 3, padding=1, **kwargs)


class Clamp(nn.Module):
    """Soft clamp of the latents to (-3, 3)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / 3) * 3


class MemBlock(nn.Module):
    """Residual block over ``[x_t, x_{t-1}]`` stacked on channels."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.conv = nn.Sequential(_conv(2 * n_in, n_out), nn.ReLU(inplace=True), _conv(n_out, n_out),
                                  nn.ReLU(inplace=True), _conv(n_out, n_out))
        self.skip = nn.Conv2d(n_in, n_out, 1, bias=False) if n_in != n_out else nn.Identity()

    def forward(self, x: torch.Tensor, past: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(torch.cat([x, past], dim=1)) + self.skip(x))


class TPool(nn.Module):
    """``stride`` consecutive frames -> one frame (1x1 conv over their stacked channels)."""

    def __init__(self, channels: int, stride: int):
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv2d(channels * stride, channels, 1, bias=False)


class TGrow(nn.Module):
    """One frame -> ``stride`` consecutive frames (1x1 conv; output channel block k is frame k)."""

    def __init__(self, channels: int, stride: int):
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv2d(channels, channels * stride, 1, bias=False)


def run_causal(layers: nn.Sequential, x: torch.Tensor, memory: Memory) -> torch.Tensor:
    """Apply ``layers`` to ``x`` ``[N, T, C, H, W]``, all frames at once, continuing from ``memory``.

    ``memory`` holds each MemBlock's last input frame from the previous call (empty = start of the
    video) and is updated, so consecutive calls on consecutive frame blocks equal one call on the
    whole. Frame counts at each ``TPool`` must be multiples of its stride.
    """
    n = x.shape[0]
    for i, layer in enumerate(layers):
        t = x.shape[1]
        if isinstance(layer, MemBlock):
            prev = memory.get(i)
            if prev is None:
                prev = torch.zeros_like(x[:, :1])
            past = torch.cat([prev, x[:, :-1]], dim=1)
            memory[i] = x[:, -1:].clone()
            x = layer(x.flatten(0, 1), past.flatten(0, 1)).unflatten(0, (n, t))
        elif isinstance(layer, TPool):
            if t % layer.stride:
                raise ValueError(f"TPool needs a multiple of {layer.stride} frames, got {t}")
            x = layer.conv(x.reshape(n * t // layer.stride, layer.stride * x.shape[2], *x.shape[3:]))
            x = x.unflatten(0, (n, t // layer.stride))
        elif isinstance(layer, TGrow):
            x = layer.conv(x.flatten(0, 1))
            x = x.reshape(n, t * layer.stride, x.shape[1] // layer.stride, *x.shape[2:])
        else:
            x = layer(x.flatten(0, 1)).unflatten(0, (n, t))
    return x


def build_encoder() -> nn.Sequential:
    layers: list[nn.Module] = [_conv(3, 64), nn.ReLU(inplace=True)]
    for stride in ENCODER_TIME_POOL:
        layers += [TPool(64, stride), _conv(64, 64, stride=2, bias=False), MemBlock(64, 64), MemBlock(64, 64),
                   MemBlock(64, 64)]
    layers.append(_conv(64, LATENT_CHANNELS))
    return nn.Sequential(*layers)


def build_decoder() -> nn.Sequential:
    n_f = DECODER_WIDTHS
    layers: list[nn.Module] = [Clamp(), _conv(LATENT_CHANNELS, n_f[0]), nn.ReLU(inplace=True)]
    for level, stride in enumerate(DECODER_TIME_GROW):
        c = n_f[level]
        layers += [MemBlock(c, c), MemBlock(c, c), MemBlock(c, c), nn.Upsample(scale_factor=2),
                   TGrow(c, stride), _conv(c, n_f[level + 1], bias=False)]
    layers += [nn.ReLU(inplace=True), _conv(n_f[-1], 3)]
    return nn.Sequential(*layers)


class TAEHV(nn.Module):
    """TAEHV for Wan2.1 latents; state-dict keys ``encoder.<i>.*`` / ``decoder.<i>.*`` as in ``taew2_1.pth``."""

    def __init__(self):
        super().__init__()
        self.encoder = build_encoder()
        self.decoder = build_decoder()

    @classmethod
    def from_state_dict(cls, state_dict: Mapping[str, torch.Tensor], source: str | Path = "state dict") -> "TAEHV":
        check_state_dict(state_dict, load_manifest("taehv"), source)
        with torch.device("meta"):
            model = cls()
        model.load_state_dict(state_dict, strict=True, assign=True)
        return model.eval().requires_grad_(False)

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "cpu",
                        dtype: torch.dtype = torch.float32) -> "TAEHV":
        """Load ``taew2_1.pth`` (fp16 on disk; use ``dtype=torch.float16`` on a GPU)."""
        state_dict = read_state_dict(path, "TAEHV checkpoint", "download taew2_1.pth, see docs/models.md, 'Weights'")
        return cls.from_state_dict(state_dict, source=path).to(device=device, dtype=dtype)

    # ---- native interface: [N, T, C, H, W] in [0, 1] ---------------------------------------------
    def encode_video(self, frames: torch.Tensor) -> torch.Tensor:
        """``[N, T, 3, H, W]`` in [0, 1] -> latents ``[N, ceil(T/4), 16, H/8, W/8]``."""
        return self.stream_encoder().push_native(_pad_to_group(frames))

    def decode_video(self, latents: torch.Tensor) -> torch.Tensor:
        """``[N, T_lat, 16, h, w]`` -> ``[N, 4*T_lat - 3, 3, 8h, 8w]`` in [0, 1]."""
        return self.stream_decoder().push_native(latents)

    # ---- Wan VAE conventions --------------------------------------------------------------------
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """``[B, 3, T, H, W]`` in [-1, 1] -> latents ``[B, ceil(T/4), 16, H/8, W/8]``."""
        stream = self.stream_encoder()
        return torch.cat([stream.push(video), stream.flush()], dim=1)

    def stream_encoder(self) -> "TAEHVStreamEncoder":
        """An encoder that takes pixel frames in order, any number per push; memory does not grow with
        the video's length and the concatenated outputs (``flush`` last) equal one :meth:`encode`."""
        return TAEHVStreamEncoder(self)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """``[B, T_lat, 16, h, w]`` -> ``[B, 3, 4*T_lat - 3, 8h, 8w]`` float32 in [-1, 1]."""
        return self.stream_decoder().push(latents)

    def stream_decoder(self) -> "TAEHVStreamDecoder":
        """A decoder that takes latent blocks in order; concatenated outputs equal one :meth:`decode`."""
        return TAEHVStreamDecoder(self)


def _pad_to_group(frames: torch.Tensor) -> torch.Tensor:
    """``[N, T, ...]`` followed by copies of its last frame up to a multiple of 4 frames."""
    pad = -frames.shape[1] % TEMPORAL_STRIDE
    return torch.cat([frames, frames[:, -1:].expand(-1, pad, *frames.shape[2:])], dim=1) if pad else frames


class TAEHVStreamEncoder:
    """Streaming TAEHV encode: whole groups of 4 frames go through the encoder with the MemBlock
    memories kept between pushes; the frames of an incomplete group (at most 3) wait for the next push,
    and :meth:`flush` completes the last group with copies of the last frame."""

    def __init__(self, tae: TAEHV):
        self.tae = tae
        self.memory: Memory = {}
        self.pending: torch.Tensor | None = None
        self._empty: torch.Tensor | None = None

    def _encode(self, frames: torch.Tensor) -> torch.Tensor:
        n, t, _, h, w = frames.shape
        self._empty = frames.new_zeros(n, 0, LATENT_CHANNELS, h // SPATIAL_STRIDE, w // SPATIAL_STRIDE)
        return run_causal(self.tae.encoder, frames, self.memory) if t else self._empty

    @torch.no_grad()
    def push_native(self, frames: torch.Tensor) -> torch.Tensor:
        """Next ``[N, t, 3, H, W]`` frames in [0, 1] -> the latents ``[N, t', 16, H/8, W/8]`` they complete."""
        if frames.ndim != 5 or frames.shape[2] != 3:
            raise ValueError(f"TAEHV encode expects frames [N, T, 3, H, W], got {list(frames.shape)}")
        param = self.tae.encoder[0].weight
        frames = frames.to(param.device, param.dtype)
        if self.pending is not None:
            frames = torch.cat([self.pending, frames], dim=1)
        usable = frames.shape[1] - frames.shape[1] % TEMPORAL_STRIDE
        self.pending = frames[:, usable:].clone() if usable < frames.shape[1] else None
        return self._encode(frames[:, :usable])

    @torch.no_grad()
    def flush_native(self) -> torch.Tensor:
        """End of the video: the incomplete group, padded with copies of its last frame, as one latent
        (none when the frame count was a multiple of 4)."""
        if self._empty is None:
            raise ValueError("flush() before any push")
        pending, self.pending = self.pending, None
        return self._empty if pending is None else self._encode(_pad_to_group(pending))

    def push(self, video: torch.Tensor) -> torch.Tensor:
        """Next ``[B, 3, t, H, W]`` pixels in [-1, 1] (Wan conventions) -> latents ``[B, t', 16, h, w]``."""
        if video.ndim != 5 or video.shape[1] != 3:
            raise ValueError(f"TAEHV.encode expects [B, 3, T, H, W], got {list(video.shape)}")
        return self.push_native((video.transpose(1, 2) * 0.5 + 0.5).clamp(0, 1))

    def flush(self) -> torch.Tensor:
        """Wan-convention alias of :meth:`flush_native`."""
        return self.flush_native()


class TAEHVStreamDecoder:
    """Streaming TAEHV decode: MemBlock memories persist between pushes; the first 3 frames are dropped."""

    def __init__(self, tae: TAEHV):
        self.tae = tae
        self.memory: Memory = {}
        self.to_trim = FRAMES_TO_TRIM

    @torch.no_grad()
    def push_native(self, latents: torch.Tensor) -> torch.Tensor:
        """Next ``[N, t, 16, h, w]`` latents -> frames ``[N, t', 3, 8h, 8w]`` in [0, 1] (native layout)."""
        if latents.ndim != 5 or latents.shape[2] != LATENT_CHANNELS:
            raise ValueError(f"expected latents [N, T, {LATENT_CHANNELS}, h, w], got {list(latents.shape)}")
        param = self.tae.decoder[1].weight
        frames = run_causal(self.tae.decoder, latents.to(param.device, param.dtype), self.memory).clamp_(0, 1)
        trim = min(self.to_trim, frames.shape[1])
        self.to_trim -= trim
        return frames[:, trim:]

    def push(self, latents: torch.Tensor) -> torch.Tensor:
        """Next ``[B, t, 16, h, w]`` latents -> pixels ``[B, 3, t', 8h, 8w]`` float32 in [-1, 1]."""
        return (self.push_native(latents).float() * 2 - 1).transpose(1, 2)
