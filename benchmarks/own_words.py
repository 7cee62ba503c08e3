"""MIGR on a dataset described in its own words, with and without a cue lexicon for them.

    python benchmarks/own_words.py --train runs/synth-train --test runs/synth-test --work runs/own-words

Real descriptions do not use the built-in cue vocabulary. Without a lexicon
for their words, the judge reads no cue in them. GRPO then has no
consistency, grounding or coverage reward to give, and ICR cannot be
measured. This benchmark writes the training and test corpora as DFEW trees
whose descriptions say every cue in other words: each built-in phrase and
intensity word is replaced by its counterpart in ``docs/lexicon_example.json``,
a cue-for-cue paraphrase with the same support weights. It then trains
``migr`` twice with the bundled model's settings:

* with ``--lexicon docs/lexicon_example.json``;
* without it, which is what this data got before lexicons existed.

Both are evaluated on the paraphrased test tree with the lexicon. The first
is also judged with the built-in vocabulary, to show what goes unmeasured
without a lexicon.

Before training, the rewrite is checked clip by clip: the example lexicon
must read the same cues and verdicts in every rewritten description as the
built-in vocabulary reads in the original, and the built-in vocabulary must
read nothing in it.

Writes benchmarks/results/own_words.{json,md}.
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

import click

sys.path.insert(0, str(Path(__file__).resolve().parent))
from held_out import REPO, RESULTS, held_out_corpus, shown_path, write_result  # noqa: E402
from machine import machine_info  # noqa: E402
from real_layout import dfew_layout, evaluate  # noqa: E402
from migr_rt.training.data_report import lexicon_coverage  # noqa: E402
from migr_rt.training.judge import CueJudge, described_cues  # noqa: E402
from migr_rt.training.lexicon import CueLexicon, load_lexicon, translate  # noqa: E402
from migr_rt.training.synth.cues import LEXICON  # noqa: E402
from migr_rt.training.sources import open_source  # noqa: E402
from migr_rt.training.synth.reader import read_manifest  # noqa: E402

EXAMPLE = REPO / "docs" / "lexicon_example.json"

#: The metrics the table shows, in order: (key in reasoning_metrics, heading).
SHOWN = (
    ("war", "WAR"),
    ("answer_slot_accuracy", "answer-slot accuracy"),
    ("icr", "ICR"),
    ("icr_no_cue", "correct answers whose explanation states no cue the judge reads (count)"),
    ("label_closed_icr", "ICR, closed with the label"),
    ("grounding_rate", "grounding"),
    ("coverage", "coverage"),
    ("format_valid", "well formed"),
)


def translator(source: CueLexicon, target: CueLexicon) -> Callable[[str], str]:
    """Rewrite text stated in ``source``'s words into ``target``'s, refusing a target that misses a cue."""
    missing = sorted({c.name for c in source.cues} - {c.name for c in target.cues})
    if missing:
        raise click.ClickException(f"the target lexicon has no cue named {missing}; it must paraphrase every cue")
    return lambda text: translate(text, source, target)


def check_rewrite(records: list[dict], rewrite: Callable[[str], str], lexicon: CueLexicon) -> dict:
    """Per description: does ``lexicon`` read the rewrite as the built-in vocabulary reads the original?"""
    texts = [rec[f"{m}_text"] for rec in records for m in ("visual", "audio")]
    base, own = CueJudge(), CueJudge(lexicon=lexicon)
    same_scores = sum(base.emotion_scores(t) == own.emotion_scores(rewrite(t)) for t in texts)
    clip_cues = sum(
        described_cues({m: rec[f"{m}_text"] for m in ("visual", "audio")})
        == described_cues({m: rewrite(rec[f"{m}_text"]) for m in ("visual", "audio")}, lexicon)
        for rec in records
    )
    unread = sum(not LEXICON.find(rewrite(t)) for t in texts)
    result = {"descriptions": len(texts), "same_scores": same_scores, "clips": len(records),
              "same_clip_cues": clip_cues, "builtin_reads_nothing": unread}
    if same_scores != len(texts) or clip_cues != len(records) or unread != len(texts):
        raise click.ClickException(f"the rewrite does not preserve the cues: {result}")
    return result


def train(spec: str, out: Path, work: Path, steps: int, seed: int, lexicon: Path | None) -> float:
    """``migr-rt train --recipe migr`` afresh (a rerun would resume); the seconds it took."""
    for stale in (out, work / f"{out.name}.work"):
        shutil.rmtree(stale, ignore_errors=True)
    command = [sys.executable, "-m", "migr_rt.cli", "train", "--recipe", "migr", "--data", spec, "--out", str(out),
               "--work-dir", str(work / f"{out.name}.work"), "--cache-dir", str(work / "cache"),
               "--steps", str(steps), "--seed", str(seed)]
    if lexicon is not None:
        command += ["--lexicon", str(lexicon)]
    start = time.perf_counter()
    subprocess.run(command, check=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    return time.perf_counter() - start


def _fmt(value) -> str:
    if value is None:
        return "n/a"
    return str(value) if isinstance(value, int) else f"{value:.3f}"


@click.command()
@click.option("--train", "train_dir", type=click.Path(path_type=Path), default=Path("runs/synth-train"), show_default=True)
@click.option("--test", "test_dir", type=click.Path(path_type=Path), default=Path("runs/synth-test"), show_default=True)
@click.option("--work", type=click.Path(path_type=Path), default=Path("runs/own-words"), show_default=True)
@click.option("--lexicon", "lexicon_path", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              default=EXAMPLE, show_default=True)
@click.option("--steps", type=int, default=1200, show_default=True, help="Base steps (the bundled model's).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--without/--no-without", default=True, show_default=True,
              help="Also train without the lexicon (the comparison row).")
@click.option("--render-only", is_flag=True, help="Rewrite results/own_words.md from results/own_words.json.")
def main(train_dir: Path, test_dir: Path, work: Path, lexicon_path: Path, steps: int, seed: int, without: bool,
         render_only: bool) -> None:
    if render_only:
        result = json.loads((RESULTS / "own_words.json").read_text())
        write_result("own_words", result, render(result))
        return
    if not (train_dir / "manifest.jsonl").is_file():
        raise click.ClickException(f"{train_dir}: no training corpus (make it with: migr-rt synth --n 2400 --seed 1 "
                                   f"--out {train_dir})")
    test_info = held_out_corpus(test_dir, seed=2, n=420)
    lexicon = load_lexicon(lexicon_path)
    rewrite = translator(LEXICON, lexicon)
    check = check_rewrite(read_manifest(train_dir / "manifest.jsonl") + read_manifest(test_dir / "manifest.jsonl"),
                          rewrite, lexicon)
    work.mkdir(parents=True, exist_ok=True)
    # one folder each: a tree's descriptions file lies beside it
    train_spec, n_train = dfew_layout(train_dir, work / "train" / "DFEW", rewrite)
    test_spec, n_test = dfew_layout(test_dir, work / "test" / "DFEW", rewrite)
    for spec, n in ((train_spec, n_train), (test_spec, n_test)):
        read = lexicon_coverage(open_source(spec), lexicon)
        if read.described != n or read.readable != n:
            raise click.ClickException(f"{spec}: {read.readable} of {read.described} described clips readable, "
                                       f"{n} clips laid out; every clip must be described and readable")
    seconds = {"with lexicon": train(train_spec, work / "with-lexicon", work, steps, seed, lexicon_path)}
    if without:
        seconds["without lexicon"] = train(train_spec, work / "without-lexicon", work, steps, seed, None)
    cache = work / "test-cache"
    rows = {
        "trained with the lexicon, judged with it": evaluate(work / "with-lexicon", test_spec, cache, lexicon),
        "trained with the lexicon, judged with the built-in vocabulary": evaluate(work / "with-lexicon", test_spec,
                                                                                  cache, LEXICON),
    }
    if without:
        rows["trained without a lexicon, judged with it"] = evaluate(work / "without-lexicon", test_spec, cache, lexicon)
    result = {
        "machine": machine_info(),
        "lexicon": {"file": shown_path(lexicon_path), "name": lexicon.name, "digest": lexicon.digest,
                    "cues": len(lexicon.cues)},
        "rewrite_check": check,
        "train": {"corpus": shown_path(train_dir), "clips": n_train, "steps": steps, "seed": seed, "seconds": seconds},
        "test": {"corpus": shown_path(test_dir), "seed": test_info["config"]["seed"], "clips": n_test},
        "metrics": rows,
    }
    write_result("own_words", result, render(result))


def render(result: dict) -> str:
    """The markdown table of a result (``--render-only`` rewrites it from the committed JSON)."""
    rows, check, train_info, test = result["metrics"], result["rewrite_check"], result["train"], result["test"]
    head = "| metric | " + " | ".join(rows) + " |\n|---|" + "---|" * len(rows) + "\n"
    body = "".join(f"| {title} | " + " | ".join(_fmt(m.get(key)) for m in rows.values()) + " |\n"
                   for key, title in SHOWN)
    m = result["machine"]
    timing = ", ".join(f"{k} {v:.0f} s" for k, v in train_info["seconds"].items())
    return (
        "# MIGR on descriptions in other words, with and without a cue lexicon\n\n"
        f"The training corpus ({train_info['clips']} clips) and the held-out corpus (seed {test['seed']}, "
        f"{test['clips']} clips) laid out as DFEW trees whose descriptions state every cue in other words: each "
        f"built-in phrase and intensity word replaced by its counterpart in `{result['lexicon']['file']}` "
        f"({result['lexicon']['cues']} cues, same support weights). "
        f"Rewrite check: the lexicon reads the same emotion scores in {check['same_scores']}/{check['descriptions']} "
        f"rewritten descriptions, and the same cues in {check['same_clip_cues']}/{check['clips']} clips, as the "
        "built-in vocabulary reads in the originals. The built-in vocabulary reads no cue in "
        f"{check['builtin_reads_nothing']}/{check['descriptions']} of them.\n\n"
        f"Trained with `migr-rt train --recipe migr --data 'dfew:...&descriptions=...' --steps {train_info['steps']} "
        f"--seed {train_info['seed']}` ({timing}), then evaluated greedy, with the model's own opening. One seed: "
        "the synthetic corpus path's migr ICR ranges 0.042-0.053 over three seeds.\n\n"
        + head + body
        + f"\nMachine: {m.get('cpu')}, torch {m.get('torch')}, commit {m.get('commit')}. "
        "Reproduce: `python benchmarks/own_words.py`.\n"
    )


if __name__ == "__main__":
    main()
