"""Reliability: a training run interrupted (Ctrl-C) and killed (SIGKILL) part-way resumes without redoing work.

``migr-rt train --recipe migr --smoke`` runs as a subprocess three times on
the same folders:

1. interrupted with SIGINT once the work folder's ``state.json`` records the
   base stage finished: it stops with a non-zero status and the recorded
   stage survives;
2. rerun and killed with SIGKILL once GRPO has written its step checkpoint:
   the base stage is not trained again;
3. rerun to the end: neither the base stage nor SFT is redone, GRPO continues
   from its step checkpoint, and the final checkpoint loads and verifies.

Throughout, a watcher thread verifies (``verify_checkpoint``) every folder
under the run that holds a ``config.json``: a checkpoint is never visible
half-written (or half-deleted) under its name; work in progress lives only in
dot-prefixed temporaries.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from migr_rt.training.synth.corpus import SynthConfig, generate_corpus

from migr_rt.model import CheckpointError, load_checkpoint, verify_checkpoint
from swallowed_ctrl_c import python_where_sigint

#: dot-prefixed leftovers a SIGKILL may leave: staging folders and partial files of atomic writes
TEMPORARY = re.compile(r"^\.[^/]+\.(staging-\w+|partial-\d+-\w+(\.\w+)?|tmp-\d+|old-\d+)$")


class CheckpointWatcher(threading.Thread):
    """Verifies every visible checkpoint folder under ``root``, over and over, until stopped."""

    def __init__(self, root: Path) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.stop = threading.Event()
        self.violations: list[tuple[str, str]] = []
        self.verified: dict[str, int] = {}

    def run(self) -> None:
        while not self.stop.is_set():
            self.check()
            time.sleep(0.02)

    def check(self) -> None:
        try:
            configs = list(self.root.rglob("config.json"))
        except FileNotFoundError:  # a temporary folder vanished mid-walk
            return
        for config in configs:
            folder = config.parent
            rel = folder.relative_to(self.root).as_posix()
            if any(part.startswith(".") for part in Path(rel).parts):
                continue  # staging temporaries are allowed to be incomplete
            try:
                before = folder.stat().st_ino
                verify_checkpoint(folder)
            except (CheckpointError, OSError) as exc:
                try:
                    after = folder.stat().st_ino
                except FileNotFoundError:
                    continue
                if after != before:
                    continue  # a newer checkpoint was swapped in while we read this one: both are whole
                self.violations.append((rel, str(exc)))
            else:
                self.verified[rel] = self.verified.get(rel, 0) + 1


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("resume-corpus") / "c"
    generate_corpus(SynthConfig(n=8, seed=41), out)
    return out


def _wait_for(condition, proc: subprocess.Popen, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"the run ended (status {proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no {what} after {timeout} s")
        time.sleep(0.02)


def _state(work: Path) -> dict:
    try:
        return json.loads((work / "state.json").read_text())
    except (FileNotFoundError, ValueError):
        return {}


def test_train_survives_sigint_and_sigkill_and_resumes(corpus, tmp_path):
    root = tmp_path / "run"
    root.mkdir()
    out, work, cache = root / "model", root / "model.work", root / "cache"
    # Ctrl-C interrupts the runs as under a terminal, even under a test runner started in the background
    command = python_where_sigint("default_int_handler", "migr_rt.cli", "train", "--recipe", "migr", "--smoke",
                                  "--data", str(corpus), "--out", str(out), "--cache-dir", str(cache), "--steps", "4",
                                  "--sft-steps", "2", "--grpo-steps", "3", "--seed", "3")
    # (the smoke preset checkpoints GRPO every 2 steps)
    logs = [root / f".log{i}" for i in range(3)]  # dot-prefixed: the watcher and the leftover check skip them
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    watcher = CheckpointWatcher(root)
    watcher.start()
    started = time.monotonic()
    try:
        # 1. Ctrl-C once the base stage is recorded finished
        with open(logs[0], "w") as log:
            proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root)
            _wait_for(lambda: "base" in _state(work).get("finished", {}), proc, 120, "finished base stage")
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=30) != 0, "an interrupted run must not report success"
        first = _state(work)
        assert set(first["finished"]) >= {"base"} and "grpo" not in first["finished"]
        verify_checkpoint(work / "base")
        assert not out.exists()
        base_weights = (work / "base" / "model.safetensors").stat().st_mtime_ns

        # 2. SIGKILL once GRPO has written a step checkpoint (SFT finished before it)
        with open(logs[1], "w") as log:
            proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root)
            _wait_for(lambda: (work / "grpo-step" / "grpo_state.json").is_file(), proc, 120, "GRPO step checkpoint")
            proc.kill()
            proc.wait(timeout=30)
        second = _state(work)
        assert second["finished"]["base"] == first["finished"]["base"]
        assert "sft" in second["finished"] and "grpo" not in second["finished"]
        assert not out.exists()

        # 3. rerun to the end
        with open(logs[2], "w") as log:
            proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root)
            assert proc.wait(timeout=120) == 0, logs[2].read_text()
    finally:
        watcher.stop.set()
        watcher.join(timeout=10)
    watcher.check()  # once more, now that nothing runs: the final checkpoint included
    elapsed = time.monotonic() - started

    texts = [log.read_text() for log in logs]
    assert "[base] step" in texts[0] and "Aborted" in texts[0], texts[0]
    assert "[base] step" not in texts[1], "the finished base stage was trained again"
    assert "[base] step" not in texts[2] and "[sft] step" not in texts[2], "finished stages were redone"
    grpo_steps = [int(m) for m in re.findall(r"\[grpo\] step (\d+)/3", texts[2])]
    assert grpo_steps == [3], texts[2]  # resumed from the step-2 checkpoint
    assert _state(work)["finished"]["grpo"]["steps"] == 3
    assert "stages finished: base, mi_labels, sft, grpo" in texts[2]

    model, _ = load_checkpoint(out)  # verified before it is read
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["finished"]["base"] == first["finished"]["base"]
    assert metrics["finished"]["sft"] == second["finished"]["sft"]
    assert (work / "base" / "model.safetensors").stat().st_mtime_ns == base_weights

    assert watcher.violations == [], watcher.violations
    assert watcher.verified.get("model.work/base", 0) > 0 and watcher.verified.get("model", 0) > 0
    leftovers = [p.relative_to(root).as_posix() for p in root.rglob(".*") if p not in logs]
    assert all(TEMPORARY.match(Path(p).name) for p in leftovers), leftovers
    visible = sorted(p.name for p in root.iterdir() if not p.name.startswith("."))
    assert visible == ["cache", "model", "model.work"], visible
    print(f"interrupted, killed and resumed training: {elapsed:.0f} s; checkpoints verified mid-run: {watcher.verified}")
