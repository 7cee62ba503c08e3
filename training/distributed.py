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
so nothing changes for the default path.

Decoders too large to replicate: add ``--use_fsdp`` to the launch (any
``--fsdp_version``; the sharding is always FSDP2, torch's ``fully_shard``,
which accelerate's version 2 uses too). Each training stage then calls
:meth:`Distributed.prepare`: every decoder layer, encoder and projector
becomes its own shard unit, the rest (embeddings, tied LM head, norms) the
root unit, and the model methods the losses call instead of ``forward``
(``encode_modalities``, ``embed_inputs``, ``hidden_states``, ...) gather
weights like ``forward`` does. Gradients are reduce-scattered by FSDP itself
(``sync_gradients`` is then a no-op), and :meth:`Distributed.full_state_dict`
gathers whole tensors for checkpoints, which stay ordinary single-file
checkpoints. The GRPO KL reference stays a replicated frozen copy.
"""

from __future__ import annotations

import atexit
import logging
import os
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import nn

logger = logging.getLogger(__name__)


#: Model methods the training losses and generation call directly; under FSDP they gather weights like ``forward``.
SHARDED_METHODS = ("encode_modalities", "encode_visual", "encode_audio", "embed_inputs", "hidden_states",
                   "lm_logits", "label_logits")


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world_size: int = 1
    #: shard parameters, gradients and optimiser state (FSDP2) instead of replicating them
    fsdp: bool = False
    reshard_after_forward: bool = True

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
        """Average ``.grad`` over ranks in one flat all-reduce; a missing grad counts as zeros on that rank.

        Under FSDP the backward pass has already reduce-scattered the sharded
        ones; only parameters outside the model (e.g. auxiliary heads) are averaged here.
        """
        if not self.enabled:
            return
        params = [p for p in parameters if p.requires_grad and not hasattr(p, "device_mesh")]
        if not params:
            return
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
        torch.distributed.all_reduce(flat)
        flat /= self.world_size
        offset = 0
        for p in params:
            n = p.numel()
            p.grad = flat[offset : offset + n].view_as(p).clone()
            offset += n

    def prepare(self, model: nn.Module) -> nn.Module:
        """Shard ``model`` in place for FSDP (a no-op otherwise); call before making the optimiser.

        Units: each encoder and projector, each decoder layer, then the whole
        model as the root. The root is initialised at once, so calling a unit
        directly before the root (e.g. an encoder first) is allowed.
        """
        if not (self.enabled and self.fsdp) or _is_sharded(model):
            return model
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard, register_fsdp_forward_method

        # FSDP2 warns, per unit and rank, when a unit returns a view (nn.Linear on a (B, L, D) input does): an
        # in-place op on that output would skip the unit's all-gather in backward. The model's methods only
        # use such outputs out of place, and tests/test_distributed.py holds sharded gradients to data-parallel
        # ones, so on the documented command the warning is noise that buries the progress lines.
        warnings.filterwarnings("ignore", message=r"FSDP2-wrapped module \(.*\) returned a view tensor",
                                category=UserWarning)
        mesh = init_device_mesh("cpu", (self.world_size,))
        units = [model.visual_encoder, model.audio_encoder, model.visual_projector, model.audio_projector,
                 *model.decoder.model.layers]
        for unit in units:
            fully_shard(unit, mesh=mesh, reshard_after_forward=self.reshard_after_forward)
        # The root keeps FSDP's default: its weights stay gathered from the first call until backward, since
        # the model's methods call one another (forward -> embed_inputs) and must not reshard mid-call.
        fully_shard(model, mesh=mesh)
        for name in SHARDED_METHODS:
            register_fsdp_forward_method(model, name)
        return model

    def full_state_dict(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """Whole CPU tensors of every parameter and buffer; a collective under FSDP (call it on every rank)."""
        if not _is_sharded(model):
            return model.state_dict()
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))  # on every rank

    def plain_model(self, model: nn.Module) -> nn.Module:
        """``model`` itself, or under FSDP an unsharded copy with the gathered weights (collective)."""
        if not _is_sharded(model):
            return model
        from torch.distributed.fsdp import FSDPModule

        state = self.full_state_dict(model)
        # fully_shard swaps the class for a generated FSDP subclass; build the original one
        cls = next(c for c in type(model).__mro__ if not issubclass(c, FSDPModule))
        plain = cls(model.config).to(dtype=model.dtype)
        plain.load_state_dict(state)
        return plain.eval()

    def clip_grad_norm(self, parameters: Sequence[nn.Parameter], max_norm: float) -> float:
        """Clip the global gradient norm (over every rank's shard under FSDP) and return it."""
        norm = torch.nn.utils.clip_grad_norm_(parameters, max_norm)
        return float(full_tensor(norm))

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

    def all_gather(self, value: torch.Tensor) -> list[torch.Tensor]:
        """Every rank's ``value`` (same shape and dtype on each), in rank order; ``[value]`` in one process."""
        if not self.enabled:
            return [value]
        out = [torch.empty_like(value) for _ in range(self.world_size)]
        torch.distributed.all_gather(out, value.contiguous())
        return out

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
    _destroy_group_at_exit()
    fsdp = os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"
    if fsdp and os.environ.get("FSDP_VERSION", "2") != "2":
        logger.info("FSDP: sharding with FSDP2 (fully_shard); --fsdp_version %s is not used", os.environ["FSDP_VERSION"])
    return Distributed(
        rank=state.process_index, world_size=state.num_processes, fsdp=fsdp,
        reshard_after_forward=os.environ.get("FSDP_RESHARD_AFTER_FORWARD", "true").lower() != "false",
    )


#: How long a launched rank, at exit, leaves the GIL to gloo's worker threads (see :func:`_destroy_group_at_exit`).
GLOO_EXIT_GRACE_S = 0.2


@lru_cache(maxsize=1)
def _destroy_group_at_exit() -> None:
    """Let gloo's worker threads finish with the GIL before the interpreter finalises.

    A gloo worker thread can still hold the last reference to a finished
    collective (its tensors, and through a barrier every earlier collective)
    when the rank's main thread is done: releasing Python-created tensors
    takes the GIL, and a thread that asks for it once finalisation has begun
    is killed mid-destructor: "terminate called without an active exception",
    exit -6 (1 CI run in ~15 ended so, in the FSDP test; the probe
    ``tests/exit_after_collective.py`` makes it likely). Destroying the group
    joins those threads, but only if nothing else holds it, and under FSDP
    DTensor's caches keep its device mesh, hence the group, alive until exit.
    So the hook then sleeps briefly, which hands the GIL to any thread still
    waiting for it (1 launch in 2 of the probe aborted without; 0 in 60 with).
    """

    def destroy() -> None:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
            time.sleep(GLOO_EXIT_GRACE_S)

    atexit.register(destroy)


def full_tensor(value: torch.Tensor) -> torch.Tensor:
    """The whole tensor behind a sharded (DTensor) value; a plain tensor is returned as is. Collective for DTensors."""
    return value.full_tensor() if hasattr(value, "full_tensor") else value


def shard_like(value: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
    """``value`` (whole) laid out like ``param``: this rank's shard when ``param`` is sharded."""
    if not hasattr(param, "device_mesh"):
        return value.to(param.device)
    from torch.distributed.tensor import distribute_tensor

    return distribute_tensor(value.to(param.device), param.device_mesh, param.placements)


def _is_sharded(model: nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)
