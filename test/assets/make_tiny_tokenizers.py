"""Regenerate the tiny tokenizers used by the text-model tests (run from the repository root):

    .venv/bin/python test/assets/make_tiny_tokenizers.py

- ``tiny_umt5_tokenizer/``: unigram (SentencePiece-style metaspace) tokenizer saved as a ``T5Tokenizer``, with
  the umT5 special ids (``<pad>`` 0, ``</s>`` 1 appended to every sequence, ``<unk>`` 2).
- ``tiny_bart_tokenizer/``: byte-level BPE saved as a ``BartTokenizer`` with BART's special ids (``<s>`` 0,
  ``<pad>`` 1, ``</s>`` 2, ``<unk>`` 3), like the tokenizer files of the original Florence-2 checkpoints.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

HERE = Path(__file__).resolve().parent
SENTENCES = [
    "A red car drives along a wet street at night.",
    "The camera slowly orbits a wooden table with a cup of coffee.",
    "A dog runs across a green field under a blue sky.",
    "Two people walk past a shop window in the city.",
    "Describe with a paragraph what is shown in the image.",
    "The image shows a small boat on a calm lake surrounded by trees.",
]


def make_umt5(out: Path) -> None:
    from transformers import T5Tokenizer

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(SENTENCES, trainers.UnigramTrainer(
        vocab_size=150, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>"))
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)])
    T5Tokenizer(tokenizer_object=tok, eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
                extra_ids=0).save_pretrained(out)


def make_bart(out: Path) -> None:
    from transformers import BartTokenizer

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(SENTENCES, trainers.BpeTrainer(
        vocab_size=320, special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    BartTokenizer(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
                  sep_token="</s>", cls_token="<s>", mask_token="<mask>").save_pretrained(out)


if __name__ == "__main__":
    make_umt5(HERE / "tiny_umt5_tokenizer")
    make_bart(HERE / "tiny_bart_tokenizer")
