"""The ``migr-rt`` command line: click lives here and nowhere else."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from migr_rt import __version__


def _not_implemented(command: str, issue: str) -> None:
    click.echo(f"migr-rt {command}: not implemented yet ({issue}).", err=True)
    sys.exit(2)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="migr-rt")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def main(verbose: int) -> None:
    """migr-rt: multimodal emotion recognition whose explanations start from the modality that matters."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


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
@click.option("--recipe", type=click.Choice(["base", "baseline", "migr"]), required=True)
@click.option("--data", required=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
def train(recipe: str, data: str, out: Path) -> None:
    """Train MIGR weights (base, baseline or migr recipe)."""
    _not_implemented("train", "issue #3: the MIGR training recipe")


@main.command(name="eval")
@click.option("--checkpoint", type=click.Path(path_type=Path), required=True)
@click.option("--data", required=True)
def eval_(checkpoint: Path, data: str) -> None:
    """Evaluate a checkpoint: WAR, UAR, ICR, agreement, grounding, drift."""
    _not_implemented("eval", "issue #3: evaluation")


@main.command()
@click.option("--checkpoint", type=click.Path(path_type=Path), required=True)
@click.option("--format", "fmt", type=click.Choice(["onnx", "tensorrt"]), required=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
def export(checkpoint: Path, fmt: str, out: Path) -> None:
    """Export a checkpoint to ONNX or TensorRT artifacts."""
    _not_implemented("export", "issue #4: ONNX/TensorRT export")


@main.command()
@click.option("--camera", type=int, default=None)
@click.option("--source", default=None)
def run(camera: int | None, source: str | None) -> None:
    """Run the streaming runtime on a camera, a file or the demo source."""
    _not_implemented("run", "issue #6: streaming runtime")


@main.command()
def bench() -> None:
    """Benchmark per-stage latency on this machine."""
    _not_implemented("bench", "issue #7: benchmarks")


if __name__ == "__main__":  # pragma: no cover
    main()
