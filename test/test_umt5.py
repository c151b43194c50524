"""umT5 text encoder: fixture parity, strict loading, full-size layout, the TextEncoder.from_dir path."""

from __future__ import annotations

import json
import shutil
import weakref
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from models.manifest import CheckpointError, load_manifest, model_shapes
from models.umt5 import (
    CHECKPOINT_NAME,
    TOKENIZER_SUBDIR,
    TextEncoder,
    UMT5Config,
    UMT5Encoder,
    clean_prompt,
    relative_position_buckets,
)

ASSETS = Path(__file__).parent / "assets"
TINY = UMT5Config(vocab=1000, dim=64, dim_attn=64, dim_ffn=96, num_heads=4, num_layers=2)


def _fixture(shared_dir: Path):
    f = safe_open(str(shared_dir / "fixtures" / "umt5_encoder_tiny.safetensors"), "pt")
    cfg = UMT5Config.from_dict(json.loads(f.metadata()["config"]))
    sd = {k[len("sd."):]: f.get_tensor(k) for k in f.keys() if k.startswith("sd.")}
    return f, cfg, sd


def _random_sd(cfg: UMT5Config = TINY, seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    model = UMT5Encoder(cfg)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.3)
    return model.state_dict()


def test_fixture_parity(shared_dir):
    f, cfg, sd = _fixture(shared_dir)
    model = UMT5Encoder.from_state_dict(sd, cfg, dtype=torch.float32)
    out = model(f.get_tensor("in.ids"), f.get_tensor("in.mask"))
    torch.testing.assert_close(out, f.get_tensor("out.hidden"), atol=1e-5, rtol=0)


def test_full_size_layout_matches_manifest():
    with torch.device("meta"):
        model = UMT5Encoder()
    manifest = load_manifest("umt5")
    assert len(manifest) == 242
    assert model_shapes(model) == manifest


def test_strict_loading_names_first_problem():
    sd = _random_sd()
    missing = {k: v for k, v in sd.items() if k != "blocks.1.attn.k.weight"}
    with pytest.raises(CheckpointError, match="blocks.1.attn.k.weight"):
        UMT5Encoder.from_state_dict(missing, TINY)
    with pytest.raises(CheckpointError, match="unexpected.*'extra.weight'"):
        UMT5Encoder.from_state_dict({**sd, "extra.weight": torch.zeros(1)}, TINY)
    bad = dict(sd, **{"norm.weight": torch.ones(65)})
    with pytest.raises(CheckpointError, match=r"'norm.weight' has shape \[65\], expected \[64\]"):
        UMT5Encoder.from_state_dict(bad, TINY)
    full = {k: torch.empty(shape, device="meta") for k, shape in load_manifest("umt5").items()}
    del full["blocks.23.attn.o.weight"]  # a full-size file is checked against the official manifest
    with pytest.raises(CheckpointError, match="missing, first: 'blocks.23.attn.o.weight'"):
        UMT5Encoder.from_state_dict(full)


def test_relative_position_buckets_known_values():
    b = relative_position_buckets(300, num_buckets=32, max_distance=128)
    rel = lambda q, k: int(b[q, k])  # noqa: E731  bucket of key_pos - query_pos = k - q
    assert rel(5, 5) == 0
    assert [rel(10, 10 - d) for d in range(8)] == list(range(8))  # exact region, looking back
    assert [rel(10, 10 + d) for d in range(1, 8)] == [16 + d for d in range(1, 8)]  # looking forward: + 16
    assert rel(0, 8) == 16 + 8 and rel(8, 0) == 8  # first logarithmic bucket
    assert rel(0, 127) == 31 and rel(0, 299) == 31 and rel(299, 0) == 15  # clipped at max_distance
    # logarithmic region: floor(8 + log(d/8)/log(16)*8), e.g. d = 32 → 12, d = 64 → 14
    assert rel(100, 132) == 16 + 12 and rel(100, 36) == 14


def _wan_dir(tmp_path: Path, sd: dict, dtype=torch.bfloat16) -> Path:
    wan = tmp_path / "Wan2.1-T2V-1.3B"
    shutil.copytree(ASSETS / "tiny_umt5_tokenizer", wan / TOKENIZER_SUBDIR)
    torch.save({k: v.to(dtype) for k, v in sd.items()}, wan / CHECKPOINT_NAME)
    return wan


def test_from_dir_encode_zeroes_padding_and_matches_unpadded(tmp_path):
    sd = _random_sd()
    enc = TextEncoder.from_dir(_wan_dir(tmp_path, sd), device="cpu", dtype=torch.float32)
    assert enc.model.config == TINY  # sizes read off the checkpoint
    # bf16 file → fp32 module holding exactly the bf16 values
    w = enc.model.blocks[0].attn.q.weight
    assert w.dtype == torch.float32
    torch.testing.assert_close(w, sd["blocks.0.attn.q.weight"].to(torch.bfloat16).float(), atol=0, rtol=0)

    prompts = ["A red car drives along a wet street at night.", "A dog  runs &amp; a cup."]
    out = enc.encode(prompts)
    assert out.shape == (2, 512, 64) and out.dtype == torch.float32
    ids, mask = enc.tokenize(prompts)
    lengths = mask.sum(1).tolist()
    assert lengths[0] != lengths[1]
    for i, n in enumerate(lengths):
        assert ids[i, n - 1] == enc.tokenizer.eos_token_id and (ids[i, n:] == enc.tokenizer.pad_token_id).all()
        assert (out[i, n:] == 0).all() and (out[i, :n].abs().sum(-1) > 0).all()
        alone = enc.model(ids[i:i + 1, :n])  # the same prompt without padding or mask
        torch.testing.assert_close(out[i, :n], alone[0], atol=1e-5, rtol=1e-5)


def test_truncation_keeps_end_token(tmp_path):
    enc = TextEncoder.from_dir(_wan_dir(tmp_path, _random_sd()), dtype=torch.float32, text_len=16)
    ids, mask = enc.tokenize(["The camera slowly orbits a wooden table with a cup of coffee. " * 4])
    assert ids.shape == (1, 16) and mask.all() and ids[0, -1] == enc.tokenizer.eos_token_id


def test_bf16_close_to_fp32(tmp_path):
    wan = _wan_dir(tmp_path, _random_sd())
    prompts = ["Two people walk past a shop window in the city."]
    ref = TextEncoder.from_dir(wan, dtype=torch.float32).encode(prompts)
    half = TextEncoder.from_dir(wan, dtype=torch.bfloat16).encode(prompts)
    assert half.dtype == torch.bfloat16
    err = (half.float() - ref).norm() / ref.norm()
    assert err < 0.02


def test_release_frees_weights(tmp_path):
    enc = TextEncoder.from_dir(_wan_dir(tmp_path, _random_sd()), dtype=torch.float32)
    ref = weakref.ref(enc.model)
    enc.release()
    assert ref() is None
    with pytest.raises(RuntimeError, match="after release"):
        enc.encode(["x"])


def test_missing_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="google/umt5-xxl"):
        TextEncoder.from_dir(tmp_path)
    shutil.copytree(ASSETS / "tiny_umt5_tokenizer", tmp_path / TOKENIZER_SUBDIR)
    with pytest.raises(CheckpointError, match=CHECKPOINT_NAME):
        TextEncoder.from_dir(tmp_path)


def test_clean_prompt():
    assert clean_prompt("  a\n\tb &amp;amp; c  ") == "a b & c"


def test_config_read_off_checkpoint_and_full_size_checked_against_manifest():
    assert UMT5Config.from_state_dict(_random_sd()) == TINY
    from models.manifest import load_manifest

    full = {k: torch.empty(shape, device="meta") for k, shape in load_manifest("umt5").items()}
    assert UMT5Config.from_state_dict(full) == UMT5Config()
    with pytest.raises(CheckpointError, match="token_embedding"):
        UMT5Config.from_state_dict({k: v for k, v in full.items() if k != "token_embedding.weight"})
