"""Data-parallel training under ``accelerate launch``: the same recipes, one process per device.

    accelerate launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no \\
        --dynamo_backend no -m migr_rt.cli train --recipe migr --data runs/synth-train --out runs/migr

(on CPUs add nothing else: each process runs on the CPU with the gloo
backend). Accelerate starts the processes and the process group; the
training loops stay plain PyTorch and call three things from here:

* :meth:`Distributed.shard` - each rank takes its slice of the global batch
  (indices are drawn identically on every rank from the same seed);
* :meth:`Distributed.sync_gradients` - after ``backward``, gradients are
  averaged over ranks (what DDP does; done explicitly because the losses
  call the model's parts - encoders, ``hidden_states`` - rather than one
  ``forward``, which DDP's hooks need), so every rank takes the same step
  and the weights never diverge;
* :meth:`Distributed.main_first` / ``is_main`` - only rank 0 writes caches
  and checkpoints; the others wait, then read what it wrote.

A single process (no launcher) gets world size 1 and every call is a no-op,
so nothing changes for the default path. FSDP for decoders too large to
replicate is accelerate's ``--use_fsdp``; it needs the model wrapped by
``accelerator.prepare`` and is not wired here yet.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import nn


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def shard(self, index: torch.Tensor) -> torch.Tensor:
        """This rank's rows of a global batch (strided, so every rank gets some when the batch >= world size)."""
        return index[self.rank :: self.world_size] if self.enabled else index

    def sync_gradients(self, parameters: Sequence[nn.Parameter]) -> None:
        """Average ``.grad`` over ranks in one flat all-reduce; a missing grad counts as zeros on that rank."""
        if not self.enabled:
            return
        params = [p for p in parameters if p.requires_grad]
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
        torch.distributed.all_reduce(flat)
        flat /= self.world_size
        offset = 0
        for p in params:
            n = p.numel()
            p.grad = flat[offset : offset + n].view_as(p).clone()
            offset += n

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()

    def all_mean(self, value: float) -> float:
        """The mean of a scalar over ranks (for logging the global loss)."""
        if not self.enabled:
            return value
        t = torch.tensor([float(value)])
        torch.distributed.all_reduce(t)
        return float(t) / self.world_size

    @contextmanager
    def main_first(self) -> Iterator[None]:
        """Rank 0 runs the block first (e.g. writes a cache); the others run it after, reading what it wrote."""
        if self.enabled and not self.is_main:
            self.barrier()
        yield
        if self.enabled and self.is_main:
            self.barrier()


@lru_cache(maxsize=1)
def current() -> Distributed:
    """The process's place in a launched job; world size 1 when not launched by ``accelerate launch``/torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed()
    from accelerate import PartialState

    # The training loops keep every tensor on the CPU (windows, models, losses), so the process group is gloo
    # on any machine; with NCCL the CPU all-reduces would fail. GPU training is not wired yet.
    state = PartialState(cpu=True)
    return Distributed(rank=state.process_index, world_size=state.num_processes)
