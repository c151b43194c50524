"""Wan VAE: full-size layout, strict loading, parity with the reference fixture, streaming decode."""

from __future__ import annotations

import pytest
import torch

from codec_checks import assert_stream_equals_decode, assert_stream_equals_encode
from safetensors.torch import load_file

from models.manifest import CheckpointError, load_manifest, model_shapes
from models.wan_vae import WanVAE, WanVAEConfig

TOL = 1e-5


@pytest.fixture(scope="module")
def fixture(shared_dir):
    return load_file(str(shared_dir / "fixtures" / "wan_vae_tiny.safetensors"))


@pytest.fixture(scope="module")
def state_dict(fixture):
    return {k[len("sd."):]: v for k, v in fixture.items() if k.startswith("sd.")}


@pytest.fixture(scope="module")
def vaes(state_dict):
    return {mode: WanVAE.from_state_dict(state_dict, mode) for mode in ("inspatio", "wan21")}


def test_full_size_layout_equals_manifest():
    with torch.device("meta"):
        model = WanVAE()
    assert model_shapes(model) == load_manifest("vae")


def test_config_from_state_dict(state_dict):
    """The sizes read off the checkpoint build a module with exactly the checkpoint's keys and shapes."""
    with torch.device("meta"):
        model = WanVAE(WanVAEConfig.from_state_dict(state_dict))
    assert model_shapes(model) == {k: tuple(v.shape) for k, v in state_dict.items()}


def test_checkpoint_round_trip_and_strictness(tmp_path, state_dict):
    path = tmp_path / "Wan2.1_VAE.pth"
    torch.save(state_dict, path)
    vae = WanVAE.from_checkpoint(path)
    assert all(torch.equal(v, state_dict[k]) for k, v in vae.state_dict().items())

    missing = dict(state_dict)
    del missing["decoder.head.2.bias"]
    with pytest.raises(CheckpointError, match="decoder.head.2.bias"):
        WanVAE.from_state_dict(missing)
    with pytest.raises(CheckpointError, match="unexpected.*'extra.weight'"):
        WanVAE.from_state_dict({**state_dict, "extra.weight": torch.zeros(1)})
    bad = {**state_dict, "decoder.conv1.bias": torch.zeros(5)}
    with pytest.raises(CheckpointError, match=r"'decoder.conv1.bias' has shape \[5\]"):
        WanVAE.from_state_dict(bad)
    with pytest.raises(CheckpointError, match="not found"):
        WanVAE.from_checkpoint(tmp_path / "absent.pth")
    with pytest.raises(ValueError, match="decode_mode"):
        WanVAE.from_state_dict(state_dict, "other")


@pytest.mark.parametrize("frames", [5, 13])
def test_encode_matches_reference(vaes, fixture, frames):
    latents = vaes["inspatio"].encode(fixture[f"T{frames}.in.pixels_bcthw"])
    expected = fixture[f"T{frames}.out.latent_btchw"]
    assert latents.shape == expected.shape == (1, 1 + (frames - 1) // 4, 16, 4, 4)
    torch.testing.assert_close(latents, expected, atol=TOL, rtol=0)


@pytest.mark.parametrize("frames", [5, 13])
@pytest.mark.parametrize("mode, key", [("inspatio", "decoded_btchw"), ("wan21", "decoded_wan21_official_btchw")])
def test_decode_matches_reference(vaes, fixture, frames, mode, key):
    pixels = vaes[mode].decode(fixture[f"T{frames}.out.latent_btchw"])
    expected = fixture[f"T{frames}.out.{key}"].transpose(1, 2)
    assert pixels.shape == expected.shape == (1, 3, frames, 32, 32)
    torch.testing.assert_close(pixels, expected, atol=TOL, rtol=0)


def test_encode_is_causal_and_drops_leftover_frames(vaes, fixture):
    video = fixture["T13.in.pixels_bcthw"]
    full = vaes["inspatio"].encode(video)
    part = vaes["inspatio"].encode(video[:, :, :12])  # 1 + 4 + 4 used, 3 left over
    assert part.shape[1] == 3
    torch.testing.assert_close(part, full[:, :3], atol=TOL, rtol=0)


@pytest.mark.parametrize("mode", ["inspatio", "wan21"])
def test_stream_decoder_equals_one_decode(vaes, mode):
    latents = torch.randn(1, 5, 16, 4, 4, generator=torch.Generator().manual_seed(0))
    assert vaes[mode].decode(latents).shape[2] == 4 * 5 - 3
    assert_stream_equals_decode(vaes[mode], latents, ([3, 2], [2, 1, 2]))


def test_stream_decoder_matches_reference(vaes, fixture):
    stream = vaes["inspatio"].stream_decoder()
    latents = fixture["T13.out.latent_btchw"]
    pixels = torch.cat([stream.push(latents[:, :3]), stream.push(latents[:, 3:])], dim=2)
    torch.testing.assert_close(pixels, fixture["T13.out.decoded_btchw"].transpose(1, 2), atol=TOL, rtol=0)


def test_stream_encoder_matches_reference_in_any_pieces(vaes, fixture):
    """Frames pushed in pieces of any size (frame 0 alone, then chunks of 4 inside) equal the reference's
    whole-clip encode; frames of an incomplete chunk are held, never encoded early, and dropped at the end."""
    video, want = fixture["T13.in.pixels_bcthw"], fixture["T13.out.latent_btchw"]
    assert_stream_equals_encode(vaes["inspatio"], video, want, ([13], [1, 4, 4, 4], [3, 2, 5, 3], [1] * 13, [9, 4]), TOL)
    stream = vaes["inspatio"].stream_encoder()
    assert stream.push(video[:, :, :4]).shape[1] == 1 and stream.pending.shape[2] == 3
    assert stream.push(video[:, :, 4:7]).shape[1] == 1 and stream.pending.shape[2] == 2
    assert stream.flush().shape == (1, 0, 16, 4, 4) and stream.pending is None
    with pytest.raises(ValueError, match="before any push"):
        vaes["inspatio"].stream_encoder().flush()
