"""Generate stage end to end with tiny random models written to disk and loaded by the real loaders."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import pipeline.generate_output as gen
from models.dit import CausalDiT, DiTConfig
from models.conditions import pack_mask
from models.taehv import TAEHV
from models.umt5 import CHECKPOINT_NAME, TOKENIZER_SUBDIR, UMT5Config, UMT5Encoder
from models.wan_vae import WanVAE, WanVAEConfig
from pipeline.generate_output import GenerateOptions, GenerateWeights, generate_to_file, padded_indices, plan_frames
from pipeline.render_folder import load_mask
from pipeline.video_io import EncodeOptions, VideoError, read_video, write_video
from trajectories.camera_path import CameraPath

ASSETS = Path(__file__).parent / "assets"
TEXT = UMT5Config(vocab=1000, dim=64, dim_attn=64, dim_ffn=96, num_heads=4, num_layers=2)
DIT = DiTConfig(dim=32, ffn_dim=48, num_heads=2, num_layers=2, freq_dim=16, text_len=8, text_dim=TEXT.dim)
SIZE = 16
LOSSLESS = EncodeOptions(crf=0, pix_fmt="yuv444p")


@pytest.mark.parametrize("n, latent, generated", [(1, 3, 9), (9, 3, 9), (10, 6, 21), (45, 12, 45), (49, 15, 57), (57, 15, 57)])
def test_plan_frames(n, latent, generated):
    plan = plan_frames(n)
    assert (plan.latent_frames, plan.generated, plan.padded) == (latent, generated, generated - n)
    assert ("padded with" in plan.describe()) == (generated > n)
    assert 1 + (plan.generated - 1) // 4 == plan.latent_frames and plan.latent_frames % 3 == 0


def test_padded_indices():
    assert padded_indices(3, 6).tolist() == [0, 1, 2, 2, 2, 2]
    with pytest.raises(ValueError):
        plan_frames(0)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> GenerateWeights:
    """Tiny random DiT, Wan VAE and umT5 in the published file layout."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("weights")
    wan = root / "Wan2.1-T2V-1.3B"
    shutil.copytree(ASSETS / "tiny_umt5_tokenizer", wan / TOKENIZER_SUBDIR)
    (wan / "config.json").write_text(json.dumps(DIT.to_dict()))
    torch.save(WanVAE(WanVAEConfig(dim=8)).state_dict(), wan / "Wan2.1_VAE.pth")
    torch.save(UMT5Encoder(TEXT).state_dict(), wan / CHECKPOINT_NAME)
    dit = CausalDiT(DIT)
    save_file({f"model.{k}": v.contiguous() for k, v in dit.state_dict().items()}, root / "dit.safetensors")
    torch.save({k: v.half() for k, v in TAEHV().state_dict().items()}, root / "taew2_1.pth")
    return GenerateWeights.from_paths(root / "dit.safetensors", wan, tae=root / "taew2_1.pth")


def _spy(monkeypatch) -> dict:
    """Record what the stage hands to the block loop (each block's inputs, concatenated), and its outputs."""
    seen = {}
    real = gen.stream_blocks

    def spy(dit, text, blocks, renoise, *args, **kwargs):
        inputs, outputs = [], []

        def tee():
            for blk in blocks:
                inputs.append(blk)
                yield blk

        for x0 in real(dit, text, tee(), renoise, *args, **kwargs):
            outputs.append(x0.clone())
            yield x0
        cat = {name: torch.cat([getattr(b, name) for b in inputs], dim=1) for name in ("ref", "render", "mask", "noise")}
        seen.update(cat, text=text, latents=torch.cat(outputs, dim=1), blocks=list(range(len(outputs))))

    monkeypatch.setattr(gen, "stream_blocks", spy)
    return seen


def _scene(tmp: Path, source_index: list[int], source_frames: int = 8) -> tuple[Path, Path]:
    """A source video with a distinct brightness per frame, and a render folder following ``source_index``."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (SIZE, SIZE, 3))
    src = np.stack([np.clip(base // 2 + 12 * i, 0, 255) for i in range(source_frames)]).astype(np.uint8)
    write_video(tmp / "source.mp4", src, fps=12.0, options=LOSSLESS)
    render_dir = tmp / "render"
    render_dir.mkdir()
    n = len(source_index)
    write_video(render_dir / "render.mp4", src[source_index], fps=12.0, options=LOSSLESS)
    mask = np.zeros((n, SIZE, SIZE), bool)
    mask[: n // 2, :, :8] = True  # left half covered in the first half of the path, right half after
    mask[n // 2:, :, 8:] = True
    np.savez_compressed(render_dir / "mask.npz", packed=np.packbits(mask, axis=-1), shape=np.array(mask.shape))
    eye = np.broadcast_to(np.eye(4), (n, 4, 4)).copy()
    K = np.broadcast_to(np.array([[SIZE, 0, SIZE / 2], [0, SIZE, SIZE / 2], [0, 0, 1.0]]), (n, 3, 3)).copy()
    CameraPath(eye, K, SIZE, SIZE, 12.0, np.asarray(source_index, np.int64)).save(render_dir / "cameras.json")
    return tmp / "source.mp4", render_dir


def test_generate_end_to_end_follows_time_map_and_streams(tmp_path, weights, monkeypatch):
    time_map = [7, 6, 5, 4, 3, 3, 3, 2, 1, 0]  # reverse with a freeze: 10 frames -> 2 blocks
    source, render_dir = _scene(tmp_path, time_map)
    seen = _spy(monkeypatch)
    out = tmp_path / "out" / "generated.mp4"
    out.parent.mkdir()
    result = generate_to_file(source, render_dir, "a red car on a road", weights, out,
                              GenerateOptions(seed=3, encode=LOSSLESS, device="cpu"))
    assert result.frames_written == 10 and result.plan.generated == 21 and result.plan.padded == 11
    assert result.source_frames == 8 and result.source_frames_used == 8
    assert any("padded with 11" in note for note in result.notes)
    video = read_video(out)
    assert video.shape == (10, SIZE, SIZE, 3)
    assert seen["blocks"] == [0, 1] and seen["text"].shape == (1, DIT.text_len, TEXT.dim)

    # Independent recomputation of the conditions from the files, following the padded time map.
    vae = WanVAE.from_checkpoint(weights.wan_dir / "Wan2.1_VAE.pth")
    padded = np.array(time_map + [time_map[-1]] * 11)
    src = torch.from_numpy(read_video(source)[padded]).permute(3, 0, 1, 2)[None].float() / 127.5 - 1
    assert torch.allclose(seen["ref"], vae.encode(src), atol=1e-5), "reference latents must follow the time map"
    mask = load_mask(render_dir / "mask.npz")
    assert torch.equal(seen["mask"], pack_mask(mask[padded_indices(10, 21)].astype(np.float32), (2, 2)))
    assert seen["mask"][0, -1, :, :, 0].eq(-1).all() and seen["mask"][0, -1, :, :, 1].eq(1).all(), "padding repeats the last mask"

    # Streamed, block-wise decode == one decode of all latents (up to the lossless-ish codec).
    want = ((vae.decode(seen["latents"])[0, :, :10].clamp(-1, 1) + 1) * 127.5).round().permute(1, 2, 3, 0).numpy()
    assert np.abs(video.astype(float) - want).max() <= 3

    # The seed alone fixes the noise: initial noise first, then the re-noise draws, from one CPU generator.
    assert torch.equal(seen["noise"], torch.randn(seen["noise"].shape, generator=torch.Generator().manual_seed(3)))


def test_generate_with_taehv_decoder(tmp_path, weights, monkeypatch):
    source, render_dir = _scene(tmp_path, [0, 2, 4, 6, 7])
    mask = np.zeros((5, SIZE, SIZE), np.uint8)
    mask[:2, :, :8] = 255
    mask[2:, :, 8:] = 255
    write_video(render_dir / "mask.mp4", mask, fps=12.0)
    (render_dir / "mask.npz").unlink()  # the viewing mask is the fallback
    seen = _spy(monkeypatch)
    out = tmp_path / "generated.mp4"
    result = generate_to_file(source, render_dir, "a car", weights, out, GenerateOptions(use_tae=True, encode=LOSSLESS, device="cpu"))
    assert result.frames_written == 5 and result.plan.generated == 9 and result.source_frames_used == 5
    video = read_video(out)
    tae = TAEHV.from_checkpoint(weights.tae)
    padded = np.array([0, 2, 4, 6, 7] + [7] * 4)  # with use_tae the reference latents come from TAEHV too
    src = torch.from_numpy(read_video(source)[padded]).permute(3, 0, 1, 2)[None].float() / 127.5 - 1
    assert torch.allclose(seen["ref"], tae.encode(src), atol=1e-5)
    want = ((tae.decode(seen["latents"])[0, :, :5] + 1) * 127.5).round().permute(1, 2, 3, 0).numpy()
    assert video.shape == (5, SIZE, SIZE, 3) and np.abs(video.astype(float) - want).max() <= 3
    assert seen["mask"][0, 0, :, :, 0].eq(1).all() and seen["mask"][0, -1, :, :, 1].eq(1).all()
    with pytest.raises(FileNotFoundError, match="taew2_1.pth"):
        generate_to_file(source, render_dir, "a car", GenerateWeights(weights.dit, weights.wan_dir),
                         out, GenerateOptions(use_tae=True, device="cpu"))


def test_generate_rejects_inconsistent_render_folder(tmp_path, weights):
    source, render_dir = _scene(tmp_path, [7, 6, 5], source_frames=8)
    cams = CameraPath.load(render_dir / "cameras.json")
    CameraPath(cams.c2w, cams.intrinsics, SIZE, SIZE, 12.0, np.array([9, 8, 7])).save(render_dir / "cameras.json")
    with pytest.raises(VideoError, match="cameras.json.*source frames 7..9.*8 frames"):
        generate_to_file(source, render_dir, "x", weights, tmp_path / "o.mp4", GenerateOptions(device="cpu"))
    cams.save(render_dir / "cameras.json")
    (render_dir / "mask.npz").write_bytes(b"not a zip")
    with pytest.raises(VideoError, match="mask.npz: unreadable"):
        generate_to_file(source, render_dir, "x", weights, tmp_path / "o.mp4", GenerateOptions(device="cpu"))
    (render_dir / "cameras.json").unlink()
    with pytest.raises(FileNotFoundError, match="cameras.json"):
        generate_to_file(source, render_dir, "x", weights, tmp_path / "o.mp4", GenerateOptions(device="cpu"))
    assert not (tmp_path / "o.mp4").exists()


@pytest.mark.parametrize("n", [9, 21, 33])
def test_block_mask_equals_whole_pack(n):
    """Each block's packed mask equals the same latent frames of one pack over the padded whole video."""
    rng = np.random.default_rng(n)
    mask = rng.random((n - 4, 12, 20)) > 0.5
    indices = padded_indices(n - 4, n)
    whole = pack_mask(mask[indices].astype(np.float32), (3, 5))
    blocks = torch.cat([gen.block_mask(mask, indices, b, (3, 5)) for b in range(whole.shape[1] // 3)], dim=1)
    assert torch.equal(blocks, whole)


def test_seeded_noise_is_one_stream():
    """Per-block initial noise, then re-noise: the same numbers as one generator drawing the whole noise first."""
    noise, renoise = gen.seeded_noise(5, (1, 3, 16, 2, 4), 3)
    one = torch.Generator().manual_seed(5)
    assert torch.equal(torch.cat(list(noise), dim=1), torch.randn(1, 9, 16, 2, 4, generator=one))
    assert torch.equal(torch.randn(7, generator=renoise), torch.randn(7, generator=one))


def test_writer_thread_writes_in_order_off_the_main_thread_and_raises_its_error(tmp_path):
    """Frames reach the VideoWriter in order from another thread; a write error surfaces in the caller
    and the output file is not created."""
    import threading

    class Recorder:
        def __init__(self, fail_at=None):
            self.frames, self.threads, self.fail_at = [], set(), fail_at

        def write(self, frame):
            if len(self.frames) == self.fail_at:
                raise OSError("disk full")
            self.frames.append(frame)
            self.threads.add(threading.get_ident())

    blocks = [torch.rand(3, 4, 2, 3) * 2 - 1 for _ in range(3)]
    rec = Recorder()
    with gen.FrameWriterThread(rec, depth=1) as sink:
        for b in blocks:
            sink.put(b, 3)
    want = [((b[:, :3].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 3, 0).numpy() for b in blocks]
    assert np.array_equal(np.stack(rec.frames), np.concatenate(want))
    assert rec.threads and threading.get_ident() not in rec.threads
    with pytest.raises(OSError, match="disk full"):
        with gen.FrameWriterThread(Recorder(fail_at=2)) as sink:
            for b in blocks:
                sink.put(b, 4)

    out = tmp_path / "x.mp4"
    with pytest.raises(OSError, match="disk full"):
        with gen.VideoWriter(out, 8.0, 16, 16) as writer, gen.FrameWriterThread(writer) as sink:
            writer.write = Recorder(fail_at=0).write
            sink.put(torch.zeros(3, 2, 16, 16), 2)
    assert not out.exists()
