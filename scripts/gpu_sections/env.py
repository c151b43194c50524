"""gpu_check section ``env``: versions, the GPU, and which attention kernel the DiT's shapes get.

SDPA's sub-kernels (cuDNN, flash, memory-efficient, math) are each timed on the DiT's self-attention
shape (3 frames of queries attending 9 frames, 12 heads of 128 at 832x480; tiny on the CPU), and
``models.attention.backend_for`` names the kernel the DiT actually calls (fa3, fa2 or sdpa).
"""

from __future__ import annotations

import platform

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from models.attention import attention, backend_for
from scripts.gpu_sections.common import Clock, Section, dtype_for, section_main

SUB_KERNELS = {"cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION,
               "efficient": SDPBackend.EFFICIENT_ATTENTION, "math": SDPBackend.MATH}


def time_ms(fn, device: torch.device, repeat: int) -> float:
    fn()
    clock = Clock(device)
    a = clock.mark()
    for _ in range(repeat):
        fn()
    return clock.seconds(a, clock.mark()) * 1e3 / repeat


def run(s: Section) -> None:
    s.record("python", platform.python_version())
    s.record("torch", torch.__version__)
    s.record("CUDA (torch build)", str(torch.version.cuda))
    s.record("cuDNN", str(torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None))
    for module in ("transformers", "safetensors", "numpy", "cv2", "av", "typer", "plyfile", "flash_attn", "flash_attn_interface"):
        try:
            s.record(f"module {module}", getattr(__import__(module), "__version__", "present"))
        except ImportError:
            s.record(f"module {module}", "absent")
    dev, dtype = s.device, dtype_for(s.device)
    if dev.type == "cuda":
        s.record("GPU", torch.cuda.get_device_name(dev))
        s.record("compute capability", ".".join(map(str, torch.cuda.get_device_capability(dev))))
        s.record("GPU memory", torch.cuda.get_device_properties(dev).total_memory / 2**30, "GiB")
    tpf, heads, head_dim = (1560, 12, 128) if not s.smoke else (16, 2, 64)
    q = torch.randn(1, 3 * tpf, heads, head_dim, device=dev, dtype=dtype)
    kv = torch.randn(1, 9 * tpf, heads, head_dim, device=dev, dtype=dtype)
    s.record("DiT attention kernel (models.attention)", backend_for(q))
    s.record("DiT attention call", time_ms(lambda: attention(q, kv, kv), dev, 5), "ms")
    qt, kt = q.transpose(1, 2), kv.transpose(1, 2)
    for name, kernel in SUB_KERNELS.items():
        try:
            with sdpa_kernel(kernel):
                s.record(f"SDPA {name}", time_ms(lambda: F.scaled_dot_product_attention(qt, kt, kt), dev, 5), "ms")
        except RuntimeError as exc:
            s.record(f"SDPA {name}", "unavailable", str(exc).splitlines()[0][:60])


if __name__ == "__main__":
    section_main("env", run)
