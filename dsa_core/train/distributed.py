"""Process-group setup for ``torchrun`` scale-out (DistributedDataParallel) and the rank-0-writes rule.

Why a small module of its own: the loop must run unchanged as one plain process (no torchrun, no process group)
and as N ranks on one or many machines. ``torchrun`` exports RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR /
MASTER_PORT; when WORLD_SIZE > 1 we join the group with gloo on CPU and nccl on CUDA.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits in the job; ``is_main`` (rank 0) is the only rank that writes files."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ValueError(f"environment variable {name} must be an integer, found {value!r}") from exc


def init_distributed(device: str = "auto") -> DistEnv:
    """Join the process group if launched by torchrun (WORLD_SIZE > 1); pick this rank's device.

    ``device``: "auto" (CUDA if available, else CPU), "cpu" or "cuda". With CUDA each rank uses cuda:LOCAL_RANK.
    """
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but torch.cuda.is_available() is False")
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    if use_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if use_cuda else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size,
                                **({"device_id": dev} if use_cuda else {}))
        log.info("joined process group: rank %d/%d (%s, local rank %d)", rank, world_size, backend, local_rank)
    return DistEnv(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def cleanup_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(env: DistEnv) -> None:
    if env.distributed:
        dist.barrier()


def all_gather_objects(obj: object, env: DistEnv) -> list[object]:
    """Every rank's ``obj`` (list indexed by rank); just ``[obj]`` without a process group."""
    if not env.distributed:
        return [obj]
    out: list[object] = [None] * env.world_size
    dist.all_gather_object(out, obj)
    return out


def reduce_mean(values: dict[str, float], env: DistEnv) -> dict[str, float]:
    """Mean of scalar logs over ranks (for the metrics log; the losses themselves are per-rank)."""
    if not env.distributed or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64,
                     device=env.device if env.device.type == "cuda" else "cpu")
    dist.all_reduce(t)
    t /= env.world_size
    return dict(zip(keys, t.tolist()))
