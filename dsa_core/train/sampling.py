"""Iteration-based, per-rank, resumable batch sampling.

Why not ``DistributedSampler``: training is counted in iterations, and a resumed run must draw exactly the batches
the uninterrupted run would have drawn. Here the batch of (step, rank) is a pure function of (seed, step, rank,
world size): epoch e is the permutation ``default_rng([seed, e]).permutation(N)``, wrapped to a multiple of the
world size (as DistributedSampler pads) and dealt round-robin (``perm[rank::world]``); rank r's stream is the
concatenation of its shares over epochs, and step s takes positions [s*b, (s+1)*b) of it.

Items are ``(epoch, index)`` pairs so that a dataset with per-epoch augmentation (``set_epoch``) gets the right
epoch inside every DataLoader worker (:class:`EpochIndexed`).
"""
from __future__ import annotations

import math
from typing import Any, Iterator

import numpy as np
import torch


class StepBatchSampler(torch.utils.data.Sampler[list[tuple[int, int]]]):
    """Yields the per-rank batches of steps ``start_step .. total_steps-1`` as lists of (epoch, index)."""

    def __init__(self, dataset_len: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                 start_step: int = 0, total_steps: int = 1) -> None:
        if dataset_len < 1:
            raise ValueError(f"dataset is empty (length {dataset_len})")
        if batch_size < 1:
            raise ValueError(f"per-rank batch size must be >= 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world of size {world_size}")
        if not 0 <= start_step <= total_steps:
            raise ValueError(f"start_step {start_step} must lie in [0, total_steps={total_steps}]")
        self.n, self.batch_size, self.seed = dataset_len, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.start_step, self.total_steps = start_step, total_steps
        self.per_rank = math.ceil(dataset_len / world_size)
        self._cache: tuple[int, np.ndarray] | None = None

    def rank_share(self, epoch: int) -> np.ndarray:
        """Indices this rank sees in ``epoch`` (length ceil(N / world))."""
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1]
        perm = np.random.default_rng([self.seed, epoch]).permutation(self.n)
        total = self.per_rank * self.world_size
        if total > self.n:
            perm = np.concatenate([perm, perm[: total - self.n]])
        share = perm[self.rank::self.world_size]
        self._cache = (epoch, share)
        return share

    def batch_for_step(self, step: int) -> list[tuple[int, int]]:
        out = []
        for pos in range(step * self.batch_size, (step + 1) * self.batch_size):
            epoch, offset = divmod(pos, self.per_rank)
            out.append((epoch, int(self.rank_share(epoch)[offset])))
        return out

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for step in range(self.start_step, self.total_steps):
            yield self.batch_for_step(step)

    def __len__(self) -> int:
        return self.total_steps - self.start_step


class EpochIndexed(torch.utils.data.Dataset):
    """``ds[(epoch, i)]`` = ``dataset.set_epoch(epoch); dataset[i]`` (works in any worker process)."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, index = key
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        return self.dataset[index]
