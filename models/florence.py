"""Florence-2 captions (pipeline step 1) through ``transformers``' native Florence-2 classes.

Reference behaviour: task ``<MORE_DETAILED_CAPTION>`` on the middle frame of each video, greedy decoding,
``max_new_tokens=1024``, fp16 on CUDA / fp32 on CPU, post-processed text (``<s>``/``</s>``/padding removed,
stripped). Several frames are captioned per forward pass.

Two folder layouts load:
- native (``transformers`` ``Florence2ForConditionalGeneration``: ``config.json`` with a ``bart`` text config,
  tokenizer with an ``<image>`` token), e.g. a folder written by ``python -m models.florence convert``;
- the original remote-code layout of ``microsoft/Florence-2-large`` (``davit`` vision config,
  ``florence2_language`` text config, keys ``vision_tower.*``/``image_projection``/``language_model.*``). The
  native classes cannot read it, so it is converted in memory on every load; ``python -m models.florence
  convert SRC DST`` does that once and saves a native folder that loads faster.

Images are preprocessed here (PIL bicubic resize to the processor's size, 768×768 for Florence-2, ×1/255,
ImageNet mean/std), as the original ``CLIPImageProcessor`` did; no torchvision is needed.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
from PIL import Image

from models.manifest import CheckpointError, check_state_dict, model_shapes

TASK = "<MORE_DETAILED_CAPTION>"
TASK_PROMPTS = {
    "<CAPTION>": "What does the image describe?",
    "<DETAILED_CAPTION>": "Describe in detail what is shown in the image.",
    "<MORE_DETAILED_CAPTION>": "Describe with a paragraph what is shown in the image.",
}
IMAGE_TOKEN = "<image>"
# Tokens the original Florence-2 processor adds to the BART vocabulary at run time (ids 50265..51288, in order).
FLORENCE_TOKENS = (
    ["<od>", "</od>", "<ocr>", "</ocr>"]
    + [f"<loc_{i}>" for i in range(1000)]
    + ["<cap>", "</cap>", "<ncap>", "</ncap>", "<dcap>", "</dcap>", "<grounding>", "</grounding>", "<seg>", "</seg>",
       "<sep>", "<region_cap>", "</region_cap>", "<region_to_desciption>", "</region_to_desciption>", "<proposal>",
       "</proposal>", "<poly>", "</poly>", "<and>"]
)
# Generation settings of the original text config that its language model used when generating.
_GENERATION_KEYS = ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id", "forced_bos_token_id",
                    "forced_eos_token_id", "no_repeat_ngram_size", "early_stopping", "length_penalty", "min_length")
_TIED_TEXT_KEYS = ("model.language_model.encoder.embed_tokens.weight", "model.language_model.decoder.embed_tokens.weight",
                   "lm_head.weight")
_SHARED_KEY = "model.language_model.shared.weight"


def middle_index(num_frames: int) -> int:
    """Index of the frame a video is captioned from (``num_frames // 2``)."""
    if num_frames < 1:
        raise ValueError("cannot caption a video with no frames")
    return num_frames // 2


# ----------------------------------------------------------------------------------------------------------------
# Image preprocessing


@dataclass(frozen=True)
class ImagePreprocess:
    """uint8 RGB frames [H,W,3] → ``pixel_values`` float32 [B,3,height,width]: PIL resize (``resample`` is a
    PIL filter id, 3 = bicubic), × ``rescale``, ``(x − mean) / std`` per channel."""

    height: int = 768
    width: int = 768
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    rescale: float = 1 / 255
    resample: int = 3

    @classmethod
    def from_file(cls, path: Path) -> "ImagePreprocess":
        """Read ``preprocessor_config.json`` (CLIP image processor fields); a missing file gives the defaults."""
        if not path.is_file():
            return cls()
        cfg = json.loads(path.read_text())
        size = cfg.get("size", {})
        if not {"height", "width"} <= set(size):
            raise ValueError(f"{path}: 'size' must give height and width (Florence-2 resizes to a fixed size)")
        if cfg.get("do_center_crop", False):
            raise ValueError(f"{path}: do_center_crop=true is not supported (Florence-2 does not crop)")
        return cls(height=int(size["height"]), width=int(size["width"]),
                   mean=tuple(cfg.get("image_mean", cls.mean)), std=tuple(cfg.get("image_std", cls.std)),
                   rescale=float(cfg.get("rescale_factor", cls.rescale)), resample=int(cfg.get("resample", 3)))

    def __call__(self, frames: Sequence[np.ndarray]) -> torch.Tensor:
        out = []
        for i, frame in enumerate(frames):
            if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
                raise ValueError(f"frame {i}: expected uint8 [H,W,3] RGB, got {frame.dtype} {list(frame.shape)}")
            img = Image.fromarray(frame).resize((self.width, self.height), resample=self.resample)
            x = np.asarray(img, dtype=np.float32) * np.float32(self.rescale)
            x = (x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
            out.append(torch.from_numpy(x).permute(2, 0, 1))
        return torch.stack(out)


def image_token_count(vision_config, height: int, width: int) -> int:
    """Visual tokens the projector emits: the last stage's h·w spatial tokens plus one temporal token."""
    for k, s, p in zip(vision_config.patch_size, vision_config.patch_stride, vision_config.patch_padding):
        height = (height + 2 * p - k) // s + 1
        width = (width + 2 * p - k) // s + 1
    return height * width + 1


# ----------------------------------------------------------------------------------------------------------------
# Original remote-code layout → native layout


def is_original_layout(config: Mapping) -> bool:
    """True for the remote-code ``microsoft/Florence-2-*`` config (``davit`` vision / ``florence2_language`` text)."""
    return (config.get("vision_config", {}).get("model_type") == "davit"
            or config.get("text_config", {}).get("model_type") == "florence2_language")


_BLOCK = r"vision_tower\.(blocks\.\d+\.\d+\.(?:spatial|channel)_block)\."
_PARAM = r"(weight|bias)"
_KEY_RULES = [
    (rf"vision_tower\.convs\.(\d+)\.proj\.{_PARAM}", r"model.vision_tower.convs.\1.conv.\2"),
    (rf"vision_tower\.convs\.(\d+)\.norm\.{_PARAM}", r"model.vision_tower.convs.\1.norm.\2"),
    (rf"{_BLOCK}(conv[12])\.fn\.dw\.{_PARAM}", r"model.vision_tower.\1.\2.\3"),
    (rf"{_BLOCK}(?:window_attn|channel_attn)\.norm\.{_PARAM}", r"model.vision_tower.\1.norm1.\2"),
    (rf"{_BLOCK}(window_attn|channel_attn)\.fn\.(qkv|proj)\.{_PARAM}", r"model.vision_tower.\1.\2.\3.\4"),
    (rf"{_BLOCK}ffn\.norm\.{_PARAM}", r"model.vision_tower.\1.norm2.\2"),
    (rf"{_BLOCK}ffn\.fn\.net\.(fc[12])\.{_PARAM}", r"model.vision_tower.\1.ffn.\2.\3"),
    (r"image_projection", r"model.multi_modal_projector.image_projection.weight"),
    (rf"image_proj_norm\.{_PARAM}", r"model.multi_modal_projector.image_proj_norm.\1"),
    (r"image_pos_embed\.(row|column)_embeddings\.weight",
     r"model.multi_modal_projector.image_position_embed.\1_embeddings.weight"),
    (r"visual_temporal_embed\.pos_idx_to_embed", r"model.multi_modal_projector.visual_temporal_embed.pos_idx_to_embed"),
    (r"language_model\.model\.(.+)", r"model.language_model.\1"),
    (r"language_model\.lm_head\.weight", r"lm_head.weight"),
]
# Keys of the original file that captioning never uses (DaViT classification norm/head).
_UNUSED = re.compile(r"vision_tower\.(norms|head)\..+")


def convert_config(original: Mapping, vocab_size: int, image_token_id: int):
    """Native ``Florence2Config`` from an original remote-code config dict (text vocabulary grown to
    ``vocab_size`` for the ``<image>`` token)."""
    from transformers import BartConfig, Florence2Config

    v = original["vision_config"]
    if v.get("image_feature_source", ["spatial_avg_pool", "temporal_avg_pool"]) != ["spatial_avg_pool", "temporal_avg_pool"]:
        raise ValueError(f"vision_config.image_feature_source={v['image_feature_source']} is not supported")
    vision = dict(
        embed_dim=list(v["dim_embed"]), num_heads=list(v["num_heads"]), num_groups=list(v["num_groups"]),
        depths=list(v["depths"]), patch_size=list(v["patch_size"]), patch_stride=list(v["patch_stride"]),
        patch_padding=list(v["patch_padding"]), patch_prenorm=list(v["patch_prenorm"]),
        window_size=v["window_size"], projection_dim=v["projection_dim"], drop_path_rate=0.0,
        max_temporal_embeddings=v["visual_temporal_embedding"]["max_temporal_embeddings"],
        max_position_embeddings=v["image_pos_embed"]["max_pos_embeddings"],
    )
    bart_fields = set(BartConfig().to_dict())
    text = {k: val for k, val in original["text_config"].items() if k in bart_fields}
    text.update(model_type="bart", vocab_size=vocab_size)
    return Florence2Config(text_config=text, vision_config=vision, image_token_id=image_token_id)


def convert_generation_config(original: Mapping):
    """The generation settings the original language model used (from its text config)."""
    from transformers import GenerationConfig

    t = original["text_config"]
    return GenerationConfig(**{k: t[k] for k in _GENERATION_KEYS if k in t and t[k] is not None})


def convert_state_dict(sd: Mapping[str, torch.Tensor], vocab_size: int, source: str = "checkpoint") -> dict:
    """Rename original keys to native ones, transpose ``image_projection``, grow the tied text embedding to
    ``vocab_size`` rows (new rows = mean of the old ones; never generated, see ``Captioner``)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        if _UNUSED.fullmatch(key):
            continue
        if key == "language_model.final_logits_bias":
            if value.count_nonzero():
                raise CheckpointError(f"{source}: non-zero language_model.final_logits_bias is not supported")
            continue
        for pattern, repl in _KEY_RULES:
            if re.fullmatch(pattern, key):
                new = re.sub(pattern, repl, key)
                out[new] = value.t().contiguous() if key == "image_projection" else value
                break
        else:
            raise CheckpointError(f"{source}: unexpected key '{key}' for the original Florence-2 layout")
    if _SHARED_KEY not in out:
        raise CheckpointError(f"{source}: key 'language_model.model.shared.weight' missing")
    shared = out[_SHARED_KEY]
    for key in _TIED_TEXT_KEYS:
        if key in out and not torch.equal(out[key], shared):
            raise CheckpointError(f"{source}: '{key}' differs from the shared text embedding (expected tied)")
    grown = torch.cat([shared, shared.float().mean(0, keepdim=True).to(shared.dtype).expand(vocab_size - len(shared), -1)])
    for key in (_SHARED_KEY, *_TIED_TEXT_KEYS):
        out[key] = grown
    return out


def _read_state_dict(folder: Path) -> dict[str, torch.Tensor]:
    st, pt = folder / "model.safetensors", folder / "pytorch_model.bin"
    if st.is_file():
        from safetensors.torch import load_file

        return load_file(st)
    if pt.is_file():
        return torch.load(pt, map_location="cpu", mmap=True, weights_only=True)
    raise CheckpointError(f"{folder}: no model.safetensors or pytorch_model.bin (see docs/models.md, 'Weights')")


def _native_tokenizer(folder: Path, text_vocab: int):
    """The original tokenizer plus the Florence task/location tokens (ids from 50265 on, when the files lack
    them) and ``<image>`` (id ``text_vocab``), registered as the tokenizer's named ``image_token``."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    missing = [t for t in FLORENCE_TOKENS if t not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_special_tokens({"extra_special_tokens": missing}, replace_extra_special_tokens=False)
    if len(tokenizer) != text_vocab:
        raise CheckpointError(f"{folder}: tokenizer has {len(tokenizer)} tokens with the Florence-2 tokens, but the "
                              f"text model has {text_vocab}; are the tokenizer files from the same checkpoint?")
    with tempfile.TemporaryDirectory() as tmp:  # named extra tokens can only be declared when loading
        tokenizer.save_pretrained(tmp)
        tokenizer = AutoTokenizer.from_pretrained(tmp, extra_special_tokens={"image_token": IMAGE_TOKEN})
    if tokenizer.image_token_id != text_vocab:
        raise CheckpointError(f"{folder}: '{IMAGE_TOKEN}' got id {tokenizer.image_token_id}, expected {text_vocab}")
    return tokenizer


def _padded_vocab(n: int, multiple: int = 64) -> int:
    return int(math.ceil(n / multiple) * multiple)


def convert_original(folder: str | Path):
    """Load an original remote-code Florence-2 folder as native objects: ``(model, tokenizer, preprocess)``
    with the model in the file's dtype on CPU. The tokenizer gains the Florence task/location tokens (when the
    files lack them) and ``<image>``."""
    from transformers import Florence2ForConditionalGeneration

    folder = Path(folder)
    original = json.loads((folder / "config.json").read_text())
    tokenizer = _native_tokenizer(folder, original["text_config"]["vocab_size"])
    image_token_id = tokenizer.image_token_id
    vocab = _padded_vocab(len(tokenizer))

    config = convert_config(original, vocab, image_token_id)
    sd = convert_state_dict(_read_state_dict(folder), vocab, source=str(folder))
    with torch.device("meta"):
        model = Florence2ForConditionalGeneration(config)
    pos_key = "model.multi_modal_projector.visual_temporal_embed.pos_idx_to_embed"
    if pos_key not in sd:  # a non-persistent buffer in some exports: recompute the fixed sinusoid table
        sd[pos_key] = _cosine_table(config.vision_config).to(sd[_SHARED_KEY].dtype)
    check_state_dict(sd, model_shapes(model), source=folder)
    model.load_state_dict(sd, strict=True, assign=True)
    model.tie_weights()
    model.generation_config = convert_generation_config(original)
    return model.eval(), tokenizer, ImagePreprocess.from_file(folder / "preprocessor_config.json")


def _cosine_table(vision_config) -> torch.Tensor:
    from transformers.models.florence2.modeling_florence2 import Florence2VisionPositionalEmbeddingCosine1D as Cos

    n, d = vision_config.max_temporal_embeddings, vision_config.embed_dim[-1]
    sine, cosine = Cos.get_sinusoid_embeddings(max_positions=n, embed_dim=d)
    table = torch.empty(n, d)
    table[:, 0::2], table[:, 1::2] = sine, cosine
    return table


def convert_checkpoint(src: str | Path, dst: str | Path) -> Path:
    """One-time conversion of an original Florence-2 folder into a native folder ``dst`` (written beside it
    under a temporary name and renamed into place when complete; ``dst`` must not exist)."""
    src, dst = Path(src), Path(dst)
    if dst.exists():
        raise FileExistsError(f"{dst}: already exists; choose a new output folder")
    model, tokenizer, _ = convert_original(src)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", dir=dst.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if (src / "preprocessor_config.json").is_file():
            pre = json.loads((src / "preprocessor_config.json").read_text())
            pre.pop("processor_class", None)
            pre.update(image_processor_type="CLIPImageProcessor", image_seq_length=image_token_count(
                model.config.vision_config, pre["size"]["height"], pre["size"]["width"]))
            (tmp / "preprocessor_config.json").write_text(json.dumps(pre, indent=2))
        os.replace(tmp, dst)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return dst


# ----------------------------------------------------------------------------------------------------------------
# Captioner


class Captioner:
    """Batched Florence-2 captioning: ``caption(frames) -> list[str]``, one caption per uint8 RGB frame."""

    def __init__(self, model, tokenizer, preprocess: ImagePreprocess, task: str = TASK,
                 max_new_tokens: int = 1024, batch_size: int = 8):
        if task not in TASK_PROMPTS:
            raise ValueError(f"unsupported caption task {task!r}; choose one of {sorted(TASK_PROMPTS)}")
        if getattr(tokenizer, "image_token_id", None) != model.config.image_token_id:
            raise CheckpointError("Florence-2 tokenizer and model disagree on the <image> token id; "
                                  "was the folder converted with 'python -m models.florence convert'?")
        self.model = model
        self.tokenizer = tokenizer
        self.preprocess = preprocess
        self.task = task
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size

    @classmethod
    def from_dir(cls, model_dir: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
                 **kwargs) -> "Captioner":
        """Load a native or original-layout Florence-2 folder (local files only). ``dtype`` defaults to fp16 on
        CUDA and fp32 elsewhere."""
        from transformers import AutoTokenizer, Florence2ForConditionalGeneration

        model_dir, device = Path(model_dir), torch.device(device)
        dtype = dtype or (torch.float16 if device.type == "cuda" else torch.float32)
        config_path = model_dir / "config.json"
        if not config_path.is_file():
            raise FileNotFoundError(f"{config_path}: Florence-2 config not found (see docs/models.md, 'Weights')")
        if is_original_layout(json.loads(config_path.read_text())):
            model, tokenizer, preprocess = convert_original(model_dir)
        else:
            model = Florence2ForConditionalGeneration.from_pretrained(model_dir, dtype=dtype, local_files_only=True)
            tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
            preprocess = ImagePreprocess.from_file(model_dir / "preprocessor_config.json")
        return cls(model.to(device=device, dtype=dtype).eval(), tokenizer, preprocess, **kwargs)

    def _suppressed_ids(self) -> list[int]:
        """Ids greedy decoding must never emit: ``<image>`` and the embedding rows past the tokenizer."""
        return [self.model.config.image_token_id, *range(len(self.tokenizer), self.model.config.text_config.vocab_size)]

    @torch.no_grad()
    def _caption_batch(self, frames: Sequence[np.ndarray]) -> list[str]:
        param = next(self.model.parameters())
        pixels = self.preprocess(frames).to(device=param.device, dtype=param.dtype)
        cfg = self.model.config
        n_img = image_token_count(cfg.vision_config, self.preprocess.height, self.preprocess.width)
        text = self.tokenizer([TASK_PROMPTS[self.task]] * len(frames), add_special_tokens=True,
                              return_tensors="pt").input_ids
        ids = torch.cat([torch.full((len(frames), n_img), cfg.image_token_id), text], dim=1).to(param.device)
        out = self.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values=pixels,
                                  max_new_tokens=self.max_new_tokens, num_beams=1, do_sample=False,
                                  suppress_tokens=self._suppressed_ids())
        pad = self.tokenizer.pad_token_id
        return [self._postprocess(self.tokenizer.decode([t for t in row.tolist() if t != pad],
                                                        skip_special_tokens=False)) for row in out]

    @staticmethod
    def _postprocess(text: str) -> str:
        return text.replace("<s>", "").replace("</s>", "").strip()

    def caption(self, frames: Sequence[np.ndarray]) -> list[str]:
        if self.model is None:
            raise RuntimeError("Captioner.caption called after release(); load it again with Captioner.from_dir")
        out: list[str] = []
        for i in range(0, len(frames), self.batch_size):
            out += self._caption_batch(frames[i:i + self.batch_size])
        return out

    def release(self) -> None:
        """Drop the model (and return cached GPU memory)."""
        device = None if self.model is None else next(self.model.parameters()).device
        self.model = None
        gc.collect()
        if device is not None and device.type == "cuda":
            torch.cuda.empty_cache()


# ----------------------------------------------------------------------------------------------------------------
# Manual captions


def load_captions_file(path: str | Path) -> dict[str, str]:
    """Read a captions file: a JSON object mapping a video's file name (``"clip.mp4"``) or stem (``"clip"``)
    to its caption text. Raises ``ValueError`` naming the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: captions file not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg}); expected an object "
                         'like {"clip.mp4": "A caption."}') from e
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e.reason})") from e
    if not isinstance(data, dict):
        raise ValueError(f'{path}: expected a JSON object {{"video name": "caption", ...}}, got {type(data).__name__}')
    for name, text in data.items():
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"{path}: caption for '{name}' must be a non-empty string")
    return {name: text.strip() for name, text in data.items()}


def lookup_caption(captions: Mapping[str, str], video: str | Path) -> str | None:
    """Caption of ``video`` from ``load_captions_file`` output: by file name first, then by stem."""
    video = Path(video)
    return captions.get(video.name, captions.get(video.stem))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m models.florence", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    conv = sub.add_parser("convert", help="convert an original remote-code Florence-2 folder to the native layout")
    conv.add_argument("src", type=Path, help="folder with the original config.json, weights and tokenizer files")
    conv.add_argument("dst", type=Path, help="new output folder")
    args = parser.parse_args(argv)
    print(f"wrote {convert_checkpoint(args.src, args.dst)}")


if __name__ == "__main__":
    main()
