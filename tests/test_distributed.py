"""Scaling out: the smoke preset under ``accelerate launch`` with two CPU (gloo) processes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
from migr_rt.training.distributed import Distributed
from migr_rt.training.synth.corpus import SynthConfig, generate_corpus

from migr_rt.model import load_checkpoint


def test_single_process_is_a_no_op():
    d = Distributed()
    idx = torch.arange(6)
    assert torch.equal(d.shard(idx), idx) and d.is_main and not d.enabled
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.full((3,), 2.0)
    d.sync_gradients([p])
    assert torch.equal(p.grad, torch.full((3,), 2.0))


def test_shard_splits_a_batch_between_ranks():
    idx = torch.arange(7)
    parts = [Distributed(rank=r, world_size=2).shard(idx) for r in range(2)]
    assert sorted(torch.cat(parts).tolist()) == list(range(7))
    assert set(parts[0].tolist()).isdisjoint(parts[1].tolist())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_smoke_run_keeps_both_ranks_identical(tmp_path):
    corpus = tmp_path / "corpus"
    generate_corpus(SynthConfig(n=12, seed=41, workers=1), corpus)
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true"}
    cmd = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
        str(Path(__file__).with_name("ddp_smoke.py")), "migr", str(corpus), str(out),
    ]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    ranks = [json.loads((tmp_path / f"ddp.rank{r}.json").read_text()) for r in range(2)]
    assert [r["world_size"] for r in ranks] == [2, 2], "both processes joined one group"
    assert ranks[0]["sha256"] == ranks[1]["sha256"], "data-parallel replicas diverged"
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["finished"]) == {"base", "mi_labels", "sft", "grpo"}
    load_checkpoint(out)  # written once, by rank 0, and verified
