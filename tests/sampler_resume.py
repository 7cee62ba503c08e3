"""Run by tests/test_distributed.py under ``accelerate launch``: save and resume GRPO state on two ranks.

Each rank advances its own sampler stream by a different amount, saves the
GRPO state (a collective), then resumes it into a generator seeded with
something else. The draws after resuming must be the ones its own stream
would have made: rank 1 must not resume rank 0's stream.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from model_fixtures import tiny_config

from migr_rt.model import build_model
from migr_rt.training import distributed
from migr_rt.training.optim import adamw
from migr_rt.training.reasoning_recipe import _load_grpo_state, _save_grpo_state


def main(out: str) -> None:
    torch.set_num_threads(1)
    dist = distributed.current()
    model, tokenizer = build_model(tiny_config(), seed=0)
    optimizer = adamw([p for p in model.parameters() if p.requires_grad], 1e-3, 0.01)
    generator = torch.Generator().manual_seed(100 + dist.rank)
    torch.rand(3 + 5 * dist.rank, generator=generator)
    _save_grpo_state(Path(out) / "grpo-step", model, tokenizer, optimizer, generator, 3, [])
    expected = torch.rand(4, generator=generator).tolist()
    resumed = torch.Generator().manual_seed(999)
    step, _ = _load_grpo_state(Path(out) / "grpo-step", model, optimizer, resumed)
    record = {"rank": dist.rank, "world_size": dist.world_size, "step": step, "expected": expected,
              "resumed": torch.rand(4, generator=resumed).tolist()}
    Path(f"{out}.rank{dist.rank}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main(sys.argv[1])
