"""The MIGR experiment's rationales read as the runtime closes them: with the answer-slot label.

    python benchmarks/label_closed_icr.py          # after `make experiment` (runs/exp, runs/exp-seed1, -seed2)

``migr-rt eval`` scores a rationale's own closing answer; the runtime closes
every rationale with the label it read at the answer slot
(:class:`~migr_rt.backends.decode.AnswerAnchor`), and the explanation before
it is the same. This rereads each committed evaluation's ``predictions.jsonl``
(the judge's verdict on each explanation) against its checkpoint's
answer-slot label, computed here in one batched scoring pass over the same
held-out windows, so no rationale is regenerated and no training is rerun.
Evaluations written since the slot label is recorded carry the same numbers
in their own ``eval.json`` (``label_closed_*``).

Writes benchmarks/results/label_closed_icr.json and .md.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from held_out import write_result  # noqa: E402
from machine import machine_info  # noqa: E402
from migr_rt.training.base_recipe import load_or_extract  # noqa: E402
from migr_rt.training.evaluation import WindowRecord, reasoning_metrics  # noqa: E402
from migr_rt.training.sources import open_source  # noqa: E402

from migr_rt.mi import score_modality_importance  # noqa: E402
from migr_rt.model import load_checkpoint  # noqa: E402

#: evaluation folder -> the checkpoint it decoded
EVALS = {"baseline": "baseline", "baseline+mi_opening": "baseline", "migr": "migr", "migr+mi_opening": "migr"}
WORKS = {0: "runs/exp", 1: "runs/exp-seed1", 2: "runs/exp-seed2"}


def slot_labels(model, windows) -> dict[str, str]:
    predicted: list[int] = []
    with torch.no_grad():
        for first in range(0, len(windows), 64):
            pixels, audio, present, _ = windows.batch(torch.arange(first, min(first + 64, len(windows))))
            predicted += score_modality_importance(model, pixels, audio, present=present).predicted.tolist()
    return {windows.ids[i]: model.config.labels[p] for i, p in enumerate(predicted)}


def reread(predictions: Path, slots: dict[str, str], labels) -> dict:
    records = []
    for line in predictions.read_text().splitlines():
        row = json.loads(line)
        row["slot_label"] = slots[row["id"]]
        records.append(WindowRecord(**row))
    m = reasoning_metrics(records, labels)
    keys = ("windows", "war", "icr", "icr_inconsistent", "answer_explanation_agreement", "label_closed_icr",
            "label_closed_icr_inconsistent", "label_closed_explanation_agreement")
    return {k: m[k] for k in keys} | {"slot_war": sum(r.slot_label == r.label for r in records) / len(records)}


def markdown(result: dict) -> str:
    rows = result["rows"]
    lines = [
        "# The MIGR experiment, read as the runtime closes rationales",
        "",
        "Every committed evaluation of the experiment (held-out corpus seed 2, 420 clips) reread with each "
        "rationale closed by its checkpoint's answer-slot label, as the runtime closes it; the explanations are "
        "the evaluated ones, unchanged. Own = the rationale's own closing answer (what `reasoning_experiment.md` "
        "reports); closed = the answer-slot label. ICR: share of correct answers whose explanation argues for "
        "another emotion; agreement: share of all windows whose explanation argues for the answer it closes with. "
        "Produced by `python benchmarks/label_closed_icr.py`.",
        "",
        "| seed | evaluation | WAR own / closed | ICR own / closed (count) | agreement own / closed |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        m = row["metrics"]
        lines.append(
            f"| {row['seed']} | {row['evaluation']} | {m['war']:.3f} / {m['slot_war']:.3f} | "
            f"{m['icr']:.3f} ({m['icr_inconsistent']}) / {m['label_closed_icr']:.3f} "
            f"({m['label_closed_icr_inconsistent']}) | "
            f"{m['answer_explanation_agreement']:.3f} / {m['label_closed_explanation_agreement']:.3f} |"
        )
    lines += ["", "Over the seeds (inconsistent explanations summed, against the baseline decoding freely):", ""]
    for name, ratio in result["ratios"].items():
        lines.append(f"- {name}: {ratio['closed']} / {ratio['baseline_closed']} closed = {ratio['closed_ratio']:.2f}x "
                     f"(own closing: {ratio['own']} / {ratio['baseline_own']} = {ratio['own_ratio']:.2f}x)")
    lines += ["", f"Machine: {result['machine']['cpu']}, torch {result['machine']['torch']}, "
                  f"commit {result['machine']['commit']}."]
    return "\n".join(lines) + "\n"


@click.command()
@click.option("--test-data", default="runs/synth-test", show_default=True)
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/cache"),
              show_default=True)
def main(test_data: str, cache_dir: Path) -> None:
    windows = None
    rows = []
    for seed, work in WORKS.items():
        slots = {}
        for evaluation, variant in EVALS.items():
            predictions = Path(work) / f"{evaluation}.eval" / "predictions.jsonl"
            if not predictions.is_file():
                raise click.UsageError(f"{predictions} is missing: run the experiment (make experiment) first")
            if variant not in slots:
                model, _ = load_checkpoint(Path(work) / variant)
                labels = model.config.labels
                if windows is None:
                    windows = load_or_extract(open_source(test_data), model.config, cache_dir, None)
                slots[variant] = slot_labels(model, windows)
            rows.append({"seed": seed, "evaluation": evaluation,
                         "metrics": reread(predictions, slots[variant], labels)})
            click.echo(f"seed {seed} {evaluation}: {rows[-1]['metrics']}", err=True)
    ratios = {}
    base = [r["metrics"] for r in rows if r["evaluation"] == "baseline"]
    for name in ("migr", "migr+mi_opening", "baseline+mi_opening"):
        got = [r["metrics"] for r in rows if r["evaluation"] == name]
        closed, own = (sum(m["label_closed_icr_inconsistent"] for m in got), sum(m["icr_inconsistent"] for m in got))
        b_closed = sum(m["label_closed_icr_inconsistent"] for m in base)
        b_own = sum(m["icr_inconsistent"] for m in base)
        ratios[name] = {"closed": closed, "baseline_closed": b_closed, "closed_ratio": closed / b_closed,
                        "own": own, "baseline_own": b_own, "own_ratio": own / b_own}
    result = {"test": test_data, "rows": rows, "ratios": ratios, "machine": machine_info()}
    write_result("label_closed_icr", result, markdown(result))


if __name__ == "__main__":
    main()
