"""Rationales of windows with one modality missing: do they describe evidence the model never saw?

    python benchmarks/hidden_modality.py                    # bundled model, held-out test corpus seed 2
    python benchmarks/hidden_modality.py --every 4          # a quicker run

A camera that loses the face, or a microphone that is muted, leaves a window
with one modality. Its rationale should explain from the other one only:
MIGR's training traces leave a hidden modality's segment out. A small model
can still open that segment from habit and fill it with cues it never saw
(no face in view, and a rationale citing "knitted brows"). The runtime's
decoding therefore keeps the trace's shape, which has no segment for a
hidden modality (:class:`migr_rt.backends.trace_grammar.TraceGrammar`).

Each held-out clip is explained through ``Predictor.explain`` twice with its
face removed (``frames=None``) and twice with its voice removed
(``audio=None``): with that grammar (the runtime's decoding) and without it
(the model's argmax as is, the decoding before it; switched off in this
script only).
Both are read like ``migr-rt eval`` reads rationales, with only the visible
modality's cues counted as grounded: how many rationales have a segment for
the missing modality, grounding, and how often the explanation argues for
the answer. The answer is the window's label in both (the runtime default),
so accuracy is the same in both columns by construction.

Writes benchmarks/results/hidden_modality.json and .md.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parent))
from held_out import corpus_options, held_out_corpus, shown_path, write_result  # noqa: E402
from machine import machine_info  # noqa: E402
from migr_rt.training.evaluation import reasoning_metrics, window_record  # noqa: E402
from migr_rt.training.synth.reader import SynthCorpus  # noqa: E402
from migr_rt.training.windows import window_meta  # noqa: E402

import migr_rt.backends.decode as decode  # noqa: E402
from migr_rt.predict import Predictor  # noqa: E402

ARMS = ("constrained", "free")
HIDDEN = ("visual", "audio")


@contextlib.contextmanager
def decoding(arm: str) -> Iterator[None]:
    """``free``: the decoding loop without the trace grammar (the model's argmax, what it did before it)."""
    if arm == "constrained":
        yield
        return
    kept = decode.TraceGrammar
    decode.TraceGrammar = lambda config, visible, prompt: None
    try:
        yield
    finally:
        decode.TraceGrammar = kept


def measure(predictor: Predictor, corpus: SynthCorpus, every: int = 1) -> dict:
    cfg = predictor.config
    records = {(h, arm): [] for h in HIDDEN for arm in ARMS}
    written = {(h, arm): 0 for h in HIDDEN for arm in ARMS}  # rationales with a segment of the hidden modality
    skipped = {h: 0 for h in HIDDEN}  # windows left with no modality at all (no face found, voice removed)
    started = time.monotonic()
    clips = [clip for i, clip in enumerate(corpus) if i % every == 0]
    for n, clip in enumerate(clips):
        meta = window_meta(clip.meta, cfg.modalities)
        for hidden in HIDDEN:
            frames = None if hidden == "visual" else clip.frames
            audio = None if hidden == "audio" else clip.audio
            for arm in ARMS:
                with decoding(arm):
                    rationale = predictor.explain(frames, audio)
                visible = [m for m, seen in rationale.present.items() if seen]
                if not visible:
                    skipped[hidden] += arm == ARMS[0]
                    continue
                written[hidden, arm] += any(m == hidden for m, _ in rationale.parsed.segments)
                records[hidden, arm].append(window_record(
                    rationale.text, id=str(clip.meta["id"]), label=clip.meta["label"], labels=cfg.labels,
                    visible=visible, meta=meta, judge=predictor.judge))
        if (n + 1) % 50 == 0:
            click.echo(f"  {n + 1}/{len(clips)} clips, {time.monotonic() - started:.0f} s", err=True)
    return {
        "clips": len(clips),
        "every": every,
        "no_modality_left": skipped,
        "by_hidden": {
            hidden: {arm: {"windows": len(records[hidden, arm]), "hidden_segment": written[hidden, arm],
                           "metrics": reasoning_metrics(records[hidden, arm], cfg.labels)} for arm in ARMS}
            for hidden in HIDDEN},
        "seconds": time.monotonic() - started,
    }


def markdown(result: dict) -> str:
    r = result["measured"]
    rows = [
        ("rationales with a segment for the missing modality", None, None),
        ("grounding (stated cues the visible modality shows)", "grounding_rate", "{:.3f}"),
        ("answer = emotion its explanation argues for", "answer_explanation_agreement", "{:.3f}"),
        ("ICR (correct answers whose explanation argues for another)", "icr", "{:.3f}"),
        ("format-valid rationales", "format_valid", "{:.3f}"),
        ("accuracy of the answer (the window's label in both)", "war", "{:.3f}"),
    ]

    def cell(hidden: str, arm: str, key: str | None, fmt: str | None) -> str:
        out = r["by_hidden"][hidden][arm]
        if key is None:
            return f"{out['hidden_segment']} of {out['windows']}"
        value = out["metrics"][key]
        return "n/a" if value is None else fmt.format(value)

    head = " | ".join(f"{h} missing: {label}" for h in HIDDEN for label in ("constrained (runtime)", "free (before)"))
    lines = [
        "# Rationales with one modality missing",
        "",
        f"Checkpoint `{result['checkpoint']}` on {result['backend']}, held-out synthetic corpus seed "
        f"{result['test_seed']} ({r['clips']} clips; generator {result['generator_version']}). Each clip explained "
        "with `Predictor.explain` with its face removed (`frames=None`) and with its voice removed (`audio=None`), "
        "each twice: with the runtime's decoding, which keeps the trace's shape and so never opens a missing "
        "modality's segment (`constrained`), and without it (`free`, the model's argmax: the decoding before it). "
        "Read as `migr-rt eval` reads rationales, with only the visible modality's cues counted as grounded. "
        "Produced by "
        "`python benchmarks/hidden_modality.py`.",
        "",
        f"| | {head} |",
        "|---|" + "---|" * (len(HIDDEN) * len(ARMS)),
        *[f"| {name} | " + " | ".join(cell(h, arm, key, fmt) for h in HIDDEN for arm in ARMS) + " |"
          for name, key, fmt in rows],
        "",
        f"Windows left with no modality (voice removed and no face found): {r['no_modality_left']['audio']}; "
        "they get no rationale and are not counted.",
        "",
        f"Machine: {result['machine']['cpu']}, {result['machine']['cores']} cores, commit "
        f"{result['machine']['commit']}; {r['seconds']:.0f} s.",
    ]
    return "\n".join(lines) + "\n"


@click.command()
@click.option("--checkpoint", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
              help="A trained checkpoint or an exported artifact (default: the bundled model, as auto runs it).")
@corpus_options("hidden_modality")
def main(checkpoint: Path | None, data: Path, test_seed: int, n: int, every: int, name: str) -> None:
    info = held_out_corpus(data, test_seed, n)
    predictor = Predictor(checkpoint)
    if not predictor.reasons:
        raise click.UsageError(f"{predictor.checkpoint} is a base checkpoint: it was never trained to write rationales")
    measured = measure(predictor, SynthCorpus(data / "manifest.jsonl"), every=every)
    result = {"checkpoint": shown_path(Path(predictor.checkpoint)), "backend": predictor.backend.describe(),
              "test_seed": info["config"]["seed"], "generator_version": info["version"], "measured": measured,
              "machine": machine_info()}
    write_result(name, result, markdown(result))


if __name__ == "__main__":
    main()
