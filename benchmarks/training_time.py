"""Wall-clock time of a training command on this machine, recorded beside its target.

    python benchmarks/training_time.py --name smoke --target 90 -- \\
        migr-rt train --recipe migr --smoke --data runs/synth-small --out runs/smoke
    python benchmarks/training_time.py --name default_recipe --target 2700 -- \\
        migr-rt train --recipe migr --data runs/synth-train --out runs/migr

Runs the command as given (its output passes through), then merges
``{name: seconds, target, command, machine}`` into
``benchmarks/results/training_time.{json,md}``. A failing command records
nothing and exits with its status.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info  # noqa: E402

from migr_rt.atomic import write_text_atomic  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def markdown(entries: dict) -> str:
    lines = [
        "# Training time",
        "",
        "Wall clock of whole commands (data preprocessing included), measured by `benchmarks/training_time.py`.",
        "",
        "| run | seconds | target | met | command |",
        "|---|---|---|---|---|",
    ]
    for name, e in sorted(entries.items()):
        target = e.get("target_s")
        met = "n/a" if target is None else ("yes" if e["seconds"] <= target else "NO")
        lines.append(f"| {name} | {e['seconds']:.0f} | {target if target is not None else '-'} | {met} | "
                     f"`{' '.join(e['command'])}` |")
    lines += ["", "Machines: " + "; ".join(f"{n}: {e['machine']['cpu']}, {e['machine']['cores']} cores, "
                                           f"torch {e['machine']['torch']}, commit {e['machine']['commit']}"
                                           for n, e in sorted(entries.items())), ""]
    return "\n".join(lines)


@click.command(context_settings={"ignore_unknown_options": True})
@click.option("--name", required=True)
@click.option("--target", "target_s", type=float, default=None, help="Target in seconds.")
@click.argument("command", nargs=-1, type=click.UNPROCESSED, required=True)
def main(name: str, target_s: float | None, command: tuple[str, ...]) -> None:
    start = time.monotonic()
    status = subprocess.call(list(command))
    seconds = time.monotonic() - start
    if status != 0:
        sys.exit(status)
    path = RESULTS / "training_time.json"
    entries = json.loads(path.read_text()) if path.is_file() else {}
    entries[name] = {"seconds": seconds, "target_s": target_s, "command": list(command), "machine": machine_info()}
    RESULTS.mkdir(exist_ok=True)
    write_text_atomic(path, json.dumps(entries, indent=2, sort_keys=True) + "\n")
    write_text_atomic(RESULTS / "training_time.md", markdown(entries))
    click.echo(f"{name}: {seconds:.1f} s" + (f" (target {target_s:.0f} s)" if target_s else ""), err=True)


if __name__ == "__main__":
    main()
