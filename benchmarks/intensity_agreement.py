"""Are the explanations' intensity words faithful? Stored rationales read again for the intensity they claim.

    python benchmarks/intensity_agreement.py --runs runs --test runs/synth-test

Grounding checks that a stated cue is in the input, not that it is as strong
as said. A rationale that writes "strongly raised cheeks" for a slight cue is
grounded, yet it tips the judge (support x intensity) towards what it
argues. This reads the rationales the reasoning experiment
(``benchmarks/reasoning_experiment.py``) generated on the 420 held-out clips,
for the baseline and migr recipes over its three seeds (migr seed 0 is
the bundled model), and compares every intensity word stated for a shown cue with the
word the clip's description uses (:func:`~migr_rt.training.judge.intensity_agreement`).
Nothing is generated here: the texts are the stored ``predictions.jsonl``.

Besides the agreement it reports the mean signed error (stated weight minus
the description's: > 0 overstates) for cues that support the window's answer
most and for the others, and the confusion of stated against described
words. Writes ``benchmarks/results/intensity_agreement.{json,md}``.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parent))
from held_out import write_result  # noqa: E402
from machine import machine_info  # noqa: E402
from migr_rt.training.judge import described_intensities, intensity_agreement, strength_statements  # noqa: E402
from migr_rt.training.synth.cues import INTENSITY_WORDS, LEXICON  # noqa: E402
from migr_rt.training.synth.reader import read_manifest  # noqa: E402

from migr_rt.labels import DFEW_LABELS, MODALITIES  # noqa: E402
from migr_rt.traces import parse_trace  # noqa: E402

#: (row name, eval folder under --runs): the reasoning experiment's three seeds (migr seed 0 is the bundled model).
RUNS = tuple(
    (f"{recipe} seed {seed}", f"{work}/{recipe}.eval")
    for seed, work in ((0, "exp"), (1, "exp-seed1"), (2, "exp-seed2"))
    for recipe in ("baseline", "migr")
)
WORD_OF = {weight: word for word, weight in INTENSITY_WORDS.items()}
BARE = "(bare)"


def read_run(predictions: Path, clips: dict[str, dict]) -> dict:
    """Agreement, signed errors and the word confusion of one eval folder's stored rationales."""
    per_window, errors, confusion = [], {"answer": [], "other": []}, Counter()
    for line in predictions.read_text().splitlines():
        pred = json.loads(line)
        record = clips[pred["id"]]
        visible = [m for m in MODALITIES if m in pred["visible"]]
        described = {m: record[f"{m}_text"] for m in visible}
        shown = described_intensities(described, LEXICON) or {}
        parsed = parse_trace(pred["text"], DFEW_LABELS)
        rate = intensity_agreement(parsed, shown, LEXICON)
        if rate is not None:
            per_window.append(rate)
        for st in strength_statements(parsed, shown, LEXICON):
            side = "answer" if parsed.answer is not None and st.cue.top_emotion == parsed.answer else "other"
            errors[side].append(st.weight - shown[st.cue.name])
            confusion[(WORD_OF[shown[st.cue.name]], st.intensity or BARE)] += 1
    mean = (lambda v: sum(v) / len(v) if v else None)
    return {
        "windows": len(per_window),
        "intensity_agreement": mean(per_window),
        "statements": sum(confusion.values()),
        "pooled_agreement": (sum(n for (true, said), n in confusion.items() if true == said)
                             / sum(confusion.values()) if confusion else None),
        "bare_statements": sum(n for (_, said), n in confusion.items() if said == BARE),
        "signed_error": {side: mean(v) for side, v in errors.items()},
        "statements_by_side": {side: len(v) for side, v in errors.items()},
        "overstated_share": {side: (sum(e > 1e-9 for e in v) / len(v) if v else None) for side, v in errors.items()},
        "confusion": {f"{true}->{said}": n for (true, said), n in sorted(confusion.items())},
    }


@click.command()
@click.option("--runs", type=click.Path(file_okay=False, path_type=Path), default=Path("runs"), show_default=True)
@click.option("--test", "test_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/synth-test"),
              show_default=True)
def main(runs: Path, test_dir: Path) -> None:
    clips = {rec["id"]: rec for rec in read_manifest(test_dir / "manifest.jsonl")}
    rows = {}
    for name, folder in RUNS:
        predictions = runs / folder / "predictions.jsonl"
        if not predictions.is_file():
            raise click.ClickException(f"{predictions}: missing; run benchmarks/reasoning_experiment.py first")
        rows[name] = read_run(predictions, clips)
        click.echo(f"{name}: {rows[name]['intensity_agreement']:.3f} over {rows[name]['windows']} windows", err=True)
    result = {"machine": machine_info(), "test": str(test_dir), "clips": len(clips), "runs": rows,
              "words": dict(INTENSITY_WORDS)}
    write_result("intensity_agreement", result, render(result))


def _fmt(value: float | None, signed: bool = False) -> str:
    return "n/a" if value is None else (f"{value:+.3f}" if signed else f"{value:.3f}")


def render(result: dict) -> str:
    rows = result["runs"]
    head = ("| run | windows | intensity agreement | pooled over statements | statements (bare) "
            "| overstated, answer's cues | overstated, other cues "
            "| mean error, answer's cues | mean error, other cues |\n|---|---|---|---|---|---|---|---|---|\n")
    body = "".join(
        f"| {name} | {r['windows']} | {_fmt(r['intensity_agreement'])} | {_fmt(r['pooled_agreement'])} | "
        f"{r['statements']} ({r['bare_statements']}) | "
        f"{_fmt(r['overstated_share']['answer'])} | {_fmt(r['overstated_share']['other'])} | "
        f"{_fmt(r['signed_error']['answer'], True)} | {_fmt(r['signed_error']['other'], True)} |\n"
        for name, r in rows.items())
    words = list(result["words"])
    stated = words + [BARE]
    bundled = rows["migr seed 0"]["confusion"]
    matrix = ("| described \\ stated | " + " | ".join(stated) + " |\n|---|" + "---|" * len(stated) + "\n"
              + "".join(f"| {true} | " + " | ".join(str(bundled.get(f"{true}->{said}", 0)) for said in stated) + " |\n"
                        for true in words))
    m = result["machine"]
    return (
        "# Intensity agreement of stored rationales\n\n"
        f"The rationales the reasoning experiment generated on the {result['clips']} held-out clips "
        f"(`{result['test']}`), read again: every intensity word an explanation states for a cue the clip shows "
        "(visible modalities only) is compared with the word the clip's description uses, as the judge weighs it: "
        "a bare phrase counts 1.0, like the strongest word. Agreement is the mean per window of the share that "
        "match, over windows stating at least one; pooled, the share over all statements. Error is the stated "
        f"weight minus the described one ({', '.join(f'{w} {v}' for w, v in result['words'].items())}); the "
        "answer's cues are those whose strongest support is the emotion the rationale answers. migr seed 0 is the "
        "bundled model.\n\n"
        + head + body
        + "\nStated against described words, migr seed 0 = the bundled model (statements):\n\n" + matrix
        + f"\nMachine: {m.get('cpu')}, commit {m.get('commit')}. Reproduce: `python benchmarks/intensity_agreement.py`"
        " after `benchmarks/reasoning_experiment.py` for seeds 0-2.\n"
    )


if __name__ == "__main__":
    main()
