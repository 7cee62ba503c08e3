"""Per-stage latency of migr-rt against the plain Hugging Face path, the full ``migr-rt bench``, for the record.

    python benchmarks/bench_report.py                 # full: 100 warm runs per stage, every backend here
    python benchmarks/bench_report.py --quick --out /tmp/bench   # a quick look

On one real window (a synthetic clip written as MP4, decoded with PyAV):
decode, face, encoders, MI scoring, prefill, per-token decode and end to end
(window -> fast event, -> first rationale token, -> full rationale), p50 /
p95 / p99, for every backend and precision present (torch; onnxruntime
fp32 / int8 / fp16 from ONNX exports in ``runs/artifacts/default-<precision>``,
reused while they match the checkpoint's weights; TensorRT where available),
against the ``transformers`` path a research repository runs (MI by 1 + M
separate forwards, the rationale by ``generate`` with its cache). Also
tokens/s, peak memory, the memory-bandwidth bound of decoding, MI cost vs
number of variants. Targets: end to end >= 3x the HF path at batch 1 on
CPU; per-token decode within 3x of the bandwidth bound.

Writes ``<out>/<name>.json``, ``.md``, ``<name>_latency_cdf.png`` and
``<name>_mi_variants.png`` (default ``benchmarks/results/bench_cpu``).
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from migr_rt.perf import BenchOptions, run_bench, terminal_table, write_results

RESULTS = Path(__file__).resolve().parent / "results"


@click.command()
@click.option("--checkpoint", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
              help="Checkpoint folder (default: the bundled one).")
@click.option("--backends", default="torch,onnxruntime,tensorrt", show_default=True)
@click.option("--precisions", default="fp32,int8,fp16", show_default=True,
              help="Artifact precisions; one that cannot export or run here is reported, not fatal.")
@click.option("--runs", type=click.IntRange(min=3), default=None, help="Warm runs per stage [default: 100; quick 8].")
@click.option("--quick", is_flag=True)
@click.option("--artifacts", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/artifacts"),
              show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=None)
@click.option("--device", default="cpu", show_default=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=RESULTS, show_default=True)
@click.option("--name", default=None, help="Result file stem [default: bench_<device>].")
def main(checkpoint: Path | None, backends: str, precisions: str, runs: int | None, quick: bool, artifacts: Path,
         threads: int | None, device: str, out: Path, name: str | None) -> None:
    def items(text: str) -> tuple[str, ...]:
        return tuple(x.strip() for x in text.split(",") if x.strip())

    command = shlex.join(["python", "benchmarks/bench_report.py", *sys.argv[1:]])
    options = BenchOptions(checkpoint=checkpoint, backends=items(backends), precisions=items(precisions), runs=runs,
                           quick=quick, artifacts=artifacts, threads=threads, device=device,
                           extra={"command": command})
    result = run_bench(options, progress=lambda message: click.echo(f"bench: {message}", err=True))
    stem = name or f"bench_{device.split(':')[0]}"
    files = write_results(result, out, stem, command=command)
    click.echo(terminal_table(result))
    click.echo("\nwrote " + ", ".join(str(p) for p in files.values()))


if __name__ == "__main__":
    main()
