"""Generation speed: the causal DiT block loop alone and with streaming decode (Wan VAE, TAEHV).

Random weights (speed does not depend on their values), random prompt embeddings and conditions.
Runs from the source tree without installing the project (only torch, safetensors and numpy):

  python3 -m scripts.bench_generate                     # CUDA: full size, 832x480, bf16, 4 blocks
  python3 -m scripts.bench_generate --reduced           # reduced model at 256x144 (CPU smoke run)
  options: --blocks N (>= 2), --compile, --decode none,tae,vae, --dtype, --width/--height

Per phase (CUDA events on a GPU, so nothing in the loop waits for the device): the context pass and
each of the 4 denoising passes of every block, and the decode of each block. Frame counting: block 0
yields 9 output frames, every later block 12 (4 per latent frame). ``steady fps`` = frames of blocks
1.. / their time (block 0 excluded); ``first frame`` = from the start of the loop to the end of block
0's decode; ``TFLOP/s`` = the analytic FLOPs of the DiT passes (``block_flops``) over their measured
time. Peak memory: ``max_memory_allocated`` / ``max_memory_reserved`` on CUDA, peak RSS on the CPU.
The loop first runs untimed on two blocks (both context lengths meet every kernel, and compile).
Re-noise comes from a CPU generator through pinned memory, as in the generate stage; on CUDA the
number of host-device synchronisations in a two-block loop is counted too (target 0).
"""

from __future__ import annotations

import argparse
import statistics
import warnings
from dataclasses import dataclass

import torch

from models.dit import CausalDiT, DiTConfig
from models.sampler import BLOCK_FRAMES, DENOISING_STEPS, BlockInputs, stream_blocks
from models.taehv import TAEHV
from models.wan_vae import TEMPORAL_STRIDE, WanVAE, WanVAEConfig
from scripts.gpu_sections.common import Clock, dtype_for, peak_gib, reset_peak, sync

REDUCED = DiTConfig(dim=256, ffn_dim=1024, num_heads=2, num_layers=4, text_len=64, text_dim=256)
DECODERS = ("none", "tae", "vae")


def pass_flops(cfg: DiTConfig, q_tokens: int, kv_tokens: int, full_last_layer: bool = True) -> float:
    """Multiply-add FLOPs (2 per MAC) of one DiT pass over ``q_tokens`` queries attending ``kv_tokens``.

    Per layer: q, k, v, o and the cross-attention q, o projections (d x d each), the FFN (2 x d x ffn),
    self-attention scores and mix (2 x q x kv x d), cross-attention over ``text_len`` tokens. The
    cached text K/V cost nothing per pass; the timestep embedding is counted once. A context pass (``full_last_layer`` False) computes only
    k and v in its last layer and skips the head.
    """
    d, ffn, q, kv = cfg.dim, cfg.ffn_dim, q_tokens, kv_tokens
    layer = 2 * q * (6 * d * d + 2 * d * ffn) + 4 * q * kv * d + 4 * q * cfg.text_len * d
    total = (cfg.num_layers - 1) * layer + (layer if full_last_layer else 2 * 2 * q * d * d)
    patch = 2 * q * cfg.in_dim * 4 * d  # 1x2x2 patch embedding
    head = 2 * q * d * cfg.out_dim * 4 if full_last_layer else 0
    timestep = 2 * (cfg.freq_dim * d + d * d + 6 * d * d)  # time embedding and projection, once per pass
    return float(total + patch + head + timestep)


def block_flops(cfg: DiTConfig, tokens_per_frame: int, context_frames: int, steps: int = len(DENOISING_STEPS)) -> float:
    """One block: the context pass over ``context_frames`` and ``steps`` passes of 3 frames attending
    ``[context ; own]``."""
    own = BLOCK_FRAMES * tokens_per_frame
    ctx = context_frames * tokens_per_frame
    return pass_flops(cfg, ctx, ctx, full_last_layer=False) + steps * pass_flops(cfg, own, ctx + own)


def random_module(cls, *args, device, dtype):
    """A module with random weights built directly on ``device`` (no CPU copy) in ``dtype``."""
    with torch.device(device):
        return cls(*args).to(dtype).eval().requires_grad_(False)


def random_blocks(cfg: DiTConfig, blocks: int, h: int, w: int, device) -> list[BlockInputs]:
    g = torch.Generator(device).manual_seed(0)
    shape = (1, BLOCK_FRAMES, cfg.out_dim, h, w)
    return [BlockInputs(torch.randn(shape, generator=g, device=device), torch.randn(shape, generator=g, device=device),
                        torch.randn((1, BLOCK_FRAMES, 4, h, w), generator=g, device=device).sign(),
                        torch.randn(shape, generator=g, device=device)) for _ in range(blocks)]


@dataclass
class LoopTiming:
    """Seconds per phase of one timed run (lists in call order) and the run's figures."""

    context: list[float]
    denoise: list[list[float]]  # per block, one entry per step
    decode: list[float]
    first_frame: float
    total: float
    steady: float  # blocks 1.. (block 0 excluded)
    frames: int
    steady_frames: int
    peak_allocated_gib: float
    peak_reserved_gib: float


def time_loop(dit: CausalDiT, text: torch.Tensor, blocks: list[BlockInputs], decoder, device: torch.device) -> LoopTiming:
    """Run the block loop once with CUDA-event (or wall-clock) marks around every phase."""
    clock = Clock(device)
    marks: list[tuple[str, object, object]] = []

    def timed(phase, fn):
        def wrapper(*args, **kwargs):
            start = clock.mark()
            out = fn(*args, **kwargs)
            marks.append((phase, start, clock.mark()))
            return out
        return wrapper

    dit.prefill, dit.forward = timed("context", dit.prefill), timed("denoise", dit.forward)
    reset_peak(device)
    ends, frames = [], []
    try:
        start = clock.mark()
        with torch.no_grad():
            for x0 in stream_blocks(dit, text, iter(blocks), torch.Generator().manual_seed(1)):
                if decoder is not None:
                    a = clock.mark()
                    decoder.push(x0)
                    marks.append(("decode", a, clock.mark()))
                ends.append(clock.mark())
                frames.append(TEMPORAL_STRIDE * x0.shape[1] - (TEMPORAL_STRIDE - 1 if not frames else 0))
        sync(device)
    finally:
        del dit.prefill, dit.forward  # back to the class's methods
    secs = {p: [clock.seconds(a, b) for q, a, b in marks if q == p] for p in ("context", "denoise", "decode")}
    steps = len(secs["denoise"]) // len(blocks)
    allocated, reserved = peak_gib(device)
    return LoopTiming(
        context=secs["context"], denoise=[secs["denoise"][i:i + steps] for i in range(0, len(secs["denoise"]), steps)],
        decode=secs["decode"], first_frame=clock.seconds(start, ends[0]), total=clock.seconds(start, ends[-1]),
        steady=clock.seconds(ends[0], ends[-1]), frames=sum(frames), steady_frames=sum(frames[1:]),
        peak_allocated_gib=allocated, peak_reserved_gib=reserved)


def count_host_syncs(dit: CausalDiT, text: torch.Tensor, blocks: list[BlockInputs], decoder) -> int:
    """Host-device synchronisations during a warm block loop (CUDA's sync debug mode, "warn"); the
    target is 0 (``.item()``, ``.cpu()`` or a pageable copy inside the loop would each count)."""
    with warnings.catch_warnings(record=True) as caught, torch.no_grad():
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            for x0 in stream_blocks(dit, text, iter(blocks), torch.Generator().manual_seed(1)):
                if decoder is not None:
                    decoder.push(x0)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


def make_decoder(kind: str, device, dtype, vae_config: WanVAEConfig = WanVAEConfig()):
    """A random-weight autoencoder for ``kind`` in DECODERS (None for "none")."""
    if kind == "none":
        return None
    if kind == "vae":
        return random_module(WanVAE, vae_config, device=device, dtype=dtype)
    return random_module(TAEHV, device=device, dtype=dtype)


def bench(cfg: DiTConfig, width: int, height: int, blocks: int, decoders, compile_: bool | str,
          device: torch.device, dtype: torch.dtype, report, vae_config: WanVAEConfig = WanVAEConfig()) -> None:
    """Time the loop for every decoder in ``decoders``; ``report(metric, value, unit)`` gets each figure.

    ``compile_``: False, True (inductor) or a ``torch.compile`` backend name.
    """
    if blocks < 2:
        raise ValueError("blocks must be at least 2 (block 0 is excluded from the steady-state figure)")
    torch.manual_seed(0)
    dit = random_module(CausalDiT, cfg, device=device, dtype=dtype)
    tag = "eager" if not compile_ else f"compiled ({'inductor' if compile_ is True else compile_})"
    if compile_:
        dit.compile_blocks(**({} if compile_ is True else {"backend": compile_}))
    h, w = height // 8, width // 8
    text = torch.randn(1, cfg.text_len, cfg.text_dim, device=device)
    inputs = random_blocks(cfg, blocks, h, w, device)
    clock = Clock(device)
    a = clock.mark()
    with torch.no_grad():  # warm-up: both context lengths (compiles here when asked)
        for _ in stream_blocks(dit, text, iter(inputs[:2]), torch.Generator().manual_seed(1)):
            pass
    report(f"DiT {tag}: warm-up (2 blocks{', compile' if compile_ else ''})", clock.seconds(a, clock.mark()), "s")
    tpf = dit.tokens_per_frame(h, w)
    flops = block_flops(cfg, tpf, BLOCK_FRAMES) + (blocks - 1) * block_flops(cfg, tpf, 2 * BLOCK_FRAMES)
    for kind in decoders:
        module = make_decoder(kind, device, dtype, vae_config)
        if module is not None:
            module.stream_decoder().push(inputs[0].ref.to(dtype))  # warm the decoder's kernels
        t = time_loop(dit, text, inputs, None if module is None else module.stream_decoder(), device)
        label = f"DiT {tag} + {kind} decode" if kind != "none" else f"DiT {tag}"
        report(f"{label}: steady fps (excl. block 0)", t.steady_frames / t.steady, "fps")
        report(f"{label}: overall fps", t.frames / t.total, "fps")
        report(f"{label}: time to first frame", t.first_frame, "s")
        report(f"{label}: context pass (median)", statistics.median(t.context) * 1e3, "ms")
        for i, step in enumerate(zip(*t.denoise)):
            report(f"{label}: denoising pass {i + 1} (median)", statistics.median(step) * 1e3, "ms")
        if t.decode:
            report(f"{label}: decode per block (median)", statistics.median(t.decode) * 1e3, "ms")
        dit_seconds = sum(t.context) + sum(map(sum, t.denoise))
        report(f"{label}: DiT TFLOP/s (analytic FLOPs / pass time)", flops / dit_seconds / 1e12, "TFLOP/s")
        if device.type == "cuda":
            syncs = count_host_syncs(dit, text, inputs[:2], None if module is None else module.stream_decoder())
            report(f"{label}: host syncs in 2 blocks (CPU re-noise generator)", syncs, "")
        report(f"{label}: peak allocated", t.peak_allocated_gib, "GiB")
        report(f"{label}: peak reserved", t.peak_reserved_gib, "GiB")
        del module


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reduced", action="store_true", help="reduced DiT and 256x144 (for a CPU smoke run)")
    p.add_argument("--blocks", type=int, default=4, help="blocks of 3 latent frames to time, >= 2 (default 4)")
    p.add_argument("--decode", default="none,tae,vae", help="comma list of none, tae, vae (default all)")
    p.add_argument("--compile", nargs="?", const=True, default=False,
                   help="torch.compile the DiT blocks (optionally a backend name, default inductor)")
    p.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    p.add_argument("--dtype", default=None, choices=["bfloat16", "float16", "float32"], help="default: bf16 on CUDA, fp32 on CPU")
    p.add_argument("--width", type=int, default=None)
    p.add_argument("--height", type=int, default=None)
    args = p.parse_args()
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = getattr(torch, args.dtype) if args.dtype else dtype_for(device)
    decoders = args.decode.split(",")
    if any(d not in DECODERS for d in decoders):
        raise SystemExit(f"--decode: choose from {', '.join(DECODERS)}, got {args.decode!r}")
    cfg = REDUCED if args.reduced else DiTConfig()
    width, height = args.width or (256 if args.reduced else 832), args.height or (144 if args.reduced else 480)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device {device} ({name}), {dtype}, {width}x{height}, {cfg.num_layers} layers, dim {cfg.dim}, {args.blocks} blocks")
    try:
        bench(cfg, width, height, args.blocks, decoders, args.compile, device, dtype,
              lambda metric, value, unit: print(f"{metric:70s} {value:10.3f} {unit}"))
    except ValueError as exc:
        raise SystemExit(str(exc)) from None


if __name__ == "__main__":
    main()
