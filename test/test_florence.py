"""Florence-2 captions: preprocessing, a tiny random model end to end through ``Captioner.from_dir``, the
original-layout conversion, and the manual captions file."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from models.florence import (
    FLORENCE_TOKENS,
    Captioner,
    CheckpointError,
    ImagePreprocess,
    convert_checkpoint,
    convert_state_dict,
    image_token_count,
    load_captions_file,
    lookup_caption,
    middle_index,
)

transformers = pytest.importorskip("transformers")
ASSETS = Path(__file__).parent / "assets"
PREPROCESSOR = {  # the Florence-2 preprocessor_config.json fields the captioner reads
    "image_processor_type": "CLIPImageProcessor", "do_resize": True, "size": {"height": 768, "width": 768},
    "resample": 3, "do_center_crop": False, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
    "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225],
}
SMALL = dict(PREPROCESSOR, size={"height": 256, "width": 256})  # tiny-model folders: 8×8 + 1 image tokens
VISION = dict(embed_dim=[8, 16, 16, 32], num_heads=[1, 2, 2, 4], num_groups=[1, 2, 2, 4], depths=[1, 1, 1, 1],
              projection_dim=32, drop_path_rate=0.0)
TEXT = dict(d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
            encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=1024, bos_token_id=0, pad_token_id=1,
            eos_token_id=2, decoder_start_token_id=2, forced_eos_token_id=2)


def _frames(n: int, seed: int = 0, hw=(90, 160)) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (*hw, 3), dtype=np.uint8) for _ in range(n)]


def _tiny_model(vocab_size: int, image_token_id: int, seed: int = 0):
    cfg = transformers.Florence2Config(vision_config=VISION, text_config=dict(TEXT, model_type="bart",
                                                                               vocab_size=vocab_size),
                                       image_token_id=image_token_id)
    torch.manual_seed(seed)
    model = transformers.Florence2ForConditionalGeneration(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(std=0.5)
    return model


@pytest.fixture(scope="module")
def native_dir(tmp_path_factory) -> Path:
    """A tiny native Florence-2 folder: random weights, the tiny BART tokenizer with an <image> token."""
    out = tmp_path_factory.mktemp("florence_native")
    tok = transformers.AutoTokenizer.from_pretrained(ASSETS / "tiny_bart_tokenizer",
                                                     extra_special_tokens={"image_token": "<image>"})
    model = _tiny_model(len(tok), tok.image_token_id)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    (out / "preprocessor_config.json").write_text(json.dumps(SMALL))
    return out


def test_preprocess_matches_clip_image_processor():
    frame = _frames(1, hw=(123, 301))[0]
    ours = ImagePreprocess()([frame])
    oracle = transformers.CLIPImageProcessorPil(
        size={"height": 768, "width": 768}, do_center_crop=False, resample=3,
        image_mean=PREPROCESSOR["image_mean"], image_std=PREPROCESSOR["image_std"])
    ref = oracle(frame, return_tensors="pt")["pixel_values"]
    assert ours.shape == (1, 3, 768, 768)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


def test_preprocess_rejects_bad_frames(tmp_path):
    with pytest.raises(ValueError, match=r"frame 0: expected uint8 \[H,W,3\]"):
        ImagePreprocess()([np.zeros((4, 4), np.uint8)])
    (tmp_path / "p.json").write_text(json.dumps({"size": {"shortest_edge": 768}}))
    with pytest.raises(ValueError, match="p.json.*height and width"):
        ImagePreprocess.from_file(tmp_path / "p.json")


def test_image_token_count_full_size():
    # Florence-2: 768 px → stride 4·2·2·2 = 32 → 24×24 spatial tokens + 1 temporal token
    assert image_token_count(transformers.Florence2VisionConfig(), 768, 768) == 577


def test_middle_index():
    assert [middle_index(n) for n in (1, 2, 49, 50)] == [0, 1, 24, 25]
    with pytest.raises(ValueError):
        middle_index(0)


def test_captioner_end_to_end_batched(native_dir):
    cap = Captioner.from_dir(native_dir, device="cpu", max_new_tokens=6, batch_size=2)
    assert cap.model.dtype == torch.float32
    frames = _frames(3)
    batched = cap.caption(frames)  # two forward passes: 2 + 1 frames
    assert len(batched) == 3 and all(isinstance(c, str) for c in batched)
    assert any(batched) and not any(re.search(r"</?s>|<pad>|<image>", c) for c in batched)
    assert cap.caption(frames[:1]) == batched[:1]  # batching does not change a caption
    cap.release()
    with pytest.raises(RuntimeError, match="after release"):
        cap.caption(frames)


def test_captioner_rejects_tokenizer_without_image_token(native_dir, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(native_dir, bad)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(ASSETS / "tiny_bart_tokenizer" / f, bad / f)
    with pytest.raises(CheckpointError, match="<image> token"):
        Captioner.from_dir(bad)


# ---------------------------------------------------------------------------------------------------------------
# Original remote-code layout


def _original_key(native: str) -> str:
    """Name of a native key in the original microsoft/Florence-2 checkpoint layout."""
    if native == "lm_head.weight":
        return "language_model.lm_head.weight"
    if native.startswith("model.language_model."):
        return "language_model.model." + native[len("model.language_model."):]
    key = native[len("model."):]
    if key.startswith("multi_modal_projector."):
        key = key[len("multi_modal_projector."):]
        return {"image_projection.weight": "image_projection"}.get(
            key, key.replace("image_position_embed.", "image_pos_embed."))
    key = re.sub(r"^vision_tower\.convs\.(\d+)\.conv\.", r"vision_tower.convs.\1.proj.", key)
    attn = "window_attn" if ".spatial_block." in key else "channel_attn"
    for new, old in ((r"\.(conv[12])\.", r".\1.fn.dw."), (r"\.norm1\.", f".{attn}.norm."),
                     (rf"\.{attn}\.(qkv|proj)\.", rf".{attn}.fn.\1."), (r"\.norm2\.", ".ffn.norm."),
                     (r"\.ffn\.(fc[12])\.", r".ffn.fn.net.\1.")):
        if ".blocks." in key:
            key = re.sub(new, old, key)
    return key


def _original_config(text_vocab: int) -> dict:
    return {
        "model_type": "florence2", "architectures": ["Florence2ForConditionalGeneration"],
        "auto_map": {"AutoModelForCausalLM": "modeling_florence2.Florence2ForConditionalGeneration"},
        "vocab_size": text_vocab, "projection_dim": 32,
        "vision_config": {
            "model_type": "davit", "drop_path_rate": 0.1, "patch_size": [7, 3, 3, 3], "patch_stride": [4, 2, 2, 2],
            "patch_padding": [3, 1, 1, 1], "patch_prenorm": [False, True, True, True], "enable_checkpoint": False,
            "dim_embed": VISION["embed_dim"], "num_heads": VISION["num_heads"], "num_groups": VISION["num_groups"],
            "depths": VISION["depths"], "window_size": 12, "projection_dim": 32,
            "visual_temporal_embedding": {"type": "COSINE", "max_temporal_embeddings": 100},
            "image_pos_embed": {"type": "learned_abs_2d", "max_pos_embeddings": 50},
            "image_feature_source": ["spatial_avg_pool", "temporal_avg_pool"],
        },
        "text_config": dict(TEXT, model_type="florence2_language", vocab_size=text_vocab, no_repeat_ngram_size=3,
                            num_beams=3, forced_bos_token_id=0, scale_embedding=False, dropout=0.1),
    }


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    """(folder in the original layout, the native model holding the same weights)."""
    out = tmp_path_factory.mktemp("florence_original")
    base = transformers.AutoTokenizer.from_pretrained(ASSETS / "tiny_bart_tokenizer")
    text_vocab = len(base) + len(FLORENCE_TOKENS)
    oracle = _tiny_model(text_vocab, image_token_id=0, seed=1)
    sd = {_original_key(k): v.clone() for k, v in oracle.state_dict().items()}
    sd["image_projection"] = sd["image_projection"].t().contiguous()
    sd["language_model.final_logits_bias"] = torch.zeros(1, text_vocab)
    sd["vision_tower.norms.weight"] = torch.ones(VISION["embed_dim"][-1])
    torch.save(sd, out / "pytorch_model.bin")
    base.save_pretrained(out)
    (out / "config.json").write_text(json.dumps(_original_config(text_vocab)))
    (out / "preprocessor_config.json").write_text(json.dumps(dict(SMALL, processor_class="Florence2Processor")))
    return out, oracle


def test_original_layout_loads_with_the_same_numbers(original):
    folder, oracle = original
    cap = Captioner.from_dir(folder, max_new_tokens=6)
    model, n = cap.model, oracle.config.text_config.vocab_size
    assert model.config.text_config.vocab_size % 64 == 0 and model.config.text_config.vocab_size > n
    assert len(cap.tokenizer) == n + 1 and cap.tokenizer.convert_tokens_to_ids("<loc_0>") == n - len(FLORENCE_TOKENS) + 4
    assert model.generation_config.no_repeat_ngram_size == 3
    # never generated: <image> (id n) and the padding rows of the grown embedding
    assert cap._suppressed_ids() == list(range(n, model.config.text_config.vocab_size))
    pixels = cap.preprocess(_frames(2))
    assert pixels.shape == (2, 3, 256, 256)
    with torch.no_grad():
        torch.testing.assert_close(model.get_image_features(pixels).pooler_output,
                                   oracle.get_image_features(pixels).pooler_output, atol=1e-5, rtol=1e-5)
        ids = torch.tensor([[0, 40, 41, 42, 2]])
        dec = torch.tensor([[2, 0, 50]])
        got = model(input_ids=ids, decoder_input_ids=dec).logits
        ref = oracle(input_ids=ids, decoder_input_ids=dec).logits
    torch.testing.assert_close(got[..., :n], ref, atol=1e-5, rtol=1e-5)


def test_convert_cli_writes_native_folder(original, tmp_path):
    folder, _ = original
    from models.florence import main

    main(["convert", str(folder), str(tmp_path / "native")])
    native = tmp_path / "native"
    cfg = json.loads((native / "config.json").read_text())
    assert cfg["text_config"]["model_type"] == "bart" and cfg["vision_config"]["model_type"] == "florence_vision"
    assert json.loads((native / "preprocessor_config.json").read_text())["image_seq_length"] == 65
    frames = _frames(2, seed=3)
    assert Captioner.from_dir(native, max_new_tokens=6).caption(frames) == \
        Captioner.from_dir(folder, max_new_tokens=6).caption(frames)
    with pytest.raises(FileExistsError):
        convert_checkpoint(folder, native)
    assert [p.name for p in tmp_path.iterdir()] == ["native"]  # no temporary folder left behind


def test_convert_state_dict_errors():
    base = {"language_model.model.shared.weight": torch.zeros(4, 2)}
    with pytest.raises(CheckpointError, match="unexpected key 'vision_tower.mystery'"):
        convert_state_dict({**base, "vision_tower.mystery": torch.zeros(1)}, 8)
    with pytest.raises(CheckpointError, match="final_logits_bias"):
        convert_state_dict({**base, "language_model.final_logits_bias": torch.ones(1, 4)}, 8)
    with pytest.raises(CheckpointError, match="tied"):
        convert_state_dict({**base, "language_model.lm_head.weight": torch.ones(4, 2)}, 8)
    out = convert_state_dict(base, 8)
    assert out["lm_head.weight"].shape == (8, 2) and out["lm_head.weight"] is out["model.language_model.shared.weight"]


# ---------------------------------------------------------------------------------------------------------------
# Manual captions


def test_load_captions_file(tmp_path):
    p = tmp_path / "captions.json"
    p.write_text(json.dumps({"clip.mp4": "  A red car.  ", "other": "A dog."}))
    caps = load_captions_file(p)
    assert caps == {"clip.mp4": "A red car.", "other": "A dog."}
    assert lookup_caption(caps, "/videos/clip.mp4") == "A red car."
    assert lookup_caption(caps, "other.mov") == "A dog."
    assert lookup_caption(caps, "missing.mp4") is None


@pytest.mark.parametrize("text, match", [
    ('{"a.mp4": "x",}', r"captions.json: not valid JSON \(line 1, column"),
    ('["a caption"]', "expected a JSON object.*got list"),
    ('{"a.mp4": ""}', "caption for 'a.mp4' must be a non-empty string"),
    ('{"a.mp4": 3}', "caption for 'a.mp4' must be a non-empty string"),
])
def test_load_captions_file_errors(tmp_path, text, match):
    p = tmp_path / "captions.json"
    p.write_text(text)
    with pytest.raises(ValueError, match=match):
        load_captions_file(p)
    with pytest.raises(ValueError, match="not found"):
        load_captions_file(tmp_path / "nope.json")
