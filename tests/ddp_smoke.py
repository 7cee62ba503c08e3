"""Run by tests/test_distributed.py under ``accelerate launch``: the smoke preset of a recipe, unchanged.

Each rank then records a digest of its final weights, so the test can check
that data-parallel training kept every replica identical.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import torch
from migr_rt.training import distributed
from migr_rt.training.reasoning_recipe import run_reasoning_recipe, smoke_config


def main(recipe: str, data: str, out: str) -> None:
    torch.set_num_threads(1)
    run_reasoning_recipe(smoke_config(recipe, data, out, cache_dir=f"{out}.cache"))
    from migr_rt.model import load_checkpoint

    dist = distributed.current()
    model, _ = load_checkpoint(Path(out).parent / f"{Path(out).name}.work" / "grpo")
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    record = {"rank": dist.rank, "world_size": dist.world_size, "sha256": digest.hexdigest()}
    Path(f"{out}.rank{dist.rank}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main(*sys.argv[1:4])
