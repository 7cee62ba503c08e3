"""The held-out test corpus the model-quality benchmarks read, and how they write their results.

Shared by ``bundled_model.py`` and ``rationale_answer.py`` so both measure on
the same clips (corpus seed 2 by default; the bundled model trained on seed 1)
and record the same facts about what they measured.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import click
from migr_rt.training.synth.corpus import GENERATOR_VERSION, SynthConfig, generate_corpus

from migr_rt.atomic import write_text_atomic

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parent.parent


def held_out_corpus(data: Path, seed: int, n: int) -> dict:
    """``data``'s ``corpus.json`` (what the corpus really is), generating the corpus first when it is missing."""
    if not (data / "manifest.jsonl").is_file():
        click.echo(f"generating test corpus {data} (seed {seed}, {n} clips)", err=True)
        generate_corpus(SynthConfig(n=n, seed=seed, workers=2), data)
    info = json.loads((data / "corpus.json").read_text())
    if info["version"] != GENERATOR_VERSION:
        click.echo(f"warning: {data} was written by generator {info['version']}, this one is {GENERATOR_VERSION}; "
                   "delete it to measure on the current clips", err=True)
    return info


def shown_path(path: Path) -> str:
    """``path`` relative to the repository when it is inside it (results name the checkpoint portably)."""
    resolved = path.resolve()
    return str(resolved.relative_to(REPO) if resolved.is_relative_to(REPO) else path)


def write_result(name: str, result: dict, markdown: str) -> None:
    """``results/<name>.json`` and ``.md``, each written atomically; the markdown is echoed."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_text_atomic(RESULTS / f"{name}.json", json.dumps(result, indent=2, sort_keys=True) + "\n")
    write_text_atomic(RESULTS / f"{name}.md", markdown)
    click.echo(markdown)


def seed_table_head(seeds: list[int]) -> str:
    """The header of a table with one column per training seed and a mean (the ``--summarise`` tables)."""
    return ("| metric | row | " + " | ".join(f"seed {k}" for k in seeds) + " | mean |\n|---|---|"
            + "---|" * (len(seeds) + 1) + "\n")


def corpus_options(name: str) -> Callable:
    """The options of a script that reads the held-out corpus through the public API: ``--data``, ``--test-seed``,
    ``--n``, ``--every`` and ``--name`` (default ``name``), passed to its command as those keywords."""
    options = [
        click.option("--data", type=click.Path(path_type=Path), default=Path("runs/synth-test"), show_default=True,
                     help="Test corpus folder; generated (seed --test-seed) when missing."),
        click.option("--test-seed", type=int, default=2, show_default=True),
        click.option("--n", type=int, default=420, show_default=True, help="Clips to generate when --data is missing."),
        click.option("--every", type=click.IntRange(min=1), default=1, show_default=True,
                     help="Use every k-th clip (a quicker run)."),
        click.option("--name", default=name, show_default=True, help="Result file stem in benchmarks/results/."),
    ]

    def wrap(command: Callable) -> Callable:
        for option in reversed(options):
            command = option(command)
        return command

    return wrap
