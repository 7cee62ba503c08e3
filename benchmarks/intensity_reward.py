"""Does rewarding intensity make MIGR's rationales state cues as strong as they are, at no cost to ICR or WAR?

    python benchmarks/intensity_reward.py --seed 0     # then --seed 1, --seed 2
    python benchmarks/intensity_reward.py --summarise

``results/intensity_agreement.md`` found MIGR's rationales misstating a
cue's strength more often than the baseline's (mostly overstating it), and
grounding never checks strength. The ``intensity`` reward term does. Per
training seed, from the same base checkpoint and corpus, with the bundled
model's settings, rows (``--only``, in this order):

* ``base``: the perception checkpoint's own cue description (describe mode): what it perceives;
* ``sft``: migr's stage-1 checkpoint (MI-ordered SFT), where GRPO starts (needs ``migr`` trained);
* ``migr``: the default rewards (intensity off), as the reasoning experiment trains it;
* ``migr+intensity``: the same plus ``intensity`` at ``--weight`` (default 0.5, grounding's weight);
  the row is named with its weight, so several weights can stand side by side;
* ``migr+set``: the default rewards with the weights of ``--set TERM=W`` (repeatable), e.g.
  ``--set consistency=0`` to see what one term does; the row is named ``migr[consistency=0]``.
  ``--beta B`` sets GRPO's KL weight to the SFT policy in this row instead (default
  0.02), alone or with ``--set``: ``migr[beta=0.5]``.

Every row is evaluated on the held-out corpus with the default judge, and
its stored rationales are read as ``benchmarks/intensity_agreement.py``
reads them (overstated shares, signed errors). Writes
``results/intensity_reward_seed<N>.{json,md}``; ``--summarise`` tabulates
every seed in ``results/intensity_reward.{json,md}``.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parent))
from held_out import RESULTS, held_out_corpus, seed_table_head, shown_path, write_result  # noqa: E402
from intensity_agreement import BARE, read_run  # noqa: E402
from machine import machine_info  # noqa: E402
from migr_rt.training.base_recipe import load_or_extract  # noqa: E402
from migr_rt.training.evaluation import EvalConfig, evaluate_reasoning, write_report  # noqa: E402
from migr_rt.training.lexicon import stored_lexicon  # noqa: E402
from migr_rt.training.reasoning_recipe import ReasoningRecipeConfig, run_reasoning_recipe  # noqa: E402
from migr_rt.training.rewards import RewardWeights  # noqa: E402
from migr_rt.training.sources import open_source  # noqa: E402
from migr_rt.training.synth.cues import INTENSITY_WORDS  # noqa: E402
from migr_rt.training.synth.reader import read_manifest  # noqa: E402

from migr_rt.cli import parse_reward_weights  # noqa: E402
from migr_rt.model import load_checkpoint  # noqa: E402

VARIANTS = ("base", "sft", "migr", "migr+intensity", "migr+set")
#: The order rows are measured in: the SFT row reads migr's stage-1 checkpoint.
RUN_ORDER = ("base", "migr", "sft", "migr+intensity", "migr+set")
#: Row names of the variants that are not named by their weight.
ROW_NAMES = {"base": "base (describe)", "sft": "migr, SFT only", "migr": "migr"}
#: (key, heading) of the compared metrics; keys of the eval metrics, then of the stored-rationale reading.
COMPARED = (("war", "WAR"), ("icr", "ICR"), ("label_closed_icr", "ICR, closed with the label"),
            ("grounding_rate", "grounding"), ("coverage", "coverage"), ("intensity_agreement", "intensity agreement"),
            ("pooled_agreement", "intensity agreement, pooled"),
            ("statements_per_window", "statements of shown cues per window"),
            ("overstated_answer", "overstated, answer's cues"), ("overstated_other", "overstated, other cues"),
            ("understated", "understated, all cues"))
#: GRPO's KL weight to the SFT policy in the migr recipe, which ``--beta`` changes in the migr+set row.
DEFAULT_BETA = ReasoningRecipeConfig(recipe="migr", data="", out="").grpo.beta
#: The COMPARED keys read from the eval metrics; the others come from the stored rationales.
EVAL_KEYS = ("war", "icr", "label_closed_icr", "grounding_rate", "coverage", "intensity_agreement")


def seed_name(seed: int) -> str:
    return f"intensity_reward_seed{seed}"


def understated_share(confusion: dict[str, int]) -> float | None:
    """Share of statements stated weaker than described, from ``read_run``'s ``"described->stated"`` counts."""
    weight = {**INTENSITY_WORDS, BARE: 1.0}
    total = sum(confusion.values())
    under = sum(n for pair, n in confusion.items() if weight[pair.split("->")[1]] < weight[pair.split("->")[0]])
    return under / total if total else None


def changed_settings(overrides: dict[str, float] | None, beta: float | None) -> list[str]:
    """The migr+set row's departures from migr as ``name=value``, by name: reward weights and, if given, ``beta``."""
    changed = {**(overrides or {}), **({} if beta is None else {"beta": beta})}
    return [f"{name}={value:g}" for name, value in sorted(changed.items())]


def row_name(variant: str, weight: float, overrides: dict[str, float] | None = None, beta: float | None = None) -> str:
    if variant == "migr+set":
        return "migr[" + ",".join(changed_settings(overrides, beta)) + "]"
    return ROW_NAMES.get(variant) or f"{variant}@{weight:g}"


def train_and_measure(variant: str, *, train: Path, base: Path, work: Path, cache: Path, seed: int, weight: float,
                      overrides: dict[str, float], set_weights: RewardWeights, beta: float | None, test_windows,
                      clips: dict[str, dict]) -> dict:
    """Train ``variant`` (resuming what its work folder holds) and measure it; ``base``/``sft`` only measure.

    ``set_weights`` are the migr+set row's reward weights: the defaults with ``overrides`` applied.
    """
    weights = RewardWeights(intensity=weight) if variant == "migr+intensity" else \
        set_weights if variant == "migr+set" else None
    seconds = None
    mode, reward_weights, grpo_last, grpo_beta = "reason", None, {}, None
    if variant == "base":
        out, mode = base, "describe"
    elif variant == "sft":
        out = work / "migr.work" / "sft"
        if not (out / "config.json").is_file():
            raise click.ClickException(f"{out}: no SFT checkpoint; measure migr first (--only migr,sft)")
    else:
        # another weight trains in another folder
        out = work / (variant if weights is None else f"{variant}@{weight:g}" if variant == "migr+intensity"
                      else "migr-" + "-".join(changed_settings(overrides, beta)))
        cfg = ReasoningRecipeConfig(recipe="migr", data=str(train), out=str(out), base=str(base),
                                    cache_dir=str(cache), seed=seed, reward_weights=weights)
        if variant == "migr+set" and beta is not None:
            cfg = replace(cfg, grpo=replace(cfg.grpo, beta=beta))
        grpo_beta = cfg.grpo.beta
        state = Path(f"{out}.work") / "state.json"
        reused = state.is_file() and "grpo" in json.loads(state.read_text()).get("finished", {})

        def progress(stage, p) -> None:
            if p.step % 10 == 0 or p.step == p.steps:
                parts = " ".join(f"{k} {v:.3f}" for k, v in (p.parts or {}).items())
                logging.info("%s [%s] %d/%d loss %.4f %s eta %.0fs", variant, stage, p.step, p.steps, p.loss, parts,
                             p.eta_s)

        t0 = time.monotonic()
        metrics = run_reasoning_recipe(cfg, on_progress=progress)
        seconds = None if reused else time.monotonic() - t0  # a finished run found in the work folder took no time now
        reward_weights = dict(cfg.weights().items())
        grpo_last = metrics["finished"].get("grpo", {}).get("last", {})
    model, tokenizer = load_checkpoint(out)
    report = evaluate_reasoning(model, tokenizer, test_windows, EvalConfig(mode=mode, opening="free"),
                                lexicon=stored_lexicon(out))
    folder = work / f"{variant if variant in ('base', 'sft') else out.name}.eval"
    write_report(report, folder)
    read = read_run(folder / "predictions.jsonl", clips)
    row = {key: report.metrics.get(key) for key in EVAL_KEYS}
    row.update(pooled_agreement=read["pooled_agreement"], overstated_answer=read["overstated_share"]["answer"],
               overstated_other=read["overstated_share"]["other"],
               statements_per_window=read["statements"] / len(test_windows),
               understated=understated_share(read["confusion"]))
    return {"checkpoint": shown_path(out), "mode": mode, "metrics": row, "stored_rationales": read,
            "eval": report.metrics, "train_seconds": seconds, "reward_weights": reward_weights, "grpo_beta": grpo_beta,
            "grpo_last_rewards": {k: v for k, v in grpo_last.items() if k.startswith("reward")}}


@click.command()
@click.option("--train", "train_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/synth-train"),
              show_default=True)
@click.option("--test", "test_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/synth-test"),
              show_default=True)
@click.option("--base", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/exp/base"),
              show_default=True, help="The perception checkpoint both variants start from (make experiment's).")
@click.option("--work", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/intensity"),
              show_default=True)
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/cache"),
              show_default=True)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--weight", type=click.FloatRange(min=0, min_open=True), default=0.5, show_default=True,
              help="The intensity term's weight in migr+intensity.")
@click.option("--set", "overrides", multiple=True, metavar="TERM=W", callback=parse_reward_weights,
              help="The migr+set row's reward weights over the defaults (repeatable).")
@click.option("--beta", type=click.FloatRange(min=0), default=None,
              help="The migr+set row's GRPO KL weight to the SFT policy (the recipe's default: 0.02).")
@click.option("--only", default="base,sft,migr,migr+intensity", show_default=True,
              help="Comma-separated rows to (re)run: base, sft, migr, migr+intensity, migr+set.")
@click.option("--summarise", is_flag=True, help="Tabulate every seed's committed result (intensity_reward.md).")
def main(train_dir: Path, test_dir: Path, base: Path, work: Path, cache_dir: Path, seed: int, weight: float,
         overrides: dict[str, float], beta: float | None, only: str, summarise: bool) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    if summarise:
        results = seed_results()
        write_result("intensity_reward", summary(results), render_summary(results))
        return
    chosen = [v.strip() for v in only.split(",") if v.strip()]
    unknown = sorted(set(chosen) - set(VARIANTS))
    if unknown or not chosen:
        raise click.BadParameter(f"{only!r}: variants are {', '.join(VARIANTS)}", param_hint="--only")
    if ("migr+set" in chosen) != bool(overrides or beta is not None):
        raise click.UsageError("--set or --beta and the migr+set row go together")
    try:
        changed = replace(RewardWeights(), **overrides)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--set") from exc
    if beta == DEFAULT_BETA:
        beta = None  # migr's own beta: the row is named, and trains in the folder of, its reward changes alone
    if "migr+set" in chosen and changed == RewardWeights() and beta is None:
        raise click.BadParameter("these are migr's default weights and beta: that is the migr row",
                                 param_hint="--set/--beta")
    for path, what in ((train_dir / "manifest.jsonl", "training corpus"), (base / "config.json", "base checkpoint")):
        if not path.is_file():
            raise click.ClickException(f"{path}: no {what}; `make experiment`'s first three commands make both")
    test_info = held_out_corpus(test_dir, seed=2, n=420)
    previous = RESULTS / f"{seed_name(seed)}.json"
    result = {"seed": seed, "train": shown_path(train_dir), "base": shown_path(base),
              "test": {"corpus": shown_path(test_dir), "seed": test_info["config"]["seed"]}, "variants": {}}
    if previous.is_file():
        earlier = upgraded(json.loads(previous.read_text()))
        if all(earlier.get(k) == result[k] for k in ("seed", "train", "base", "test")):
            result["variants"] = earlier["variants"]
    model, _ = load_checkpoint(base)
    test_windows = load_or_extract(open_source(str(test_dir)), model.config, cache_dir, None)
    clips = {rec["id"]: rec for rec in read_manifest(test_dir / "manifest.jsonl")}
    for variant in sorted(chosen, key=RUN_ORDER.index):
        result["variants"][row_name(variant, weight, overrides, beta)] = train_and_measure(
            variant, train=train_dir, base=base, work=work / f"seed{seed}", cache=cache_dir, seed=seed, weight=weight,
            overrides=overrides, set_weights=changed, beta=beta, test_windows=test_windows, clips=clips)
        result["machine"] = machine_info()
        result["variants"] = dict(sorted(result["variants"].items(), key=lambda kv: _order(kv[0])))
        write_result(seed_name(seed), result, render(result))


def _order(row: str) -> tuple:
    """Rows in VARIANTS order, intensity rows by weight, then the migr[...] rows by name."""
    names = list(ROW_NAMES.values())
    if row in names:
        return names.index(row), 0.0, ""
    if row.startswith("migr["):
        return len(names) + 1, 0.0, row
    return len(names), float(row.partition("@")[2] or 0), ""


def upgraded(result: dict) -> dict:
    """A result written before rows were named by weight: its one ``migr+intensity`` row gets its weight."""
    if "weight" in result and "migr+intensity" in result["variants"]:
        weight = result.pop("weight")
        result["variants"] = {(f"migr+intensity@{weight:g}" if k == "migr+intensity" else k): v
                              for k, v in result["variants"].items()}
    result.pop("weight", None)
    for name, row in list(result["variants"].items()):
        row["metrics"].setdefault("understated", understated_share(row["stored_rationales"]["confusion"]))
        missing = [key for key, _ in COMPARED if key not in row["metrics"]]
        if missing:  # measured by a version before these metrics (and before the per-cue term): measure it again
            logging.warning("seed %s: dropping row %r, which lacks %s", result.get("seed"), name, ", ".join(missing))
            del result["variants"][name]
    return result


def _fmt(value: float | None, signed: bool = False) -> str:
    return "n/a" if value is None else (f"{value:+.3f}" if signed else f"{value:.3f}")


def render(result: dict) -> str:
    rows = result["variants"]
    head = "| metric | " + " | ".join(rows) + " |\n|---|" + "---|" * len(rows) + "\n"
    body = "".join(f"| {title} | " + " | ".join(_fmt(r["metrics"][key]) for r in rows.values()) + " |\n"
                   for key, title in COMPARED)
    body += "| training seconds | " + " | ".join(
        "n/a" if r.get("reward_weights") is None else "reused" if r["train_seconds"] is None
        else f"{r['train_seconds']:.0f}" for r in rows.values()) + " |\n"
    m = result["machine"]
    changed = (" (`migr[TERM=W]`: the default rewards with those weights; `beta=B`: GRPO's KL weight to the SFT "
               f"policy, default {DEFAULT_BETA:g})") if any(
        r.startswith("migr[") for r in rows) else ""
    return (
        f"# Intensity reward, training seed {result['seed']}\n\n"
        f"From the same base checkpoint (`{result['base']}`) and corpus (`{result['train']}`): the base model's "
        "own cue description, migr after SFT only, `migr` with the default rewards and with the `intensity` term "
        f"at the weight after `@`{changed}, judged on the held-out corpus (`{result['test']['corpus']}`, seed "
        f"{result['test']['seed']}). Intensity agreement: the share of statements of shown cues stated with the "
        "description's intensity word (a bare phrase weighs like the strongest), mean per window, then pooled; "
        "statements per window: of shown cues with a known strength, over every test window; overstated: the "
        "share of those statements stated stronger, for the cues that most support the rationale's answer and "
        "for the others. The base row answers from its answer slot and its description is not a rationale (its "
        "ICR judges the description against that answer).\n\n"
        + head + body
        + f"\nMachine: {m.get('cpu')}, torch {m.get('torch')}, commit {m.get('commit')}. "
        f"Reproduce: `python benchmarks/intensity_reward.py --seed {result['seed']}`.\n"
    )


def seed_results() -> dict[int, dict]:
    """Every committed per-seed result with a migr row and an intensity row, by seed."""
    out = {}
    for path in sorted(RESULTS.glob("intensity_reward_seed*.json")):
        result = upgraded(json.loads(path.read_text()))
        rows = result["variants"]
        if "migr" in rows and any(r.startswith("migr+intensity@") for r in rows):
            out[result["seed"]] = result
    if not out:
        raise click.ClickException(f"{RESULTS}: no intensity_reward_seed*.json with migr and an intensity row")
    if not any(r.startswith("migr+intensity@") for r in _common_rows(out)):
        rows = {s: [r for r in res["variants"] if r.startswith("migr+intensity@")] for s, res in out.items()}
        raise click.ClickException(f"no intensity weight measured in every seed ({rows}); run the missing ones")
    return dict(sorted(out.items()))


def _common_rows(results: dict[int, dict]) -> list[str]:
    """The rows every seed has, in table order."""
    rows = set.intersection(*(set(r["variants"]) for r in results.values()))
    return sorted(rows, key=_order)


def _mean(values: list) -> float | None:
    return sum(values) / len(values) if values and all(v is not None for v in values) else None


def summary(results: dict[int, dict]) -> dict:
    """Per metric: each row's value per seed and mean (rows every seed has), and each changed row minus migr."""
    seeds = list(results)
    rows = _common_rows(results)
    table = {}
    for key, _ in COMPARED:
        per = {r: [results[s]["variants"][r]["metrics"][key] for s in seeds] for r in rows}
        diffs = {r: [None if a is None or b is None else b - a for a, b in zip(per["migr"], per[r])]
                 for r in rows if r.startswith(("migr+intensity@", "migr["))}
        table[key] = {**per, "mean": {r: _mean(x) for r, x in per.items()}, "minus_migr": diffs}
    return {"seeds": seeds, "rows": rows, "metrics": table,
            "commits": {s: r["machine"].get("commit") for s, r in results.items()}}


def render_summary(results: dict[int, dict]) -> str:
    s = summary(results)
    seeds = s["seeds"]
    head = seed_table_head(seeds)
    body = ""
    for key, title in COMPARED:
        m = s["metrics"][key]
        for r in s["rows"]:
            body += f"| {title} | {r} | " + " | ".join(_fmt(x) for x in m[r]) + f" | {_fmt(m['mean'][r])} |\n"
        for r, diff in m["minus_migr"].items():
            body += (f"| {title} | {r} - migr | " + " | ".join(_fmt(x, True) for x in diff)
                     + f" | {_fmt(_mean(diff), True)} |\n")
    commits = ", ".join(f"seed {k} @{c}" for k, c in s["commits"].items())
    return (
        "# Intensity reward over training seeds\n\n"
        "Per seed, from the same base checkpoint and corpus (rows every seed has; `intensity_reward_seed<N>.md` "
        "has all of a seed's): `base (describe)` is the perception checkpoint's own cue description, `migr, SFT "
        "only` migr's stage-1 checkpoint, `migr` the default rewards, `migr+intensity@W` the default rewards "
        "plus the `intensity` term at weight W, `migr[...]` the default rewards with the settings named (`beta`: "
        f"GRPO's KL weight to the SFT policy, default {DEFAULT_BETA:g}); all judged on the 420 held-out clips.\n\n"
        + head + body + f"\nResults: {commits}. Reproduce: `python benchmarks/intensity_reward.py --seed N` per "
        "seed (`--only base,sft` adds the first two rows), then `--summarise`.\n"
    )


if __name__ == "__main__":
    main()
