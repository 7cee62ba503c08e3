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

Writes benchmarks/results/own_words.{json,md} (seed 0) or own_words_seed<N>.{json,md};
``--summarise`` then tabulates every seed's result in own_words_seeds.{json,md}:

    python benchmarks/own_words.py --seed 1 && python benchmarks/own_words.py --seed 2
    python benchmarks/own_words.py --summarise
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
from held_out import REPO, RESULTS, held_out_corpus, seed_table_head, shown_path, write_result  # noqa: E402
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
@click.option("--render-only", is_flag=True, help="Rewrite this seed's markdown from its committed JSON.")
@click.option("--summarise", is_flag=True, help="Tabulate every seed's committed result (own_words_seeds.md).")
def main(train_dir: Path, test_dir: Path, work: Path, lexicon_path: Path, steps: int, seed: int, without: bool,
         render_only: bool, summarise: bool) -> None:
    stem = result_name(seed)
    if summarise:
        results = seed_results()
        write_result("own_words_seeds", summary(results), render_summary(results))
        return
    if render_only:
        result = json.loads((RESULTS / f"{stem}.json").read_text())
        write_result(stem, result, render(result))
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
    suffix = "" if seed == 0 else f"-seed{seed}"
    with_it, without_it = work / f"with-lexicon{suffix}", work / f"without-lexicon{suffix}"
    seconds = {"with lexicon": train(train_spec, with_it, work, steps, seed, lexicon_path)}
    if without:
        seconds["without lexicon"] = train(train_spec, without_it, work, steps, seed, None)
    cache = work / "test-cache"
    rows = {
        WITH: evaluate(with_it, test_spec, cache, lexicon),
        "trained with the lexicon, judged with the built-in vocabulary": evaluate(with_it, test_spec, cache, LEXICON),
    }
    if without:
        rows[WITHOUT] = evaluate(without_it, test_spec, cache, lexicon)
    result = {
        "machine": machine_info(),
        "lexicon": {"file": shown_path(lexicon_path), "name": lexicon.name, "digest": lexicon.digest,
                    "cues": len(lexicon.cues)},
        "rewrite_check": check,
        "train": {"corpus": shown_path(train_dir), "clips": n_train, "steps": steps, "seed": seed, "seconds": seconds},
        "test": {"corpus": shown_path(test_dir), "seed": test_info["config"]["seed"], "clips": n_test},
        "metrics": rows,
    }
    write_result(stem, result, render(result))


WITH = "trained with the lexicon, judged with it"
WITHOUT = "trained without a lexicon, judged with it"
#: The metrics the seed summary compares, (key, heading).
COMPARED = (("war", "WAR"), ("icr", "ICR"), ("label_closed_icr", "ICR, closed with the label"),
            ("grounding_rate", "grounding"), ("coverage", "coverage"))


def result_name(seed: int) -> str:
    """Seed 0 keeps the name the first result was committed under."""
    return "own_words" if seed == 0 else f"own_words_seed{seed}"


def seed_results() -> dict[int, dict]:
    """Every committed per-seed result that trained both rows, by seed."""
    out = {}
    for path in sorted(RESULTS.glob("own_words*.json")):
        if path.stem == "own_words_seeds":
            continue
        result = json.loads(path.read_text())
        if WITH in result["metrics"] and WITHOUT in result["metrics"]:
            out[result["train"]["seed"]] = result
    if not out:
        raise click.ClickException(f"{RESULTS}: no own_words result with both rows; run the benchmark first")
    return dict(sorted(out.items()))


def summary(results: dict[int, dict]) -> dict:
    """Per metric and row: the value of each seed, the mean, and the with-minus-without difference per seed."""
    table: dict[str, dict] = {}
    for key, _ in COMPARED:
        per_row = {row: [results[s]["metrics"][row].get(key) for s in results] for row in (WITH, WITHOUT)}
        diffs = [None if a is None or b is None else a - b for a, b in zip(per_row[WITH], per_row[WITHOUT])]
        table[key] = {
            "seeds": list(results), **per_row,
            "mean": {row: _mean(v) for row, v in per_row.items()},
            "with_minus_without": diffs,
        }
    return {"seeds": list(results), "metrics": table,
            "commits": {s: r["machine"].get("commit") for s, r in results.items()}}


def _mean(values: list) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if len(known) == len(values) and known else None


def render_summary(results: dict[int, dict]) -> str:
    s = summary(results)
    seeds = s["seeds"]
    head = seed_table_head(seeds)
    body = ""
    for key, title in COMPARED:
        m = s["metrics"][key]
        for row, label in ((WITH, "with lexicon"), (WITHOUT, "without")):
            body += f"| {title} | {label} | " + " | ".join(_fmt(v) for v in m[row]) + f" | {_fmt(m['mean'][row])} |\n"
        body += (f"| {title} | with - without | " + " | ".join(_signed(v) for v in m["with_minus_without"])
                 + f" | {_signed(_mean(m['with_minus_without']))} |\n")
    lower = sum(d is not None and d < 0 for d in s["metrics"]["icr"]["with_minus_without"])
    commits = ", ".join(f"seed {k} @{c}" for k, c in s["commits"].items())
    return (
        "# MIGR on descriptions in other words: with and without a cue lexicon, over seeds\n\n"
        "Each seed trains `migr` twice on the paraphrased corpus (`own_words.md` describes the setup): with "
        "`--lexicon docs/lexicon_example.json`, so GRPO's consistency, grounding and coverage rewards read the "
        "descriptions, and without it, so they never apply. Both are judged with the lexicon on the same 420 "
        "held-out clips.\n\n" + head + body
        + f"\nICR is lower with the lexicon in {lower} of {len(seeds)} seeds. Results: {commits}. "
        "Reproduce: `python benchmarks/own_words.py --seed N` per seed, then `--summarise`.\n"
    )


def _signed(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.3f}"


def render(result: dict) -> str:
    """The markdown table of a result (``--render-only`` rewrites it from the committed JSON)."""
    rows, check, train_info, test = result["metrics"], result["rewrite_check"], result["train"], result["test"]
    head = "| metric | " + " | ".join(rows) + " |\n|---|" + "---|" * len(rows) + "\n"
    body = "".join(f"| {title} | " + " | ".join(_fmt(m.get(key)) for m in rows.values()) + " |\n"
                   for key, title in SHOWN)
    m = result["machine"]
    timing = ", ".join(f"{k} {v:.0f} s" for k, v in train_info["seconds"].items())
    seed_flag = "" if train_info["seed"] == 0 else f" --seed {train_info['seed']}"
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
        f"--seed {train_info['seed']}` ({timing}), then evaluated greedy, with the model's own opening. One seed "
        "(`own_words_seeds.md` compares seeds); the synthetic corpus path's migr ICR ranges 0.042-0.053 over three "
        "seeds.\n\n"
        + head + body
        + f"\nMachine: {m.get('cpu')}, torch {m.get('torch')}, commit {m.get('commit')}. "
        f"Reproduce: `python benchmarks/own_words.py{seed_flag}`.\n"
    )


if __name__ == "__main__":
    main()
