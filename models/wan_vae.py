"""Wan2.1 video VAE (z 16, 8x spatial, 4x temporal) with causal chunked encode and streaming decode.

Conventions: pixel videos are ``[B, 3, T, H, W]`` in [-1, 1]; latents are ``[B, T_lat, 16, H/8, W/8]``,
normalised as ``z = (mu - mean) / std`` with the Wan2.1 per-channel constants. Encoding sees the first
frame alone and then chunks of 4 frames, so ``T_lat = 1 + (T - 1) // 4`` (leftover frames are dropped).
Decoding runs one latent frame at a time and yields ``4 * T_lat - 3`` frames clamped to [-1, 1].

Every causal 3D convolution keeps the last 2 input frames of the previous chunk (its "cache"), so a
chunked run equals a run over the whole clip with zero padding in front. The cache of one run lives in a
``dict`` (module -> tensor) owned by the caller, which is what makes :meth:`WanVAE.stream_decoder` a
constant-memory streaming decoder.

Decode behaviours (``decode_mode``): the temporal upsampler's cache differs between the InSpatio-World
inference code ("inspatio", default, what its DiT was trained with) and upstream Wan2.1 ("wan21"). For a
one-frame chunk upstream caches ``[x_{n-1}, x_n]``; InSpatio caches ``[x_n, x_n]`` (literally
``where(prev_last == 0, 0, x_n)``, so the zero-initialised start is shared). Both agree on the first 9
output frames and differ from latent index 3 on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from models.manifest import check_state_dict, load_manifest, model_shapes, read_state_dict

DecodeMode = Literal["inspatio", "wan21"]
DECODE_MODES = ("inspatio", "wan21")

LATENT_MEAN = (
    -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
    0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921,
)
LATENT_STD = (
    2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
    3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160,
)
CACHE_FRAMES = 2
TEMPORAL_STRIDE = 4
SPATIAL_STRIDE = 8

State = dict  # nn.Module -> cached tensor, one per causal run (encode, or a decode stream)


@dataclass(frozen=True)
class WanVAEConfig:
    """Architecture of the Wan2.1 VAE; only ``dim`` and ``z_dim`` vary between checkpoints."""

    dim: int = 96
    z_dim: int = 16
    dim_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    temporal_downsample: tuple[bool, ...] = (False, True, True)

    @classmethod
    def from_state_dict(cls, state_dict: Mapping[str, torch.Tensor]) -> "WanVAEConfig":
        """Read ``dim`` (first encoder conv) and ``z_dim`` (post-quant conv) from the weight shapes."""
        return cls(dim=int(state_dict["encoder.conv1.weight"].shape[0]),
                   z_dim=int(state_dict["conv2.weight"].shape[0]))


def _tail(x: torch.Tensor, prev: torch.Tensor | None) -> torch.Tensor:
    """The last ``CACHE_FRAMES`` frames seen so far (a one-frame chunk borrows the previous last frame)."""
    tail = x[:, :, -CACHE_FRAMES:]
    if tail.shape[2] < CACHE_FRAMES and prev is not None:
        tail = torch.cat([prev[:, :, -1:], tail], dim=2)
    return tail.clone()


class CausalConv3d(nn.Conv3d):
    """3D convolution that is causal in time: ``2 * p_t`` frames of cache (or zeros) go in front."""

    def __init__(self, in_dim: int, out_dim: int, kernel, stride=1, padding=0):
        kernel = (kernel,) * 3 if isinstance(kernel, int) else tuple(kernel)
        padding = (padding,) * 3 if isinstance(padding, int) else tuple(padding)
        super().__init__(in_dim, out_dim, kernel, stride=stride, padding=(0, padding[1], padding[2]))
        self.time_pad = 2 * padding[0]

    def causal(self, x: torch.Tensor, cache: torch.Tensor | None) -> torch.Tensor:
        """Convolve ``x`` preceded by ``cache`` frames, zero-padded in front up to ``time_pad`` frames."""
        if self.time_pad == 0:
            return super().forward(x)
        if cache is not None:
            x = torch.cat([cache, x], dim=2)
        missing = self.time_pad - (cache.shape[2] if cache is not None else 0)
        if missing > 0:
            x = F.pad(x, (0, 0, 0, 0, missing, 0))
        return super().forward(x)

    def forward(self, x: torch.Tensor, state: State) -> torch.Tensor:
        prev = state.get(self)
        state[self] = _tail(x, prev)
        return self.causal(x, prev)


class RMSNorm(nn.Module):
    """L2 normalisation over channels times ``sqrt(dim) * gamma`` (Wan's ``RMS_norm``)."""

    def __init__(self, dim: int, images: bool):
        super().__init__()
        self.scale = dim ** 0.5
        self.gamma = nn.Parameter(torch.ones((dim, 1, 1) if images else (dim, 1, 1, 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=1) * self.scale * self.gamma


def _per_frame(fn, x: torch.Tensor) -> torch.Tensor:
    """Apply a 2D module to every frame of ``[B, C, T, H, W]``."""
    b, _, t = x.shape[:3]
    y = fn(x.transpose(1, 2).flatten(0, 1))
    return y.unflatten(0, (b, t)).transpose(1, 2)


class ResidualBlock(nn.Module):
    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        # Index layout fixed by the checkpoint keys: residual.{0,3}.gamma, residual.{2,6}.weight.
        self.residual = nn.Sequential(
            RMSNorm(in_dim, images=False), nn.SiLU(), CausalConv3d(in_dim, out_dim, 3, padding=1),
            RMSNorm(out_dim, images=False), nn.SiLU(), nn.Identity(), CausalConv3d(out_dim, out_dim, 3, padding=1),
        )
        self.shortcut = CausalConv3d(in_dim, out_dim, 1) if in_dim != out_dim else nn.Identity()

    def forward(self, x: torch.Tensor, state: State) -> torch.Tensor:
        h = self.shortcut.causal(x, None) if isinstance(self.shortcut, CausalConv3d) else x
        for layer in self.residual:
            x = layer(x, state) if isinstance(layer, CausalConv3d) else layer(x)
        return x + h


class AttentionBlock(nn.Module):
    """Single-head spatial self-attention within each frame."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = RMSNorm(dim, images=True)
        self.to_qkv = nn.Conv2d(dim, dim * 3, 1)
        self.proj = nn.Conv2d(dim, dim, 1)

    def _frames(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        q, k, v = self.to_qkv(self.norm(x)).reshape(n, 1, 3 * c, h * w).transpose(2, 3).chunk(3, dim=-1)
        y = F.scaled_dot_product_attention(q.contiguous(), k.contiguous(), v.contiguous())
        return self.proj(y.squeeze(1).transpose(1, 2).reshape(n, c, h, w))

    def forward(self, x: torch.Tensor, state: State) -> torch.Tensor:
        return x + _per_frame(self._frames, x)


class Resample(nn.Module):
    """2x spatial up/down-sampling, optionally with 2x temporal up/down-sampling (``*3d`` modes)."""

    def __init__(self, dim: int, mode: str, decode_mode: DecodeMode = "inspatio"):
        super().__init__()
        self.mode = mode
        self.decode_mode = decode_mode
        if mode.startswith("upsample"):
            self.resample = nn.Sequential(nn.Upsample(scale_factor=2.0, mode="nearest"),
                                          nn.Conv2d(dim, dim // 2, 3, padding=1))
        else:
            self.resample = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(dim, dim, 3, stride=2))
        if mode == "upsample3d":
            self.time_conv = CausalConv3d(dim, dim * 2, (3, 1, 1), padding=(1, 0, 0))
        elif mode == "downsample3d":
            self.time_conv = CausalConv3d(dim, dim, (3, 1, 1), stride=(2, 1, 1))

    def _upsample_time(self, x: torch.Tensor, state: State) -> torch.Tensor:
        if self not in state:  # the first latent frame is not upsampled in time
            state[self] = x.new_zeros(x.shape[:2] + (CACHE_FRAMES,) + x.shape[3:])
            return x
        prev = state[self]
        tail = x[:, :, -CACHE_FRAMES:]
        if tail.shape[2] < CACHE_FRAMES:
            last = prev[:, :, -1:]
            pad = last if self.decode_mode == "wan21" else torch.where(last == 0, torch.zeros_like(tail), tail)
            tail = torch.cat([pad, tail], dim=2)
        state[self] = tail.clone()
        b, c, t, h, w = x.shape
        y = self.time_conv.causal(x, prev)  # [B, 2C, T, H, W]: channel halves are frames 2t and 2t+1
        return y.reshape(b, 2, c, t, h, w).permute(0, 2, 3, 1, 4, 5).reshape(b, c, 2 * t, h, w)

    def _downsample_time(self, x: torch.Tensor, state: State) -> torch.Tensor:
        prev = state.get(self)
        state[self] = x[:, :, -1:].clone()
        if prev is None:  # the first frame is kept as is
            return x
        return self.time_conv.causal(torch.cat([prev, x], dim=2), None)

    def forward(self, x: torch.Tensor, state: State) -> torch.Tensor:
        if self.mode == "upsample3d":
            x = self._upsample_time(x, state)
        x = _per_frame(self.resample, x)
        if self.mode == "downsample3d":
            x = self._downsample_time(x, state)
        return x


def _run_coder(coder: "Encoder3d | Decoder3d", x: torch.Tensor, state: State) -> torch.Tensor:
    """conv1, then every block, then the head; each causal layer reads and updates ``state``."""
    x = coder.conv1(x, state)
    for layer in coder.blocks():
        x = layer(x, state)
    for layer in coder.head:
        x = layer(x, state) if isinstance(layer, CausalConv3d) else layer(x)
    return x


class Encoder3d(nn.Module):
    def __init__(self, cfg: WanVAEConfig):
        super().__init__()
        dims = [cfg.dim * m for m in (1, *cfg.dim_mult)]
        self.conv1 = CausalConv3d(3, dims[0], 3, padding=1)
        blocks: list[nn.Module] = []
        for i, (in_dim, out_dim) in enumerate(zip(dims[:-1], dims[1:])):
            for _ in range(cfg.num_res_blocks):
                blocks.append(ResidualBlock(in_dim, out_dim))
                in_dim = out_dim
            if i != len(cfg.dim_mult) - 1:
                blocks.append(Resample(out_dim, "downsample3d" if cfg.temporal_downsample[i] else "downsample2d"))
        self.downsamples = nn.Sequential(*blocks)
        self.middle = nn.Sequential(ResidualBlock(dims[-1], dims[-1]), AttentionBlock(dims[-1]),
                                    ResidualBlock(dims[-1], dims[-1]))
        self.head = nn.Sequential(RMSNorm(dims[-1], images=False), nn.SiLU(),
                                  CausalConv3d(dims[-1], 2 * cfg.z_dim, 3, padding=1))

    def blocks(self) -> list[nn.Module]:
        return [*self.downsamples, *self.middle]

    def forward(self, x: torch.Tensor, state: State) -> torch.Tensor:
        return _run_coder(self, x, state)


class Decoder3d(nn.Module):
    def __init__(self, cfg: WanVAEConfig, decode_mode: DecodeMode):
        super().__init__()
        mult = cfg.dim_mult
        dims = [cfg.dim * m for m in (mult[-1], *mult[::-1])]
        temporal_upsample = cfg.temporal_downsample[::-1]
        self.conv1 = CausalConv3d(cfg.z_dim, dims[0], 3, padding=1)
        self.middle = nn.Sequential(ResidualBlock(dims[0], dims[0]), AttentionBlock(dims[0]),
                                    ResidualBlock(dims[0], dims[0]))
        blocks: list[nn.Module] = []
        for i, (in_dim, out_dim) in enumerate(zip(dims[:-1], dims[1:])):
            if i > 0:  # the previous upsampler halved the channels
                in_dim //= 2
            for _ in range(cfg.num_res_blocks + 1):
                blocks.append(ResidualBlock(in_dim, out_dim))
                in_dim = out_dim
            if i != len(mult) - 1:
                mode = "upsample3d" if temporal_upsample[i] else "upsample2d"
                blocks.append(Resample(out_dim, mode, decode_mode))
        self.upsamples = nn.Sequential(*blocks)
        self.head = nn.Sequential(RMSNorm(dims[-1], images=False), nn.SiLU(),
                                  CausalConv3d(dims[-1], 3, 3, padding=1))

    def blocks(self) -> list[nn.Module]:
        return [*self.middle, *self.upsamples]

    def forward(self, x: torch.Tensor, state: State) -> torch.Tensor:
        return _run_coder(self, x, state)


class WanVAE(nn.Module):
    """Wan2.1 VAE with Wan's state-dict key names (``encoder.*``, ``conv1``, ``conv2``, ``decoder.*``)."""

    def __init__(self, config: WanVAEConfig = WanVAEConfig(), decode_mode: DecodeMode = "inspatio"):
        super().__init__()
        if decode_mode not in DECODE_MODES:
            raise ValueError(f"decode_mode must be one of {DECODE_MODES}, got {decode_mode!r}")
        self.config = config
        self.decode_mode = decode_mode
        self.encoder = Encoder3d(config)
        self.conv1 = CausalConv3d(2 * config.z_dim, 2 * config.z_dim, 1)
        self.conv2 = CausalConv3d(config.z_dim, config.z_dim, 1)
        self.decoder = Decoder3d(config, decode_mode)

    # ---- loading -------------------------------------------------------------------------------
    @classmethod
    def from_state_dict(cls, state_dict: Mapping[str, torch.Tensor], decode_mode: DecodeMode = "inspatio",
                        source: str | Path = "state dict") -> "WanVAE":
        """Strictly load a Wan2.1 VAE state dict (keys as in ``Wan2.1_VAE.pth``); config from its shapes."""
        check_state_dict(state_dict, load_manifest("vae"), source, check_shapes=False)
        config = WanVAEConfig.from_state_dict(state_dict)
        with torch.device("meta"):
            model = cls(config, decode_mode)
        check_state_dict(state_dict, model_shapes(model), source)
        model.load_state_dict(state_dict, strict=True, assign=True)
        return model.eval().requires_grad_(False)

    @classmethod
    def from_checkpoint(cls, path: str | Path, decode_mode: DecodeMode = "inspatio",
                        device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> "WanVAE":
        """Load ``Wan2.1_VAE.pth`` (or a ``.safetensors`` with the same keys)."""
        state_dict = read_state_dict(path, "VAE checkpoint", "download Wan2.1_VAE.pth, see docs/models.md, 'Weights'")
        return cls.from_state_dict(state_dict, decode_mode, source=path).to(device=device, dtype=dtype)

    # ---- latent normalisation --------------------------------------------------------------------
    def _scale(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean, 1/std)`` shaped ``[1, C, 1, 1, 1]`` in ``like``'s dtype (the reference's arithmetic)."""
        mean = torch.tensor(LATENT_MEAN, dtype=torch.float32)
        inv_std = 1.0 / torch.tensor(LATENT_STD, dtype=torch.float32)
        shape = (1, -1, 1, 1, 1)
        return (mean.to(like.device, like.dtype).view(shape), inv_std.to(like.device, like.dtype).view(shape))

    # ---- encode / decode -------------------------------------------------------------------------
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """``[B, 3, T, H, W]`` in [-1, 1] -> normalised latents ``[B, 1 + (T-1)//4, 16, H/8, W/8]``."""
        return self.stream_encoder().push(video)  # leftover frames of an incomplete chunk are dropped

    def stream_encoder(self) -> "WanVAEStreamEncoder":
        """An encoder that takes pixel frames in order, any number per push; memory does not grow with
        the video's length and the concatenated outputs equal one :meth:`encode`."""
        return WanVAEStreamEncoder(self)

    def stream_decoder(self) -> "WanVAEStreamDecoder":
        """A decoder that takes latent blocks in order; concatenated outputs equal one :meth:`decode`."""
        return WanVAEStreamDecoder(self)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """``[B, T_lat, 16, h, w]`` normalised latents -> ``[B, 3, 4*T_lat - 3, 8h, 8w]`` in [-1, 1] (float32)."""
        return self.stream_decoder().push(latents)


class WanVAEStreamEncoder:
    """Streaming Wan VAE encode: frame 0 alone, then chunks of 4, with the causal caches kept between
    :meth:`push` calls. Frames of an incomplete chunk wait for the next push (at most 3 are held)."""

    def __init__(self, vae: WanVAE):
        self.vae = vae
        self.state: State = {}
        self.pending: torch.Tensor | None = None
        self.latents = 0  # latent frames produced so far
        self._empty: torch.Tensor | None = None

    @torch.no_grad()
    def push(self, video: torch.Tensor) -> torch.Tensor:
        """Next ``[B, 3, t, H, W]`` pixel frames in [-1, 1] -> the latents ``[B, t', 16, H/8, W/8]`` they complete."""
        if video.ndim != 5 or video.shape[1] != 3:
            raise ValueError(f"WanVAE encode expects [B, 3, T, H, W], got {list(video.shape)}")
        vae = self.vae
        param = vae.conv1.weight
        video = video.to(param.device, param.dtype)
        if self.pending is not None:
            video = torch.cat([self.pending, video], dim=2)
        mus, start = [], 0
        while True:
            need = 1 if self.latents == 0 else TEMPORAL_STRIDE
            if video.shape[2] - start < need:
                break
            chunk = video[:, :, start:start + need]
            mus.append(vae.conv1.causal(vae.encoder(chunk, self.state), None)[:, :vae.config.z_dim])
            start += need
            self.latents += 1
        self.pending = video[:, :, start:].clone() if start < video.shape[2] else None
        b, _, _, h, w = video.shape
        self._empty = video.new_zeros(b, 0, vae.config.z_dim, h // SPATIAL_STRIDE, w // SPATIAL_STRIDE)
        if not mus:
            return self._empty
        mu = torch.cat(mus, dim=2)
        mean, inv_std = vae._scale(mu)
        return ((mu - mean) * inv_std).transpose(1, 2)

    def flush(self) -> torch.Tensor:
        """End of the video: the frames of an incomplete chunk are dropped, so no latents follow
        (``[B, 0, 16, h, w]``; the same interface as TAEHV's stream encoder)."""
        if self._empty is None:
            raise ValueError("flush() before any push")
        self.pending = None
        return self._empty

class WanVAEStreamDecoder:
    """Streaming Wan VAE decode: the causal caches persist between :meth:`push` calls (flat memory).

    The first pushed latent frame gives 1 pixel frame, every later one gives 4.
    """

    def __init__(self, vae: WanVAE):
        self.vae = vae
        self.state: State = {}

    @torch.no_grad()
    def push(self, latents: torch.Tensor) -> torch.Tensor:
        """Decode the next ``[B, t, 16, h, w]`` latent frames -> ``[B, 3, t', 8h, 8w]`` float32 in [-1, 1]."""
        vae = self.vae
        if latents.ndim != 5 or latents.shape[2] != vae.config.z_dim:
            raise ValueError(f"expected latents [B, T, {vae.config.z_dim}, h, w], got {list(latents.shape)}")
        param = vae.conv2.weight
        z = latents.to(param.device, param.dtype).transpose(1, 2)
        mean, inv_std = vae._scale(z)
        out = []
        for i in range(z.shape[2]):
            frame = vae.conv2.causal(z[:, :, i:i + 1] / inv_std + mean, None)
            out.append(vae.decoder(frame, self.state).float().clamp_(-1, 1))
        return torch.cat(out, dim=2)
