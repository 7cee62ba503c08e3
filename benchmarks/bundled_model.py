"""Accuracy, MI quality and per-window latency of a checkpoint on a held-out synthetic corpus.

    python benchmarks/bundled_model.py                      # bundled model, test corpus seed 2
    python benchmarks/bundled_model.py --checkpoint runs/x --data runs/synth-test

Writes benchmarks/results/bundled_model.json and .md. The test corpus uses a
different seed from the training corpus, so no clip was seen in training.
Latency is window -> label + MI through the Python API (face detection,
encoders, one batched B x (1 + M) decoder pass), warm, on this CPU.
"""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from pathlib import Path

import click
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from held_out import held_out_corpus, shown_path, write_result  # noqa: E402
from machine import machine_info  # noqa: E402
from migr_rt.training.synth.reader import SynthCorpus  # noqa: E402

from migr_rt.bundled import default_checkpoint  # noqa: E402
from migr_rt.predict import Predictor  # noqa: E402


def evaluate(predictor: Predictor, corpus: SynthCorpus) -> dict:
    labels = predictor.config.labels
    rows = []
    latencies = []
    for i, clip in enumerate(corpus):
        if i == 0:
            predictor.predict(clip.frames, clip.audio)  # warm-up
        t0 = time.perf_counter()
        pred = predictor.predict(clip.frames, clip.audio)
        latencies.append(time.perf_counter() - t0)
        rows.append((clip.meta, pred))
    correct = [p.label == m["label"] for m, p in rows]
    recall = {lab: float(np.mean([c for (m, _), c in zip(rows, correct) if m["label"] == lab])) for lab in labels}
    by_kind = defaultdict(list)
    for (m, _), c in zip(rows, correct):
        by_kind[m["kind"]].append(c)
    one_sided = [(m, p) for m, p in rows if m["one_sided"]]
    lat = np.array(latencies) * 1000
    return {
        "clips": len(rows),
        "war": float(np.mean(correct)),
        "uar": float(np.mean(list(recall.values()))),
        "recall": recall,
        "accuracy_by_kind": {k: float(np.mean(v)) for k, v in sorted(by_kind.items())},
        "mi_dominant_agreement_one_sided": float(np.mean([p.dominant == m["dominant"] for m, p in one_sided])),
        "one_sided_clips": len(one_sided),
        "mi_dominant_agreement_all": float(np.mean([p.dominant == m["dominant"] for m, p in rows])),
        "face_found_rate": float(np.mean([p.face_found for _, p in rows])),
        "latency_ms": {"p50": float(np.percentile(lat, 50)), "p95": float(np.percentile(lat, 95)), "mean": float(lat.mean())},
    }


def markdown(result: dict) -> str:
    r = result["metrics"]
    lines = [
        "# Bundled model on the held-out synthetic test corpus",
        "",
        f"Checkpoint `{result['checkpoint']}`, test corpus seed {result['test_seed']} ({r['clips']} clips, "
        f"never seen in training; synthetic generator {result['generator_version']}). "
        "Produced by `python benchmarks/bundled_model.py`.",
        "",
        "| metric | value |",
        "|---|---|",
        f"| WAR (accuracy) | {r['war']:.3f} |",
        f"| UAR (mean per-class recall) | {r['uar']:.3f} |",
        f"| MI dominant modality = generator's, one-sided clips ({r['one_sided_clips']}) | {r['mi_dominant_agreement_one_sided']:.3f} |",
        f"| MI dominant modality = generator's, all clips | {r['mi_dominant_agreement_all']:.3f} |",
        f"| face found (Haar) | {r['face_found_rate']:.3f} |",
        f"| window -> label + MI latency p50 / p95 (ms, CPU) | {r['latency_ms']['p50']:.1f} / {r['latency_ms']['p95']:.1f} |",
        "",
        "Accuracy by clip kind: " + ", ".join(f"{k} {v:.3f}" for k, v in r["accuracy_by_kind"].items()) + ".",
        "",
        "Per-class recall: " + ", ".join(f"{k} {v:.3f}" for k, v in r["recall"].items()) + ".",
        "",
        f"Machine: {result['machine']['cpu']}, {result['machine']['cores']} cores, torch {result['machine']['torch']} "
        f"({result['machine']['torch_threads']} threads), Python {result['machine']['python']}, commit {result['machine']['commit']}.",
    ]
    return "\n".join(lines) + "\n"


@click.command()
@click.option("--checkpoint", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None)
@click.option("--data", type=click.Path(path_type=Path), default=Path("runs/synth-test"), show_default=True,
              help="Test corpus folder; generated (seed --test-seed) when missing.")
@click.option("--test-seed", type=int, default=2, show_default=True)
@click.option("--n", type=int, default=420, show_default=True)
@click.option("--name", default="bundled_model", show_default=True, help="Result file stem in benchmarks/results/.")
def main(checkpoint: Path | None, data: Path, test_seed: int, n: int, name: str) -> None:
    info = held_out_corpus(data, test_seed, n)
    checkpoint = checkpoint or default_checkpoint()
    predictor = Predictor(checkpoint)
    metrics = evaluate(predictor, SynthCorpus(data / "manifest.jsonl"))
    result = {"checkpoint": shown_path(checkpoint), "test_seed": info["config"]["seed"],
              "generator_version": info["version"], "metrics": metrics, "machine": machine_info()}
    write_result(name, result, markdown(result))


if __name__ == "__main__":
    main()
