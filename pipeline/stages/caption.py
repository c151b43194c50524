"""Caption stage: one text per video, given by the user or written by Florence-2 from the middle frame."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from pipeline.fsutil import atomic_write
from pipeline.layout import CAPTION_FILE
from pipeline.manifest import StageKey, text_sha256
from pipeline.stages.source import SourceVideo
from pipeline.stages.weights import weights_identity
from pipeline.video_io import VideoReader

VERSION = 1
OUTPUTS = [CAPTION_FILE]
FLORENCE_TASK = "<MORE_DETAILED_CAPTION>"
BATCH = 8


def caption_key(source: SourceVideo, given: str | None, model: Path) -> StageKey:
    """Keyed on the video and either the given text or the captioning model's files."""
    params = {"source": "given", "text_sha256": text_sha256(given)} if given is not None else {
        "source": "florence", "model": weights_identity([model]), "task": FLORENCE_TASK}
    return StageKey("caption", VERSION, inputs=source.key_inputs, params=params)


def middle_frame(source: SourceVideo) -> np.ndarray:
    from models.florence import middle_index

    with VideoReader(source.path, min_frames=1) as reader:
        return reader[middle_index(len(reader))]


def write_caption(out_dir: Path, text: str) -> None:
    with atomic_write(Path(out_dir) / CAPTION_FILE) as tmp:
        tmp.write_text(text.strip() + "\n", encoding="utf-8")


def read_caption(out_dir: Path) -> str:
    return (Path(out_dir) / CAPTION_FILE).read_text(encoding="utf-8").strip()


def florence_captions(sources: Sequence[SourceVideo], model_dir: Path, device: str) -> list[str]:
    """Florence-2 captions of each video's middle frame, several videos per forward pass."""
    from models.florence import Captioner

    captioner = Captioner.from_dir(model_dir, device=device, batch_size=BATCH)
    try:
        return [text for i in range(0, len(sources), BATCH)
                for text in captioner.caption([middle_frame(s) for s in sources[i:i + BATCH]])]
    finally:
        captioner.release()
