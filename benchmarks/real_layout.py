"""MIGR trained through the real-dataset path: the synthetic corpus laid out as DFEW with a descriptions file.

    python benchmarks/real_layout.py --train runs/synth-train --test runs/synth-test --work runs/real-layout

A real dataset gives the recipes less than the synthetic corpus does: a label
and, with a descriptions file, one text per modality per clip, but no cue
records and no per-modality emotion. This benchmark measures what that costs.
It writes the training corpus as a DFEW tree (symlinked MP4s, fold 1 train
CSV) with ``descriptions.jsonl`` made from the manifest's texts, trains the
``migr`` recipe on ``dfew:...&descriptions=...`` with the bundled model's
settings (1200 base steps, seed 0), and evaluates it beside the bundled model
(trained on the corpus itself) on the same held-out clips with the same code.

Writes benchmarks/results/real_layout.{json,md}.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import click

sys.path.insert(0, str(Path(__file__).resolve().parent))
from held_out import held_out_corpus, shown_path, write_result  # noqa: E402
from machine import machine_info  # noqa: E402
from migr_rt.training.base_recipe import load_or_extract  # noqa: E402
from migr_rt.training.data import DFEW_CODE_TO_LABEL  # noqa: E402
from migr_rt.training.evaluation import EvalConfig, evaluate_reasoning  # noqa: E402
from migr_rt.training.lexicon import CueLexicon, stored_lexicon  # noqa: E402
from migr_rt.training.sources import open_source  # noqa: E402
from migr_rt.training.synth.reader import read_manifest  # noqa: E402

from migr_rt.atomic import write_text_atomic  # noqa: E402
from migr_rt.model import load_checkpoint  # noqa: E402
from migr_rt.bundled import default_checkpoint  # noqa: E402

#: The metrics the table shows, in order: (key in reasoning_metrics, heading).
SHOWN = (
    ("war", "WAR"),
    ("uar", "UAR"),
    ("answer_slot_accuracy", "answer-slot accuracy"),
    ("icr", "ICR"),
    ("label_closed_icr", "ICR, closed with the label"),
    ("first_segment_agreement_one_sided", "opens with the dominant modality (one-sided clips)"),
    ("grounding_rate", "grounding"),
    ("coverage", "coverage"),
    ("format_valid", "well formed"),
)


def dfew_layout(corpus: Path, root: Path, rewrite: Callable[[str], str] = str) -> tuple[str, int]:
    """Write ``corpus`` as DFEW fold 1 train (symlinks + CSV) and a descriptions file; return the spec and clip count.

    ``rewrite`` turns each manifest text into the description written (``own_words.py`` puts it in other words).
    """
    records = read_manifest(corpus / "manifest.jsonl")
    code = {label: c for c, label in DFEW_CODE_TO_LABEL.items()}
    clips = root / "Clip" / "original"
    clips.mkdir(parents=True, exist_ok=True)
    rows, lines = ["video_name,label"], []
    for n, rec in enumerate(records, start=1):
        link, target = clips / f"{n}.mp4", (corpus / rec["file"]).resolve()
        if link.is_symlink() and link.resolve() != target:
            link.unlink()  # a tree left by another corpus: never pair these labels with its media
        if not link.is_symlink():
            link.symlink_to(target)
        rows.append(f"{n},{code[rec['label']]}")
        lines.append(json.dumps({"clip_id": str(n), "visual": rewrite(rec["visual_text"]),
                                 "audio": rewrite(rec["audio_text"])}))
    split = root / "EmoLabel_DataSplit" / "train(single-labeled)"
    split.mkdir(parents=True, exist_ok=True)
    write_text_atomic(split / "set_1.csv", "\n".join(rows) + "\n")
    descriptions = root.parent / "descriptions.jsonl"
    write_text_atomic(descriptions, "\n".join(lines) + "\n")
    return f"dfew:{root}?fold=1&split=train&descriptions={quote(str(descriptions))}", len(records)


def evaluate(checkpoint: Path, test: Path | str, cache: Path, lexicon: CueLexicon | None = None) -> dict:
    """Metrics of ``checkpoint`` on ``test`` (a corpus or a dataset spec), judged with ``lexicon`` (default: its own)."""
    model, tokenizer = load_checkpoint(checkpoint)
    windows = load_or_extract(open_source(test), model.config, cache, None)
    report = evaluate_reasoning(model, tokenizer, windows, EvalConfig(drift=False),
                                lexicon=lexicon or stored_lexicon(checkpoint))
    return report.metrics


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


@click.command()
@click.option("--train", "train_dir", type=click.Path(path_type=Path), default=Path("runs/synth-train"), show_default=True)
@click.option("--test", "test_dir", type=click.Path(path_type=Path), default=Path("runs/synth-test"), show_default=True)
@click.option("--work", type=click.Path(path_type=Path), default=Path("runs/real-layout"), show_default=True)
@click.option("--reference", type=click.Path(path_type=Path), default=None,
              help="Checkpoint trained on the corpus itself (default: the bundled model).")
@click.option("--steps", type=int, default=1200, show_default=True, help="Base steps (the bundled model's).")
@click.option("--seed", type=int, default=0, show_default=True)
def main(train_dir: Path, test_dir: Path, work: Path, reference: Path | None, steps: int, seed: int) -> None:
    if not (train_dir / "manifest.jsonl").is_file():
        raise click.ClickException(f"{train_dir}: no training corpus (make it with: migr-rt synth --n 2400 --seed 1 "
                                   f"--out {train_dir})")
    test_info = held_out_corpus(test_dir, seed=2, n=420)
    work.mkdir(parents=True, exist_ok=True)
    spec, n_train = dfew_layout(train_dir, work / "DFEW")
    out = work / "migr"
    for stale in (out, work / "migr.work"):  # a rerun trains afresh (the recipe would resume), timing included
        shutil.rmtree(stale, ignore_errors=True)
    command = [sys.executable, "-m", "migr_rt.cli", "train", "--recipe", "migr", "--data", spec, "--out", str(out),
               "--work-dir", str(work / "migr.work"), "--cache-dir", str(work / "cache"),
               "--steps", str(steps), "--seed", str(seed)]
    start = time.perf_counter()
    subprocess.run(command, check=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    train_s = time.perf_counter() - start
    reference = reference or default_checkpoint()
    cache = work / "test-cache"
    rows = {
        "real layout (DFEW tree + descriptions file)": evaluate(out, test_dir, cache),
        "synthetic corpus (the bundled model)": evaluate(reference, test_dir, cache),
    }
    result = {
        "machine": machine_info(),
        "train": {"corpus": shown_path(train_dir), "clips": n_train, "spec": spec.replace(str(work), "<work>"),
                  "steps": steps, "seed": seed, "seconds": train_s},
        "test": {"corpus": shown_path(test_dir), "seed": test_info["config"]["seed"], "clips": test_info["config"]["n"]},
        "reference": shown_path(reference),
        "metrics": rows,
    }
    head = "| metric | " + " | ".join(rows) + " |\n|---|" + "---|" * len(rows) + "\n"
    body = "".join(f"| {title} | " + " | ".join(_fmt(m.get(key)) for m in rows.values()) + " |\n"
                   for key, title in SHOWN)
    m = result["machine"]
    md = (
        "# MIGR through the real-dataset path\n\n"
        f"The training corpus ({n_train} clips) laid out as DFEW fold 1 with a descriptions file made from the "
        "manifest's texts: the recipe sees labels and one text per modality, no cue records and no per-modality "
        f"emotion. Trained with `migr-rt train --recipe migr --data 'dfew:...&descriptions=...' --steps {steps} "
        f"--seed {seed}` in {train_s:.0f} s, then evaluated with the bundled model (same recipe on the corpus "
        f"itself) on the held-out corpus (seed {result['test']['seed']}, {result['test']['clips']} clips), greedy, "
        "the model's own opening.\n\n"
        + head + body
        + f"\nMachine: {m.get('cpu')}, torch {m.get('torch')}, commit {m.get('commit')}. "
        "Reproduce: `python benchmarks/real_layout.py`.\n"
    )
    write_result("real_layout", result, md)


if __name__ == "__main__":
    main()
