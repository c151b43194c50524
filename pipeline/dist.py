"""Sharding videos across processes launched by ``torchrun`` (one process per GPU).

A rank processes ``videos[rank::world_size]`` of the sorted video list; results are gathered to
every rank over a gloo process group (CPU objects only, so it works beside CUDA and on CPU).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Any, Mapping, Sequence, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Rank:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def current_rank(env: Mapping[str, str] = os.environ) -> Rank:
    """This process's place in a ``torchrun`` launch (RANK, WORLD_SIZE, LOCAL_RANK), or a single process."""
    return Rank(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)))


def shard(items: Sequence[T], rank: int, world_size: int) -> list[T]:
    """Items for ``rank``: strided, so sorted lists of similar videos spread evenly. Every item goes to one rank."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside world of size {world_size}")
    return list(items[rank::world_size])


def device_for(rank: Rank, gpus: Sequence[str]) -> str:
    """torch device of this process: cuda:LOCAL_RANK under torchrun (CUDA_VISIBLE_DEVICES = the step's
    GPUs), else the first listed GPU; CPU where CUDA is unavailable."""
    import torch

    if not torch.cuda.is_available():
        return "cpu"
    if rank.distributed:
        return f"cuda:{rank.local_rank}"
    return f"cuda:{gpus[0]}" if gpus else "cuda:0"


def gather(obj: Any, rank: Rank) -> list[Any]:
    """Every rank's ``obj``, in rank order (a single process gets ``[obj]``)."""
    if not rank.distributed:
        return [obj]
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="gloo")
    out: list[Any] = [None] * rank.world_size
    dist.all_gather_object(out, obj)
    return out


def finish(rank: Rank) -> None:
    """Tear down the process group once the results are gathered."""
    if rank.distributed:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def torchrun_argv(nproc: int, master_port: int, module_args: Sequence[str]) -> list[str]:
    """``torchrun --nproc_per_node N --master_port P -m pipeline ARGS`` through this interpreter."""
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
            "--master_port", str(master_port), "-m", "pipeline", *module_args]


def launch(nproc: int, gpus: Sequence[str], master_port: int, module_args: Sequence[str]) -> int:
    """Run ``python -m pipeline ARGS`` on ``nproc`` ranks, restricted to ``gpus``; returns torchrun's exit status."""
    env = dict(os.environ)
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
    return subprocess.run(torchrun_argv(nproc, master_port, module_args), env=env).returncode
