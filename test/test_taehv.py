"""TAEHV: checkpoint layout, strict loading, frame rules, conventions, streaming, and a per-frame oracle."""

from __future__ import annotations

import math

import pytest
import torch

from codec_checks import assert_stream_equals_decode, assert_stream_equals_encode

from models.manifest import CheckpointError, load_manifest, model_shapes
from models.taehv import TAEHV, MemBlock, TGrow, TPool


@pytest.fixture(scope="module")
def tae():
    torch.manual_seed(0)
    model = TAEHV().double().eval().requires_grad_(False)
    for p in model.parameters():  # larger than the default init so every layer matters
        p.mul_(1.5)
    return model


def per_frame_oracle(layers, frames: list[torch.Tensor]) -> list[torch.Tensor]:
    """Reference semantics written frame by frame: a MemBlock sees its previous input frame (zeros at
    first); TPool concatenates ``stride`` consecutive frames on channels; TGrow splits channel blocks."""
    for layer in layers:
        if isinstance(layer, MemBlock):
            past = [torch.zeros_like(frames[0])] + frames[:-1]
            frames = [layer(f, p) for f, p in zip(frames, past)]
        elif isinstance(layer, TPool):
            s = layer.stride
            frames = [layer.conv(torch.cat(frames[i:i + s], dim=1)) for i in range(0, len(frames), s)]
        elif isinstance(layer, TGrow):
            frames = [part for f in frames for part in layer.conv(f).chunk(layer.stride, dim=1)]
        else:
            frames = [layer(f.clone()) for f in frames]
    return frames


def test_manifest_matches_module_and_parameter_count():
    with torch.device("meta"):
        model = TAEHV()
    assert model_shapes(model) == load_manifest("taehv")
    assert len(load_manifest("taehv")) == 128
    assert sum(p.numel() for p in model.parameters()) == 11_315_539  # the published ~11.3M


def test_checkpoint_round_trip_and_strictness(tmp_path):
    sd = {k: v.half() for k, v in TAEHV().state_dict().items()}
    path = tmp_path / "taew2_1.pth"
    torch.save(sd, path)
    tae = TAEHV.from_checkpoint(path, dtype=torch.float16)
    assert all(torch.equal(v, sd[k]) for k, v in tae.state_dict().items())
    del sd["decoder.22.bias"]
    with pytest.raises(CheckpointError, match="decoder.22.bias"):
        TAEHV.from_state_dict(sd)
    with pytest.raises(CheckpointError, match="not found"):
        TAEHV.from_checkpoint(tmp_path / "absent.pth")


def test_encoder_and_decoder_match_per_frame_oracle(tae):
    frames = torch.rand(2, 8, 3, 16, 24, dtype=torch.float64)
    latents = tae.encode_video(frames)
    expected = torch.stack(per_frame_oracle(tae.encoder, list(frames.unbind(1))), dim=1)
    torch.testing.assert_close(latents, expected, atol=1e-12, rtol=0)

    decoded = tae.decode_video(latents)
    raw = torch.stack(per_frame_oracle(tae.decoder, list(latents.unbind(1))), dim=1)
    torch.testing.assert_close(decoded, raw.clamp(0, 1)[:, 3:], atol=1e-12, rtol=0)


@pytest.mark.parametrize("frames", [1, 4, 5, 10])
def test_frame_rules(tae, frames):
    video = torch.rand(1, frames, 3, 16, 16, dtype=torch.float64)
    latents = tae.encode_video(video)
    assert latents.shape == (1, math.ceil(frames / 4), 16, 2, 2)
    padded = torch.cat([video] + [video[:, -1:]] * (-frames % 4), dim=1)
    assert torch.equal(tae.encode_video(padded), latents)
    assert tae.decode_video(latents).shape == (1, 4 * latents.shape[1] - 3, 3, 16, 16)


def test_wan_conventions(tae):
    video = torch.rand(1, 3, 8, 16, 16, dtype=torch.float64) * 2 - 1
    latents = tae.encode(video)
    assert torch.equal(latents, tae.encode_video((video.transpose(1, 2) + 1) / 2))
    pixels = tae.decode(latents)
    assert pixels.shape == (1, 3, 5, 16, 16) and pixels.dtype == torch.float32
    torch.testing.assert_close(pixels, (tae.decode_video(latents) * 2 - 1).transpose(1, 2).float())


def test_stream_decoder_equals_one_decode(tae):
    latents = torch.randn(1, 7, 16, 2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert_stream_equals_decode(tae, latents, ([3, 3, 1], [1] * 7, [7]))


@pytest.mark.parametrize("frames", [8, 10])
def test_stream_encoder_equals_one_encode(tae, frames):
    """Pieces of any size, then flush (which completes the last group with copies of the last frame)."""
    video = torch.rand(1, 3, frames, 16, 24, dtype=torch.float64, generator=torch.Generator().manual_seed(2)) * 2 - 1
    want = tae.encode(video)
    assert want.shape[1] == math.ceil(frames / 4)
    splits = ([frames], [1] * frames, [3, 5, frames - 8], [4, frames - 4])
    assert_stream_equals_encode(tae, video, want, splits, atol=1e-12)
