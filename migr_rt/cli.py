"""The ``migr-rt`` command line: click lives here and nowhere else."""

from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path

import click

from migr_rt import __version__
from migr_rt.labels import DFEW_LABELS


def _not_implemented(command: str, issue: str) -> None:
    click.echo(f"migr-rt {command}: not implemented yet ({issue}).", err=True)
    sys.exit(2)


def _user_errors(func):
    """Show the typed errors of bad input as one clear line (exit 1); a traceback only with -vv."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from migr_rt.media import MediaError
        from migr_rt.model import CheckpointError
        from migr_rt.training.data import DatasetError
        from migr_rt.training.synth.reader import ManifestError

        try:
            return func(*args, **kwargs)
        except (CheckpointError, DatasetError, MediaError, ManifestError, FileExistsError, FileNotFoundError,
                ValueError) as exc:
            if logging.getLogger().isEnabledFor(logging.DEBUG):
                raise
            raise click.ClickException(str(exc)) from exc

    return wrapper


_STUB = {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": ["-h", "--help"]}


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="migr-rt")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def main(verbose: int) -> None:
    """migr-rt: multimodal emotion recognition whose explanations start from the modality that matters."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    # transformers draws progress bars for loading a few-MB checkpoint; the CLI reports its own progress.
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    if verbose < 2:
        hf_logging.set_verbosity_error()


CLIP_KINDS = ("consistent", "visual_dominant", "audio_dominant", "ambiguous", "conflicting", "any")


@main.command()
@click.option("--checkpoint", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
              help="Checkpoint folder (default: the bundled model).")
@click.option("--emotion", type=click.Choice(list(DFEW_LABELS)), default=None, help="Emotion of the synthesised clip.")
@click.option("--kind", type=click.Choice(CLIP_KINDS), default="audio_dominant", show_default=True,
              help="Evidence kind: which modality carries the emotion.")
@click.option("--seed", type=int, default=0, show_default=True, help="Synthetic corpus seed the clip is drawn from.")
@click.option("--keep", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep the synthesised MP4 in this folder (default: a temporary folder).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the report.")
@_user_errors
def demo(checkpoint: Path | None, emotion: str | None, kind: str, seed: int, keep: Path | None, as_json: bool) -> None:
    """Synthesise a talking-face clip, then print the model's emotion and modality importance for it."""
    import json
    import tempfile
    from dataclasses import asdict

    from migr_rt.demo import run_demo

    with tempfile.TemporaryDirectory(prefix="migr-rt-demo-") as tmp:
        report = run_demo(keep or tmp, checkpoint=checkpoint, seed=seed, emotion=emotion,
                          kind=None if kind == "any" else kind)
        if as_json:
            click.echo(json.dumps({"clip": str(report.clip_path) if keep else None, "truth": report.truth,
                                   "prediction": asdict(report.prediction)}, sort_keys=True))
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
    with click.progressbar(length=n, label="synthesising", file=sys.stderr) as bar:
        manifest = generate_corpus(config, out, progress=lambda done, total: bar.update(done - bar.pos))
    click.echo(f"wrote {n} clips and {manifest}")
    if preview is not None:
        from migr_rt.training.synth.preview import render_preview

        for path in render_preview(manifest, preview):
            click.echo(f"wrote {path}")


@main.command()
@click.option("--recipe", type=click.Choice(["base", "baseline", "migr"]), required=True, help="Training recipe.")
@click.option("--data", required=True, help="Synthetic corpus folder/manifest, or a dataset spec like dfew:/data/DFEW?fold=1.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Checkpoint folder to write.")
@click.option("--val-data", default=None, help="Validation data (default: 10% held out from --data).")
@click.option("--steps", type=click.IntRange(min=1), default=800, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=2e-3, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--decoder", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
              help="Initialise the decoder and tokenizer from a local pretrained folder (e.g. Qwen2.5-0.5B).")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where preprocessed windows are cached (default: <out>.cache beside the checkpoint).")
@click.option("--card", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="A model card to store in the checkpoint as MODEL_CARD.md.")
@_user_errors
def train(recipe: str, data: str, out: Path, val_data: str | None, steps: int, batch_size: int, lr: float,
          seed: int, decoder: Path | None, cache_dir: Path | None, card: Path | None) -> None:
    """Train MIGR weights. `base` (perception stage) works now; `baseline` and `migr` come with issue #3."""
    if recipe != "base":
        _not_implemented(f"train --recipe {recipe}", "issue #3: the MIGR training recipe")
    from migr_rt.training.base_recipe import BaseRecipeConfig, run_base_recipe
    from migr_rt.training.perception import PerceptionConfig

    recipe_cfg = BaseRecipeConfig(
        data=data, out=str(out), val_data=val_data, decoder_path=str(decoder) if decoder else None,
        cache_dir=str(cache_dir) if cache_dir else None, card=str(card) if card else None,
        perception=PerceptionConfig(steps=steps, batch_size=batch_size, lr=lr, seed=seed),
    )

    def on_extract(done: int, total: int | None) -> None:
        if done == 1 or done % 100 == 0 or done == total:
            click.echo(f"preprocessing windows {done}/{total or '?'}", err=True)

    def on_progress(p) -> None:
        parts = " ".join(f"{k} {v:.3f}" for k, v in (p.parts or {}).items())
        val = ""
        if p.val:
            val = (f" | val acc {p.val['accuracy']:.3f} (visual only {p.val['accuracy_visual_only']:.3f}, "
                   f"audio only {p.val['accuracy_audio_only']:.3f})")
        click.echo(f"step {p.step}/{p.steps} loss {p.loss:.4f} ({parts}) lr {p.lr:.2e}{val} "
                   f"elapsed {p.elapsed_s:.0f}s eta {p.eta_s:.0f}s", err=True)

    metrics = run_base_recipe(recipe_cfg, on_extract=on_extract, on_progress=on_progress)
    click.echo(f"wrote {out} (validation: {metrics['val']})")


@main.command(name="eval", context_settings=_STUB)
def eval_() -> None:
    """Evaluate a checkpoint: WAR, UAR, ICR, agreement, grounding, drift (issue #3)."""
    _not_implemented("eval", "issue #3: evaluation")


@main.command(context_settings=_STUB)
def export() -> None:
    """Export a checkpoint to ONNX or TensorRT artifacts (issue #4)."""
    _not_implemented("export", "issue #4: ONNX/TensorRT export")


@main.command(context_settings=_STUB)
def run() -> None:
    """Run the streaming runtime on a camera, a file or the demo source (issue #6)."""
    _not_implemented("run", "issue #6: streaming runtime")


@main.command(context_settings=_STUB)
def bench() -> None:
    """Benchmark per-stage latency on this machine (issue #7)."""
    _not_implemented("bench", "issue #7: benchmarks")


if __name__ == "__main__":  # pragma: no cover
    main()
