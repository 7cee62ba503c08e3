"""The ``migr-rt`` command line: click lives here and nowhere else."""

from __future__ import annotations

import functools
import logging
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from migr_rt import __version__
from migr_rt.interrupt import interrupt_guard, raise_if_interrupted
from migr_rt.labels import DFEW_LABELS

if TYPE_CHECKING:
    from migr_rt.training.data_report import DataReport


def _user_errors(func):
    """Show the typed errors of bad input as one clear line (exit 1); a traceback only with -vv."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from migr_rt.artifact import ArtifactError
        from migr_rt.backends.base import BackendUnavailable
        from migr_rt.media import MediaError
        from migr_rt.model import CheckpointError
        from migr_rt.training.data import DatasetError
        from migr_rt.training.synth.reader import ManifestError

        try:
            return func(*args, **kwargs)
        except (CheckpointError, DatasetError, MediaError, ManifestError, ArtifactError, BackendUnavailable,
                FileExistsError, FileNotFoundError, NotADirectoryError, PermissionError, ValueError) as exc:
            if logging.getLogger().isEnabledFor(logging.DEBUG):
                raise
            raise click.ClickException(str(exc)) from exc

    return wrapper


def _needs_model_stack(func):
    """Refuse at once, saying what to install, where the torch model's packages are missing.

    A runtime-only install (docs/deploy.md, "Without torch") runs ONNX artifacts, the bundled model's export
    included; ``train``, ``eval``, ``export`` and ``bench`` load the torch model, and would otherwise end in an
    import traceback.
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from migr_rt.bundled import missing_model_stack

        missing = missing_model_stack()
        if missing:
            command = click.get_current_context().info_name
            raise click.ClickException(
                f"`migr-rt {command}` works on the torch model and needs {', '.join(missing)}, which "
                f"{'is' if len(missing) == 1 else 'are'} not installed here: install migr-rt with its dependencies "
                "(the README says which torch build). Without them, migr-rt runs the bundled model's ONNX export and "
                "exported artifacts: `migr-rt run`, `migr-rt demo` (`--checkpoint DIR` for an artifact of yours).")
        return func(*args, **kwargs)

    return wrapper


def _torch_device(device: str) -> str:
    """``device`` when this torch can use it, else a ``--device`` usage error (not a traceback deep in a run)."""
    import torch

    try:
        torch.device(device)
    except RuntimeError as exc:
        raise click.BadParameter(f"{device!r} is not a torch device ({exc})", param_hint="--device") from exc
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise click.BadParameter("CUDA is not available in this torch build / machine", param_hint="--device")
    return device


#: The most inference threads a command accepts: far beyond any edge machine, short of a hang in thread setup.
MAX_THREADS = 1024


def _reports() -> bool:
    """Whether this process prints progress: under `accelerate launch` every process runs the command, and only
    the first one (the one that writes) reports."""
    return os.environ.get("RANK", "0") == "0"


def _show_extract(done: int, total: int | None) -> None:
    """Preprocessing progress of train and eval; also where an interrupt_guard's swallowed Ctrl-C stops them."""
    raise_if_interrupted()
    if not _reports():
        return
    if done == 1 or done % 100 == 0 or done == total:
        click.echo(f"preprocessing windows {done}/{total or '?'}", err=True)


def _show_progress(prefix: str) -> Callable[[str], None]:
    """A progress callback that prints ``prefix: message`` and stops on a swallowed Ctrl-C (export, bench)."""
    def say(message: str) -> None:
        raise_if_interrupted()
        click.echo(f"{prefix}: {message}", err=True)

    return say


def parse_reward_weights(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, float]:
    """``TERM=W`` option values (``--reward-weight``, and the benchmarks' ``--set``) as ``{term: weight}``.

    Checked at parse time, so a typo fails before any training starts.
    """
    if not values:  # nothing to check: the rewards module imports torch, which the command may find missing
        return {}
    from migr_rt.training.rewards import TERMS

    out: dict[str, float] = {}
    for value in values:
        term, sep, weight = value.partition("=")
        term = term.strip()
        if not sep or term not in TERMS:
            raise click.BadParameter(f"{value!r}: expected TERM=W with TERM one of {', '.join(TERMS)}")
        if term in out:
            raise click.BadParameter(f"{value!r}: the weight of {term!r} is given twice")
        try:
            out[term] = float(weight)
        except ValueError:
            raise click.BadParameter(f"{value!r}: weight {weight.strip()!r} is not a number") from None
    return out


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="migr-rt")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def main(verbose: int) -> None:
    """migr-rt: multimodal emotion recognition whose explanations start from the modality that matters."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    quiet_transformers(verbose)


def quiet_transformers(verbose: int) -> None:
    """transformers' progress bars and warnings off below ``-vv``; the CLI reports its own progress.

    Through the environment where transformers is not imported yet: importing it costs a second on a small CPU, and
    ``devices`` or a run on an exported artifact never need it.
    """
    if sys.modules.get("transformers") is None:  # not imported (or, None, not importable)
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
        if verbose < 2:
            os.environ["TRANSFORMERS_VERBOSITY"] = "error"
        if "huggingface_hub.constants" in sys.modules:  # read the variable when imported: told as transformers tells it
            from huggingface_hub.utils import disable_progress_bars

            disable_progress_bars()
        return
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    if verbose < 2:
        hf_logging.set_verbosity_error()


CLIP_KINDS = ("consistent", "visual_dominant", "audio_dominant", "ambiguous", "conflicting", "any")


@main.command()
@click.option("--checkpoint", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
              help="Checkpoint folder or exported artifact folder (default: the bundled model; its ONNX export "
                   "where onnxruntime runs it, its checkpoint with --backend torch).")
@click.option("--backend", type=click.Choice(["auto", "torch", "onnxruntime", "tensorrt"]), default="auto",
              show_default=True, help="Inference backend; auto picks the fastest that can run the folder here.")
@click.option("--emotion", type=click.Choice(list(DFEW_LABELS)), default=None, help="Emotion of the synthesised clip.")
@click.option("--kind", type=click.Choice(CLIP_KINDS), default="audio_dominant", show_default=True,
              help="Evidence kind: which modality carries the emotion.")
@click.option("--seed", type=int, default=0, show_default=True, help="Synthetic corpus seed the clip is drawn from.")
@click.option("--keep", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep the synthesised MP4 in this folder (default: a temporary folder).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the report.")
@_user_errors
def demo(checkpoint: Path | None, backend: str, emotion: str | None, kind: str, seed: int, keep: Path | None,
         as_json: bool) -> None:
    """Synthesise a talking-face clip, then print the model's emotion, modality importance and rationale."""
    import json
    import tempfile
    from dataclasses import asdict

    from migr_rt.demo import run_demo

    with tempfile.TemporaryDirectory(prefix="migr-rt-demo-") as tmp:
        report = run_demo(keep or tmp, checkpoint=checkpoint, seed=seed, emotion=emotion,
                          kind=None if kind == "any" else kind, backend=backend)
        if as_json:
            rationale = report.rationale.text if report.rationale is not None else None
            verdict = {}
            if report.rationale is not None:
                r = report.rationale
                verdict = {"model_answer": r.model_answer, "explanation_emotion": r.explanation_emotion,
                           "consistent": r.consistent}
            click.echo(json.dumps({"clip": str(report.clip_path) if keep else None, "truth": report.truth,
                                   "prediction": asdict(report.prediction), "rationale": rationale,
                                   "rationale_verdict": verdict or None}, sort_keys=True))
            return
        click.echo(_format_demo(report, kept=keep is not None))


def _format_demo(report, kept: bool) -> str:
    truth, pred = report.truth, report.prediction
    where = str(report.clip_path) if kept else "a temporary MP4"
    lines = [
        f"synthesised {where}: {truth['label']} clip, kind {truth['kind']}, "
        f"dominant modality {truth['dominant']}",
        f"  what the face shows:  {truth['visual_text'] or '(nothing notable)'}",
        f"  what the voice shows: {truth['audio_text'] or '(nothing notable)'}",
        f"face: {'found at ' + str(pred.face_box) if pred.face_found else 'not found (no facial evidence used)'}",
    ]
    if pred.label is None:
        lines.append("prediction: none (no face and no audio in the window)")
        return "\n".join(lines)
    verdict = "correct" if pred.label == truth["label"] else f"wrong, truth is {truth['label']}"
    lines.append(f"prediction: {pred.label}  p={pred.probs[pred.label]:.2f}  ({verdict})")
    ranked = sorted(pred.probs.items(), key=lambda kv: -kv[1])
    lines.append("  " + "  ".join(f"{k} {v:.2f}" for k, v in ranked))
    lines.append(f"modality importance (MI = drop of log p({pred.label}) when the modality is masked):")
    for m in pred.mi:
        bar = "#" * int(round(pred.importance[m] * 30))
        lines.append(f"  {m:<7} MI {pred.mi[m]:+7.3f}  importance {pred.importance[m]:.2f}  {bar}")
    lines.append(f"dominant modality: {pred.dominant}  (the explanation should open with it)")
    if report.rationale is not None:
        parsed = report.rationale.parsed
        lines.append(f"rationale (opens with {parsed.first_modality or 'nothing'}; answer {parsed.answer}):")
        own = report.rationale.model_answer
        if parsed.answer is not None and own != parsed.answer:
            lines.append(f"  (the model's own closing answer was {own or 'not a label'}; the rationale closes with "
                         "the label)")
        if report.rationale.consistent is False:
            lines.append(f"  (its explanation argues for {report.rationale.explanation_emotion}, not {parsed.answer})")
        for modality, text in parsed.segments:
            lines.append(f"  {modality + ':':<8} {text}")
        if parsed.summary:
            lines.append(f"  summary: {parsed.summary}")
        if parsed.problems:
            lines.append(f"  (malformed: {'; '.join(parsed.problems)})")
    return "\n".join(lines)


@main.command()
@click.option("--n", "n", type=click.IntRange(min=1), default=256, show_default=True, help="Number of clips.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Output folder.")
@click.option("--seed", type=int, default=0, show_default=True, help="Corpus seed: same seed, same manifest.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True, help="Parallel processes.")
@click.option(
    "--preview",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Also render a contact sheet and spectrograms per emotion (decoded from the written MP4s) here.",
)
@_user_errors
def synth(n: int, out: Path, seed: int, workers: int, preview: Path | None) -> None:
    """Generate the synthetic talking-face + voice corpus (MP4 files and a manifest)."""
    from migr_rt.training.synth.corpus import SynthConfig, generate_corpus

    config = SynthConfig(n=n, seed=seed, workers=workers)
    if sys.stderr.isatty():
        with click.progressbar(length=n, label="synthesising", file=sys.stderr) as bar:
            manifest = generate_corpus(config, out, progress=lambda done, total: bar.update(done - bar.pos))
    else:  # a log (make bundle, CI): a line now and then instead of a bar drawn only at the end
        start = time.monotonic()

        def logged(done: int, total: int) -> None:
            if done == 1 or done % max(1, total // 20) == 0 or done == total:
                rate = (time.monotonic() - start) / done
                click.echo(f"synthesising {done}/{total} clips, eta {rate * (total - done):.0f}s", err=True)

        manifest = generate_corpus(config, out, progress=logged)
    click.echo(f"wrote {n} clips and {manifest}")
    if preview is not None:
        from migr_rt.training.synth.preview import render_preview

        for path in render_preview(manifest, preview):
            click.echo(f"wrote {path}")


@main.command()
@click.argument("spec")
@click.option("--decode", is_flag=True, help="Also decode every clip (finds corrupt files; minutes for a large set).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@click.option("--template", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write a descriptions file with a null line per clip, ids spelled as the reader does "
                   "(never overwrites).")
@click.option("--lexicon", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="Read the descriptions with this cue lexicon (docs/lexicon.md) instead of the built-in vocabulary.")
@_user_errors
def data(spec: str, decode: bool, as_json: bool, template: Path | None, lexicon: Path | None) -> None:
    """Check what a --data argument holds before training on it: clips, labels, skips, descriptions.

    SPEC is what train and eval take: a synthetic corpus folder, or a dataset spec such as
    "dfew:/data/DFEW?fold=1&descriptions=/data/dfew_descriptions.jsonl". Exit status 1 when it
    holds no usable clip.
    """
    import json

    from migr_rt.training.data import DatasetReader
    from migr_rt.training.data.descriptions import write_template
    from migr_rt.training.data_report import data_report, indexed_clips
    from migr_rt.training.lexicon import load_lexicon
    from migr_rt.training.sources import open_source
    from migr_rt.training.synth.cues import LEXICON

    if template is not None and template.exists():  # before minutes of decoding, not after
        raise click.BadParameter(f"{template} already exists; the template never overwrites a file",
                                 param_hint="--template")

    def show(done: int, total: int) -> None:
        raise_if_interrupted()
        if done == 1 or done % 100 == 0 or done == total:
            click.echo(f"decoding {done}/{total}", err=True)

    click.get_current_context().with_resource(interrupt_guard())
    cue_lexicon = load_lexicon(lexicon) if lexicon is not None else LEXICON
    source = open_source(spec)
    if template is not None and not isinstance(source.clips, DatasetReader):
        raise click.BadParameter("needs a dataset spec; a synthetic corpus describes its clips itself",
                                 param_hint="--template")
    for warning in cue_lexicon.check_labels(source.labels):
        click.echo(f"warning: {warning}", err=True)
    report = data_report(source, decode=decode, progress=show, lexicon=cue_lexicon)
    if as_json:
        click.echo(json.dumps(report.to_dict(), sort_keys=True))
    else:
        click.echo(_format_data(report, spec))
    usable = report.decoded if report.decoded is not None else report.clips
    if usable == 0:
        raise click.ClickException(f"{spec}: no usable clip")
    if template is not None:
        write_template([(clip_id, texts) for clip_id, _, texts in indexed_clips(source)], template)
        missing = report.clips - report.described
        click.echo(f"wrote {template} ({report.clips} lines, {missing} still to describe)", err=True)


def _clip_text(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def _format_data(report: DataReport, spec: str) -> str:
    lines = [f"{report.description}: {report.clips} clips"]
    width = max((len(lab) for lab in report.label_counts), default=0)
    lines += [f"  {lab:<{width}}  {n}" for lab, n in report.label_counts.items()]
    lines.append(
        f"descriptions: {report.described} of {report.clips} clips described "
        f"({report.vocabulary_described} readable by {report.lexicon}), {report.partly_described} partly"
    )
    if report.unreadable_example is not None:
        example = report.unreadable_example
        shown = ", ".join(f"{m} {_clip_text(example[m])}" for m in example if m != "clip_id")
        lines.append(f"  not readable, e.g. {example['clip_id']}: {shown} (every non-empty description needs "
                     "a cue phrase of its modality; write a lexicon for your words: docs/lexicon.md)")
    for modality, counted in report.unread_words.items():
        if not counted:
            continue
        shown = ", ".join(f"{_clip_text(words, 40)} ({k})" for words, k in counted)
        lines.append(f"  {modality} words the lexicon does not read (clips): {shown}")
    if report.vocabulary_described:
        lines.append(f"  cue strengths (intensity words) given in {report.strength_described} of "
                     f"{report.vocabulary_described} readable clips"
                     + ("" if report.strength_described else ": --reward-weight intensity rewards nothing here"))
    if report.negated_statements:
        lines.append(f"  {report.negated_statements} cue statements are negated (\"no lowered brows\") and read as "
                     "not shown")
    if report.described == 0 and report.partly_described == 0:
        joiner = "&" if "?" in spec else "?"
        lines.append(f"  without descriptions only --recipe base trains; add {joiner}descriptions=FILE for "
                     "baseline/migr (--template FILE writes one to fill in)")
    if report.decoded is not None:
        lines.append(f"decoded: {report.decoded} of {report.clips} clips")
    for title, counts, messages in (("clips skipped", report.skipped, report.skip_messages),
                                    ("description lines skipped (their clips stay)",
                                     report.description_lines_skipped, report.description_messages)):
        if counts:
            lines.append(f"{title}: {sum(counts.values())}")
            lines += [f"  {kind}: {n} (e.g. {messages.get(kind, [''])[0]})" for kind, n in counts.items()]
    lines.append(f"fingerprint: {report.fingerprint[:16]}")
    return "\n".join(lines)


@main.command()
@click.option("--recipe", type=click.Choice(["base", "baseline", "migr"]), required=True,
              help="base: perception stage. baseline: visual-first SFT + accuracy/format GRPO. "
                   "migr: MI-ordered SFT + modality-aware GRPO.")
@click.option("--data", required=True,
              help="Synthetic corpus folder/manifest, or a dataset spec like dfew:/data/DFEW?fold=1 "
                   "(baseline/migr on a real dataset: add &descriptions=FILE.jsonl, see the README).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Checkpoint folder to write.")
@click.option("--val-data", default=None, help="base: validation data (default: 10% held out from --data).")
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help="Perception steps  [default: 800 for --recipe base, 1200 for the base stage of baseline/migr].")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True, help="base: batch size.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=2e-3, show_default=True, help="base: learning rate.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--decoder", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
              help="base: initialise the decoder and tokenizer from a local pretrained folder (e.g. Qwen2.5-0.5B).")
@click.option("--base", "base_ckpt", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
              help="baseline/migr: start from this base checkpoint (default: train one first, into <out>.work/base).")
@click.option("--stages", default="sft,grpo", show_default=True,
              help="baseline/migr: stages to run (sft, grpo or both); ablations use one.")
@click.option("--sft-order", type=click.Choice(["visual", "mi"]), default=None,
              help="Override the recipe's trace order (baseline: visual, migr: mi).")
@click.option("--rewards", type=click.Choice(["baseline", "migr"]), default=None,
              help="Override the recipe's GRPO rewards.")
@click.option("--reward-weight", "reward_weight", multiple=True, metavar="TERM=W", callback=parse_reward_weights,
              help="baseline/migr: set one GRPO reward term's weight over --rewards' set (repeatable; 0 turns a "
                   "term off), e.g. --reward-weight intensity=0.5. Terms: accuracy, format, first_segment, "
                   "consistency, grounding, intensity, coverage, coherence.")
@click.option("--sft-steps", type=click.IntRange(min=1), default=None, help="baseline/migr: SFT steps.")
@click.option("--grpo-steps", type=click.IntRange(min=1), default=None, help="baseline/migr: GRPO steps.")
@click.option("--smoke", is_flag=True, help="baseline/migr: tiny preset that runs every stage for real in about a minute.")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where preprocessed windows are cached (default: <out>.cache beside the checkpoint).")
@click.option("--work-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="baseline/migr: stage outputs and resume state (default: <out>.work beside the checkpoint).")
@click.option("--card", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="A model card to store in the checkpoint as MODEL_CARD.md.")
@click.option("--lexicon", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="baseline/migr: the cue lexicon (docs/lexicon.md) the rewards read and the checkpoint keeps "
                   "(default: the built-in cue vocabulary).")
@_user_errors
@_needs_model_stack
def train(recipe: str, data: str, out: Path, val_data: str | None, steps: int | None, batch_size: int, lr: float,
          seed: int, decoder: Path | None, base_ckpt: Path | None, stages: str, sft_order: str | None,
          rewards: str | None, reward_weight: dict[str, float], sft_steps: int | None, grpo_steps: int | None,
          smoke: bool,
          cache_dir: Path | None, work_dir: Path | None, card: Path | None, lexicon: Path | None) -> None:
    """Train MIGR weights: the base perception model, the R1-Omni-style baseline, or MIGR (two stages).

    baseline/migr resume from their last finished stage or GRPO checkpoint
    when rerun with the same options (work in progress: <out>.work/).
    """

    ctx = click.get_current_context()
    given = {name for name in ctx.params if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE}
    only_base = {"val_data", "batch_size", "lr", "decoder"}
    only_reasoning = {"base_ckpt", "stages", "sft_order", "rewards", "reward_weight", "sft_steps", "grpo_steps",
                      "smoke", "work_dir", "lexicon"}
    wrong = sorted(given & (only_reasoning if recipe == "base" else only_base))
    if wrong:
        names = ", ".join("--" + ("base" if n == "base_ckpt" else n.replace("_", "-")) for n in wrong)
        applies = "baseline and migr" if recipe == "base" else "--recipe base"
        hint = "; for a quick base run use --steps 3" if recipe == "base" and "smoke" in wrong else ""
        raise click.UsageError(f"{names} appl{'ies' if len(wrong) == 1 else 'y'} to {applies} only, "
                               f"not to --recipe {recipe}{hint}")
    ctx.with_resource(interrupt_guard())
    reports = _reports()

    def show(stage: str, p) -> None:
        raise_if_interrupted()
        if not reports:
            return
        parts = " ".join(f"{k} {v:.3f}" for k, v in (p.parts or {}).items())
        val = ""
        if p.val:
            val = (f" | val acc {p.val['accuracy']:.3f} (visual only {p.val['accuracy_visual_only']:.3f}, "
                   f"audio only {p.val['accuracy_audio_only']:.3f})")
        every = 1 if stage == "grpo" else 10
        if p.step % every == 0 or p.step == p.steps:
            click.echo(f"[{stage}] step {p.step}/{p.steps} loss {p.loss:.4f} ({parts}) lr {p.lr:.2e}{val} "
                       f"elapsed {p.elapsed_s:.0f}s eta {p.eta_s:.0f}s", err=True)

    if recipe == "base":
        from migr_rt.training.base_recipe import BaseRecipeConfig, run_base_recipe
        from migr_rt.training.perception import PerceptionConfig

        recipe_cfg = BaseRecipeConfig(
            data=data, out=str(out), val_data=val_data, decoder_path=str(decoder) if decoder else None,
            cache_dir=str(cache_dir) if cache_dir else None, card=str(card) if card else None,
            perception=PerceptionConfig(steps=steps or 800, batch_size=batch_size, lr=lr, seed=seed),
        )
        metrics = run_base_recipe(recipe_cfg, on_extract=_show_extract, on_progress=lambda p: show("base", p))
        if reports:
            click.echo(f"wrote {out} (validation: {metrics['val']})")
        return

    from dataclasses import replace

    from migr_rt.training.reasoning_recipe import ReasoningRecipeConfig, run_reasoning_recipe, smoke_config

    options = dict(
        base=str(base_ckpt) if base_ckpt else None, cache_dir=str(cache_dir) if cache_dir else None,
        work_dir=str(work_dir) if work_dir else None,
        card=str(card) if card else None, stages=tuple(s.strip() for s in stages.split(",") if s.strip()),
        sft_order=sft_order, rewards=rewards, seed=seed, lexicon=str(lexicon) if lexicon else None,
    )
    if steps is not None:
        options["base_steps"] = steps
    cfg = smoke_config(recipe, data, str(out), **options) if smoke else ReasoningRecipeConfig(
        recipe=recipe, data=data, out=str(out), **options)
    if reward_weight:
        try:
            weights = replace(cfg.weights(), **reward_weight)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--reward-weight") from exc
        if weights != cfg.weights():  # the recipe's own weights, restated, still resume the run they started
            cfg.reward_weights = weights
    if sft_steps is not None:
        cfg.sft = replace(cfg.sft, steps=sft_steps)
    if grpo_steps is not None:
        cfg.grpo = replace(cfg.grpo, steps=grpo_steps)
    metrics = run_reasoning_recipe(cfg, on_progress=show, on_extract=_show_extract)
    if reports:
        click.echo(f"wrote {out} (stages finished: {', '.join(metrics['finished'])})")


@main.command(name="eval")
@click.option("--checkpoint", type=click.Path(path_type=Path), required=True, help="Checkpoint folder to evaluate.")
@click.option("--data", required=True, help="Synthetic corpus folder/manifest, or a dataset spec like dfew:/data/DFEW?fold=1.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder for eval.json, predictions.jsonl and drift.png (default: <checkpoint>.eval beside it).")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where preprocessed windows are cached (default: <out>/cache).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Evaluate the first N clips only.")
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=128, show_default=True,
              help="Longest rationale decoded per window.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--device", default=None, help="torch device (default: cuda when available, else cpu).")
@click.option("--mode", type=click.Choice(["auto", "reason", "describe"]), default="auto", show_default=True,
              help="reason: generate <think>...</think><answer>; describe: a base checkpoint's cue description "
                   "judged against its answer-slot label; auto: describe for base checkpoints.")
@click.option("--opening", type=click.Choice(["free", "mi"]), default="free", show_default=True,
              help="free: the model picks the opening segment; mi: the runtime's MI (predicted label) picks it.")
@click.option("--lexicon", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="Judge with this cue lexicon (docs/lexicon.md) instead of the one the checkpoint was trained with.")
@_user_errors
@_needs_model_stack
def eval_(checkpoint: Path, data: str, out: Path | None, cache_dir: Path | None, limit: int | None,
          max_new_tokens: int, batch_size: int, device: str | None, mode: str, opening: str,
          lexicon: Path | None) -> None:
    """Evaluate a checkpoint's rationales: WAR, UAR, ICR, first-segment agreement, grounding, drift."""
    import torch

    from migr_rt.model import CheckpointError, load_checkpoint
    from migr_rt.training.base_recipe import load_or_extract
    from migr_rt.training.data import DatasetError
    from migr_rt.training.evaluation import EvalConfig, evaluate_reasoning, limit_source, write_report
    from migr_rt.training.lexicon import load_lexicon, stored_lexicon
    from migr_rt.training.sources import open_source
    from migr_rt.training.synth.reader import ManifestError

    checkpoint = checkpoint.resolve()
    out = out or checkpoint.parent / f"{checkpoint.name}.eval"
    cache_dir = cache_dir or out / "cache"
    device = _torch_device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    try:
        model, tokenizer = load_checkpoint(checkpoint, device=device)
    except CheckpointError as exc:
        raise click.ClickException(f"--checkpoint: {exc}") from exc
    cue_lexicon = load_lexicon(lexicon) if lexicon is not None else stored_lexicon(checkpoint)
    for warning in cue_lexicon.check_labels(model.config.labels):
        click.echo(f"warning: {warning}", err=True)
    try:
        source = open_source(data)
    except (DatasetError, ManifestError, FileNotFoundError) as exc:
        raise click.ClickException(f"--data {data}: {exc}") from exc
    unknown = [lab for lab in source.labels if lab not in model.config.labels]
    if unknown:
        raise click.ClickException(
            f"--data {data}: labels {unknown} are not in the checkpoint's label set {list(model.config.labels)}"
        )
    if limit is not None:
        source = limit_source(source, limit)
    click.get_current_context().with_resource(interrupt_guard())

    def on_progress(p) -> None:
        raise_if_interrupted()
        eta = p.elapsed_s / p.done * (p.total - p.done)
        click.echo(f"evaluated {p.done}/{p.total} windows elapsed {p.elapsed_s:.0f}s eta {eta:.0f}s", err=True)

    if mode == "auto":
        import json

        info = checkpoint / "train_config.json"
        recipe = json.loads(info.read_text()).get("recipe") if info.is_file() else None
        mode = "describe" if recipe == "base" else "reason"
    windows = load_or_extract(source, model.config, cache_dir, _show_extract)
    report = evaluate_reasoning(
        model, tokenizer, windows,
        EvalConfig(max_new_tokens=max_new_tokens, batch_size=batch_size, mode=mode, opening=opening),
        on_progress=on_progress, lexicon=cue_lexicon,
    )
    paths = write_report(report, out)
    click.echo(_format_eval(report))
    click.echo(f"wrote {paths['eval']}, {paths['predictions'].name} and {paths['drift'].name}")


def _format_eval(report) -> str:
    def pct(value) -> str:
        return "   n/a" if value is None else f"{100 * value:5.1f}%"

    def row(name: str, m: dict) -> str:
        return (f"{name:<22} {m['windows']:>6} {pct(m['war'])} {pct(m['uar'])} {pct(m['icr'])} "
                f"{pct(m['first_segment_agreement'])} {pct(m['grounding_rate'])} {pct(m.get('intensity_agreement'))} "
                f"{pct(m['format_valid'])}")

    m = report.metrics
    lines = [f"{'':<22} {'n':>6} {'WAR':>6} {'UAR':>6} {'ICR':>6} {'first':>6} {'ground':>6} {'intens':>6} "
             f"{'format':>6}",
             row("all", m)]
    for name in ("consistent", "ambiguous_conflicting"):
        if report.subsets.get(name):
            lines.append(row(name, report.subsets[name]))
    for kind, sub in report.subsets.get("by_kind", {}).items():
        lines.append(row(f"  kind {kind}", sub))
    lines.append(
        f"invalid answers {m['invalid_answers']}/{m['windows']}; ICR {m['icr_inconsistent']}/{m['correct']} correct "
        f"inconsistent ({m['icr_no_cue']} state no cue); one-sided first-segment agreement "
        f"{pct(m['first_segment_agreement_one_sided']).strip()}; coverage {pct(m['coverage']).strip()}"
    )
    if m.get("label_closed_icr_inconsistent") is not None:
        lines.append(
            f"closed with the answer-slot label (as the runtime closes rationales): ICR "
            f"{pct(m['label_closed_icr']).strip()}, answer = what the explanation argues for "
            f"{pct(m['label_closed_explanation_agreement']).strip()} (own answers: "
            f"{pct(m['answer_explanation_agreement']).strip()})"
        )
    if report.drift:
        first, last = report.drift[0], report.drift[-1]
        lines.append(f"modality attention share: step {first['step']} {first['total']:.3f} -> "
                     f"step {last['step']} {last['total']:.3f} ({last['windows']} windows reach it)")
    return "\n".join(lines)


@main.command()
@click.option("--checkpoint", type=click.Path(path_type=Path), default=None,
              help="Checkpoint folder to export (default: the bundled model).")
@click.option("--format", "fmt", type=click.Choice(["onnx", "tensorrt"]), default="onnx", show_default=True)
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]), default=None,
              help="Default: fp32 for onnx, fp16 for tensorrt. int8: onnx = dynamic quantisation for CPUs "
                   "(7-bit weights: no int16 overflow on CPUs without VNNI); "
                   "tensorrt = calibrated from --calibration-data.")
@click.option("--calibration-data", default=None, help="tensorrt int8: a synthetic corpus folder/manifest to calibrate on.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Artifact folder to write (replaced atomically once complete).")
@click.option("--no-parity", is_flag=True, help="Skip the onnxruntime-vs-torch parity check (not recommended).")
@_user_errors
@_needs_model_stack
def export(checkpoint: Path | None, fmt: str, precision: str | None, calibration_data: str | None, out: Path,
           no_parity: bool) -> None:
    """Export a checkpoint to a self-describing ONNX or TensorRT artifact folder (manifest.json + graphs)."""
    from migr_rt.bundled import default_checkpoint

    checkpoint = checkpoint or default_checkpoint()
    precision = precision or ("fp32" if fmt == "onnx" else "fp16")

    click.get_current_context().with_resource(interrupt_guard())
    say = _show_progress("export")

    if fmt == "onnx":
        if calibration_data:
            raise click.UsageError("--calibration-data is for --format tensorrt --precision int8")
        from migr_rt.export.onnx_export import export_onnx

        manifest = export_onnx(checkpoint, out, precision, check_parity=not no_parity, on_progress=say)
    else:
        from migr_rt.export.tensorrt_build import build_tensorrt

        manifest = build_tensorrt(checkpoint, out, precision, calibration_data=calibration_data, on_progress=say)
    parity = ", ".join(f"{k} {v:.1e}" for k, v in manifest.parity.items() if k in manifest.graphs)
    click.echo(f"{out}: {fmt} {precision}, {len(manifest.graphs)} graphs" + (f"; max |diff| vs torch: {parity}" if parity else ""))


@main.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of the table.")
def devices(as_json: bool) -> None:
    """List the cameras and microphones `run` can use, as its --camera and --mic take them."""
    import json

    import av

    from migr_rt.runtime.alsa import AlsaConfigError, configure_alsa, pcm_problem
    from migr_rt.runtime.devices import (
        held_by, holders, microphones, pcm_holders, process_names, scan, stable_names, streaming_elsewhere,
        why_not_a_camera,
    )

    def in_use(busy: bool, found: list[tuple[int, str]]) -> dict:  # who holds a device another program records from
        return {"busy": busy, "held_by": [{"pid": pid, "name": name} for pid, name in found]}

    def holders_said(entry: dict, nodes: str) -> str:  # in_use's holders, in words
        return held_by([(holder["pid"], holder["name"]) for holder in entry["held_by"]], nodes)

    def camera_mode(node) -> dict:  # the mode `run --camera` asks for at the default --fps
        from migr_rt.runtime.sources import camera_mode

        mode = camera_mode(node.path, 25.0)
        return {"mode": str(mode) if mode is not None else None}

    def camera_use(node) -> dict:
        try:
            busy = streaming_elsewhere(node)
        except OSError:  # unplugged since the scan: its open will say
            busy = False
        return in_use(busy, holders(node.path) if busy else [])

    def mic_use(spec: str) -> dict:
        owners = pcm_holders(spec.removeprefix("alsa:"))
        return in_use(owners is not None, process_names(owners or []))

    nodes, silent = scan()
    mics = [{"mic": m.spec, "card": m.card, "name": m.name, **mic_use(m.spec)} for m in microphones()]
    alsa_note = "" if "alsa" in av.formats_available else "this PyAV's FFmpeg has no ALSA input"
    if not alsa_note:
        try:
            configure_alsa()
            if pcm_problem("default") is None:
                mics.append({"mic": "alsa:default", "card": "", "name": "ALSA's default capture device",
                             **in_use(False, [])})
        except AlsaConfigError as exc:
            alsa_note = str(exc)
    stable = stable_names()
    cams = [{"camera": n.index, "device": str(n.path), "name": n.card, "driver": n.driver, "bus": n.bus,
             "stable_name": str(stable.get(n.path.resolve(), "")), **camera_mode(n), **camera_use(n)}
            for n in nodes if n.is_camera]
    others = [{"device": str(n.path), "name": n.card, "why": why_not_a_camera(n)} for n in nodes if not n.is_camera]
    others += [{"device": str(path), "name": "", "why": why} for path, why in silent]
    if as_json:
        click.echo(json.dumps({"cameras": cams, "other_video_nodes": others, "microphones": mics,
                               **({"alsa": alsa_note} if alsa_note else {})}))
        return
    click.echo("cameras (run --camera N):")
    for cam in cams:
        click.echo(f"  --camera {cam['camera']:<3} {cam['device']:<13} {cam['name']}  ({cam['driver']}, {cam['bus']})")
        if cam["stable_name"]:  # the same camera after a reboot or a replug, whatever its number then
            click.echo(f"  --camera {cam['stable_name']}")
        if cam["mode"]:
            click.echo(f"      read as {cam['mode']} (--camera-size asks for another)")
        if cam["busy"]:  # FFmpeg's open would fail with EBUSY (a video call holds it)
            click.echo(f"      (busy: another program is streaming from it, {holders_said(cam, cam['device'])})")
    if not cams:
        click.echo("  none found (no /dev/videoN here answers as a V4L2 camera); try --source demo or a file")
    for other in others:  # why a /dev/videoN is not offered: a metadata node, a codec, not readable by this user
        click.echo(f"  (not usable: {other['device']} {other['why']})")
    click.echo("microphones (run --mic SPEC):")
    for mic in mics:
        click.echo(f"  --mic {mic['mic']:<28} " + ": ".join(p for p in (mic["card"], mic["name"]) if p))
        if mic["busy"]:
            click.echo(f"      (busy: another program is recording from it, {holders_said(mic, '/dev/snd/*')})")
    if not mics:
        click.echo("  none found" + ("" if Path("/proc/asound/cards").exists() else " (no sound card: /proc/asound "
                                     "is missing)") + "; without --mic, files use their own audio track")
    if alsa_note:
        click.echo(f"  ({alsa_note})")


class SizeParam(click.ParamType):
    """``--camera-size``: WIDTHxHEIGHT."""

    name = "WxH"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> tuple[int, int]:
        if isinstance(value, tuple):
            return value
        width, _, height = str(value).strip().lower().partition("x")
        if re.fullmatch(r"[0-9]+", width) and re.fullmatch(r"[0-9]+", height) and int(width) > 0 and int(height) > 0:
            return int(width), int(height)  # ASCII digits: str.isdigit also passes "²", which int() refuses
        self.fail(f"{value!r}: a picture size is WIDTHxHEIGHT, e.g. 1280x720", param, ctx)


class CameraParam(click.ParamType):
    """``--camera``: an index N (``/dev/videoN``) or a device path (a stable ``/dev/v4l/by-id/...`` name)."""

    name = "N|PATH"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> int | str:
        from migr_rt.runtime.sources import camera_ref

        if isinstance(value, int) and value >= 0:
            return value
        camera = camera_ref(str(value).strip())
        if camera is not None:
            return camera
        self.fail(f"{value!r}: a camera is its index N (/dev/videoN) or its device path (/dev/v4l/by-id/...)",
                  param, ctx)


@main.command()
@click.option("--camera", type=CameraParam(), default=None,
              help="Camera index N (/dev/videoN, v4l2) or device path, e.g. a stable /dev/v4l/by-id/... name "
                   "(`migr-rt devices` lists them).")
@click.option("--camera-size", type=SizeParam(), default=None,
              help="Picture size to ask the camera for, e.g. 1280x720 for sharper face crops (default: the smallest "
                   "it gives at least 640 wide that keeps up with --fps; `migr-rt devices` shows it).")
@click.option("--mic", default=None, help="Microphone: alsa:DEVICE, e.g. alsa:plughw:1,0 (`migr-rt devices` lists "
              "them), or pulse:DEVICE where PyAV has PulseAudio (default: none for a camera; files use their own "
              "audio track).")
@click.option("--source", default=None, help="FILE, URL, lavfi:GRAPH, demo (the bundled clip), - (media piped to "
              "stdin, e.g. from rpicam-vid) or a camera device path.")
@click.option("--loop", is_flag=True, help="Replay a file or the demo forever.")
@click.option("--realtime/--no-realtime", default=None,
              help="Replay files at their own rate with drops like a camera (default for URLs; always for cameras, "
                   "microphones and live streams), or analyse every window losslessly (default for files and the "
                   "demo; a URL that states a duration, a remote file, can be read so too).")
@click.option("--checkpoint", type=click.Path(path_type=Path), default=None,
              help="Checkpoint or exported artifact folder (default: the bundled model; its ONNX export where "
                   "onnxruntime runs it, starting ~4 s sooner here than its checkpoint, which --backend torch "
                   "runs: README, Numbers).")
@click.option("--backend", type=click.Choice(["auto", "torch", "onnxruntime", "tensorrt"]), default="auto",
              show_default=True)
@click.option("--window", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Window seconds, 0.25-60 (default: the model's). The model hears its own window's length of "
                   "audio: the first seconds of a longer window, a shorter one padded with silence.")
@click.option("--hop", type=click.FloatRange(min=0, min_open=True), default=0.5, show_default=True,
              help="Seconds between windows, 0.01-3600.")
@click.option("--fps", type=click.FloatRange(min=0, min_open=True), default=25.0, show_default=True,
              help="Frame rate video is resampled to, up to 1000.")
@click.option("--rationale/--no-rationale", default=True, show_default=True, help="Stream a rationale per window.")
@click.option("--max-rationale-tokens", type=click.IntRange(min=1), default=96, show_default=True)
@click.option("--rationale-answer", type=click.Choice(["label", "model"]), default="label", show_default=True,
              help="Close each rationale with the window's label, or keep the model's own closing answer "
                   "(both are in the JSON event: answer, model_answer).")
@click.option("--json", "as_json", is_flag=True, help="JSON-lines events on stdout (schema: docs/events.md).")
@click.option("--save", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the annotated video with its audio to this .mp4.")
@click.option("--view", is_flag=True, help="Show the annotated video in a window (needs a display and GUI OpenCV).")
@click.option("--reconnect-timeout", type=click.FloatRange(min=0), default=10.0, show_default=True,
              help="Seconds to keep retrying a lost camera, microphone or stream before exiting.")
@click.option("--max-windows", type=click.IntRange(min=1), default=None, help="Stop after this many windows.")
@click.option("--threads", type=click.IntRange(min=1, max=MAX_THREADS), default=None,
              help="Inference threads (onnxruntime).")
@click.option("--face-tracking/--no-face-tracking", default=True, show_default=True,
              help="Follow the face between sampled frames (a full detector scan every 8 sampled frames or when "
                   "the face is lost) or scan every sampled frame in full.")
def run(camera: int | str | None, camera_size: tuple[int, int] | None, mic: str | None, source: str | None,
        loop: bool, realtime: bool | None,
        checkpoint: Path | None, backend: str, window: float | None, hop: float, fps: float, rationale: bool,
        max_rationale_tokens: int, rationale_answer: str, as_json: bool, save: Path | None, view: bool,
        reconnect_timeout: float,
        max_windows: int | None, threads: int | None, face_tracking: bool) -> None:
    """Stream emotion, modality importance and rationale from a camera, a file, a URL or the demo clip.

    Exit status: 0 at the end of the input or on Ctrl-C, 1 for bad input, 3 when the source was lost
    and could not be reopened within --reconnect-timeout.
    """
    from migr_rt.cli_run import RunOptions, run_stream

    options = RunOptions(camera=camera, camera_size=camera_size, mic=mic, source=source, loop=loop,
                         realtime=realtime, checkpoint=checkpoint,
                         backend=backend, window=window, hop=hop, fps=fps, rationale=rationale,
                         max_rationale_tokens=max_rationale_tokens, rationale_answer=rationale_answer,
                         as_json=as_json, save=save, view=view, reconnect_timeout=reconnect_timeout,
                         max_windows=max_windows, threads=threads, face_tracking=face_tracking)
    sys.exit(run_stream(options))


@main.command()
@click.option("--checkpoint", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
              help="Checkpoint folder (default: the bundled model); exported artifacts are made from it.")
@click.option("--backends", default="torch,onnxruntime,tensorrt", show_default=True,
              help="Comma-separated migr-rt backends; those not available here are reported, not fatal.")
@click.option("--precisions", default="fp32,int8", show_default=True,
              help="Comma-separated precisions of the exported artifacts (fp32, int8, fp16); torch runs the "
                   "checkpoint as saved.")
@click.option("--runs", type=click.IntRange(min=3), default=None,
              help="Warm runs per stage and end to end (the decode step gets 3x) [default: 100; 8 with --quick].")
@click.option("--quick", is_flag=True, help="Few runs and rounds: a quick, noisy look.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/bench"), show_default=True,
              help="Folder for bench.json, bench.md and the PNG plots.")
@click.option("--artifacts", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/artifacts"),
              show_default=True, help="ONNX/TensorRT exports: <checkpoint name>-<precision>, reused while they match "
              "the checkpoint's weights, else exported (~30 s each).")
@click.option("--threads", type=click.IntRange(min=1, max=MAX_THREADS), default=None,
              help="torch threads and onnxruntime intra-op threads (default: torch's).")
@click.option("--device", default="cpu", show_default=True, help="torch device of the torch backend and the HF path.")
@_user_errors
@_needs_model_stack
def bench(checkpoint: Path | None, backends: str, precisions: str, runs: int | None, quick: bool, out: Path,
          artifacts: Path, threads: int | None, device: str) -> None:
    """Per-stage latency on this machine: migr-rt's backends vs the plain Hugging Face path, same weights and window.

    Prints a table and writes JSON, markdown and plots (latency CDF, MI cost vs variants) into --out.
    """
    from migr_rt.perf import BenchOptions, run_bench, terminal_table, write_results

    def items(text: str) -> tuple[str, ...]:
        return tuple(x.strip() for x in text.split(",") if x.strip())

    options = BenchOptions(checkpoint=checkpoint, backends=items(backends), precisions=items(precisions), runs=runs,
                           quick=quick, artifacts=artifacts, threads=threads, device=_torch_device(device))
    command = " ".join(["migr-rt bench", f"--backends {','.join(options.backends)}",
                        f"--precisions {','.join(options.precisions)}"] + (["--quick"] if quick else [])
                       + ([f"--runs {runs}"] if runs else []))
    options.extra["command"] = command
    click.get_current_context().with_resource(interrupt_guard())
    result = run_bench(options, progress=_show_progress("bench"))
    files = write_results(result, out, "bench", command=command)
    click.echo(terminal_table(result))
    click.echo("\nwrote " + ", ".join(str(p) for p in files.values()))


def entry() -> None:
    """The ``migr-rt`` command and ``python -m migr_rt.cli``: :func:`main` as a process of its own.

    A Ctrl-C (or SIGTERM) that ends ``run`` while its model loads can land in Python code that a native library
    runs through ``PyRun_String`` during its imports. CPython then marks the interrupt as unhandled although ``run``
    handled it, and ends a ``python -m`` process by SIGINT after finalising (status 130 instead of ``run``'s 0: a
    service manager sees a failure). After such an interrupt the process leaves with ``os._exit`` once its output
    is flushed: nothing was written yet that finalising would complete. :func:`main` stays callable in-process.
    """
    from migr_rt.cli_run import interrupted_loading

    try:
        main()
    except SystemExit as done:
        if not interrupted_loading.is_set():
            raise
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0 if done.code is None else done.code if isinstance(done.code, int) else 1)


if __name__ == "__main__":  # pragma: no cover
    entry()
