"""Which answer should close a rationale: the window's fast label, or the one the model writes after explaining?

    python benchmarks/rationale_answer.py                   # bundled model, held-out test corpus seed 2
    python benchmarks/rationale_answer.py --checkpoint runs/x --data runs/synth-test

The runtime reads the label at the answer slot before any rationale is
written (the fast event), then generates the rationale; left to itself the
model closes that rationale with an answer of its own, which can name another
emotion than the label already reported. Each held-out clip is explained
twice through the public API: ``Predictor.explain(answer="label")`` (the
default: closed with the label) and ``answer="model"`` (the model's own
closing). Both are read like ``migr-rt eval`` reads rationales (the cue judge
never sees the answer): accuracy, ICR, and how often the answer and the
emotion its explanation argues for agree. Also measured: whether a
``model_answer`` that differs from the label flags an explanation that argues
for another emotion than the label (precision and recall of that flag).

Writes benchmarks/results/rationale_answer.json and .md.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parent))
from held_out import corpus_options, held_out_corpus, shown_path, write_result  # noqa: E402
from machine import machine_info  # noqa: E402
from migr_rt.training.evaluation import reasoning_metrics, window_record  # noqa: E402
from migr_rt.training.synth.reader import SynthCorpus  # noqa: E402
from migr_rt.training.windows import window_meta  # noqa: E402

from migr_rt.bundled import default_checkpoint  # noqa: E402
from migr_rt.predict import Predictor  # noqa: E402

MODES = ("label", "model")


def measure(predictor: Predictor, corpus: SynthCorpus, every: int = 1) -> dict:
    cfg = predictor.config
    judge = predictor.judge  # the cue judge over the checkpoint's lexicon
    records = {mode: [] for mode in MODES}
    same_explanation = differ = 0
    flag = {"flagged": 0, "flagged_inconsistent": 0, "inconsistent": 0}
    started = time.monotonic()
    clips = [clip for i, clip in enumerate(corpus) if i % every == 0]
    for n, clip in enumerate(clips):
        meta = window_meta(clip.meta, cfg.modalities)
        out = {mode: predictor.explain(clip.frames, clip.audio, answer=mode) for mode in MODES}
        visible = [m for m, seen in out["label"].present.items() if seen]
        for mode, rationale in out.items():
            records[mode].append(window_record(rationale.text, id=str(clip.meta["id"]), label=clip.meta["label"],
                                               labels=cfg.labels, visible=visible, meta=meta, judge=judge))
        anchored, own = out["label"], out["model"]
        same_explanation += (anchored.parsed.segments == own.parsed.segments
                             and anchored.parsed.summary == own.parsed.summary)
        differ += anchored.model_answer != anchored.label
        # does "model_answer != label" point at the explanations that argue for another emotion than the label?
        against = records["label"][-1].implied != anchored.label
        flagged = anchored.model_answer != anchored.label
        flag["inconsistent"] += against
        flag["flagged"] += flagged
        flag["flagged_inconsistent"] += flagged and against
        if (n + 1) % 50 == 0:
            click.echo(f"  {n + 1}/{len(clips)} clips, {time.monotonic() - started:.0f} s", err=True)
    metrics = {mode: reasoning_metrics(recs, cfg.labels) for mode, recs in records.items()}
    return {
        "clips": len(clips),
        "every": every,
        "same_explanation": same_explanation,
        "model_answer_differs": differ,
        "flag": {**flag,
                 "precision": flag["flagged_inconsistent"] / flag["flagged"] if flag["flagged"] else None,
                 "recall": flag["flagged_inconsistent"] / flag["inconsistent"] if flag["inconsistent"] else None},
        "metrics": metrics,
        "seconds": time.monotonic() - started,
    }


def markdown(result: dict) -> str:
    r = result["measured"]
    m = r["metrics"]
    rows = [
        ("WAR (accuracy of the answer)", "war", "{:.3f}"),
        ("UAR", "uar", "{:.3f}"),
        ("answer = emotion its explanation argues for", "answer_explanation_agreement", "{:.3f}"),
        ("ICR (correct answers whose explanation argues for another)", "icr", "{:.3f}"),
        ("correct answers with such an explanation", "icr_inconsistent", "{}"),
        ("format-valid rationales", "format_valid", "{:.3f}"),
    ]
    flag = r["flag"]

    def cell(mode: str, key: str, fmt: str) -> str:
        value = m[mode][key]
        return "n/a" if value is None else fmt.format(value)

    lines = [
        "# Which answer closes a rationale: the window's label or the model's own",
        "",
        f"Checkpoint `{result['checkpoint']}` on {result.get('backend', 'torch')}, held-out synthetic corpus seed "
        f"{result['test_seed']} "
        f"({r['clips']} clips; generator {result['generator_version']}). Each clip explained twice with "
        "`Predictor.explain`: `answer=\"label\"` (the runtime's default: the rationale closes with the window's "
        "fast label) and `answer=\"model\"` (the model's own closing answer, which `migr-rt eval` scores as WAR "
        "and ICR). "
        "Produced by `python benchmarks/rationale_answer.py`.",
        "",
        "| | closed with the label | model's own answer |",
        "|---|---|---|",
        *[f"| {name} | {cell('label', key, fmt)} | {cell('model', key, fmt)} |" for name, key, fmt in rows],
        "",
        f"The explanation (segments and summary) is the same in both modes on {r['same_explanation']} of "
        f"{r['clips']} clips: only the closing answer differs. The model's own answer differs from the label on "
        f"{r['model_answer_differs']} clips.",
        "",
        f"`model_answer != label` as a flag of an explanation that argues for another emotion than the label: "
        f"{flag['flagged']} flagged, {flag['inconsistent']} such explanations, {flag['flagged_inconsistent']} "
        f"caught (precision {_rate(flag['precision'])}, recall {_rate(flag['recall'])}).",
        "",
        f"Machine: {result['machine']['cpu']}, {result['machine']['cores']} cores, torch {result['machine']['torch']}, "
        f"commit {result['machine']['commit']}; {r['seconds']:.0f} s.",
    ]
    return "\n".join(lines) + "\n"


def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


@click.command()
@click.option("--checkpoint", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None)
@corpus_options("rationale_answer")
def main(checkpoint: Path | None, data: Path, test_seed: int, n: int, every: int, name: str) -> None:
    info = held_out_corpus(data, test_seed, n)
    checkpoint = checkpoint or default_checkpoint()
    predictor = Predictor(checkpoint)
    if not predictor.reasons:
        raise click.UsageError(f"{checkpoint} is a base checkpoint: it was never trained to write rationales")
    measured = measure(predictor, SynthCorpus(data / "manifest.jsonl"), every=every)
    result = {"checkpoint": shown_path(checkpoint), "backend": predictor.backend.describe(),
              "test_seed": info["config"]["seed"], "generator_version": info["version"], "measured": measured,
              "machine": machine_info()}
    write_result(name, result, markdown(result))


if __name__ == "__main__":
    main()
