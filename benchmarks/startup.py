"""How long `migr-rt run` takes to start: from the command to its start event, its first window and its exit.

    python benchmarks/startup.py                       # 5 runs per backend, warm page cache
    python benchmarks/startup.py --cold                # drop the page cache before each run (root; a robot at boot)
    python benchmarks/startup.py --repo ../old --name startup_before   # the same, for another checkout's code
    python benchmarks/startup.py --python /opt/lean/bin/python --backends onnxruntime --name startup_lean
                                                       # runs under an interpreter without torch and transformers

A robot's service restarts, a desktop app launches the CLI per session: until the start event, nothing is analysed.
Each run is the real CLI in a fresh process (`migr-rt run --source demo --json --max-windows 1`, its ``main`` called
from ``python -c`` so that ``--repo`` decides which code runs), once on the bundled torch checkpoint and once on an
ONNX fp32 artifact exported from it (onnxruntime), and the times are read from its JSON-lines events as they arrive on
the pipe. One more run per backend under ``python -X importtime`` says how
much of the start is importing torch and transformers. ``--python`` runs the commands under another interpreter, such
as a virtual environment holding only what a run on an artifact needs (the export still runs under this one, which
has torch). Writes benchmarks/results/<name>.json and .md.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info  # noqa: E402

from migr_rt.atomic import write_text_atomic  # noqa: E402
from migr_rt.perf.system import git_commit  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
#: Top-level packages whose import time is reported on its own.
HEAVY = ("torch", "transformers", "onnxruntime", "cv2", "av")
#: The distribution each of them installs from.
DISTRIBUTIONS = {"torch": "torch", "transformers": "transformers", "onnxruntime": "onnxruntime",
                 "cv2": "opencv-python-headless", "av": "av"}


def cli(repo: Path, *args: str, importtime: bool = False, python: str = sys.executable) -> list[str]:
    flags = ["-X", "importtime"] if importtime else []
    return [python, *flags, "-c",
            f"import sys; sys.path.insert(0, {str(repo)!r}); from migr_rt.cli import main; main()", *args]


def drop_page_cache() -> None:
    subprocess.run(["sync"], check=True)
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError as exc:
        raise click.ClickException(f"--cold needs to write /proc/sys/vm/drop_caches (root): {exc}") from None


def timed_run(command: list[str]) -> dict[str, float]:
    """Seconds from launching ``command`` to each first event type, and to its exit."""
    began = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen: dict[str, float] = {}
    for line in proc.stdout:
        kind = json.loads(line)["type"]
        seen.setdefault(kind, time.perf_counter() - began)
    stderr = proc.stderr.read()
    if proc.wait() != 0:
        raise click.ClickException(f"{' '.join(command[3:])} exited {proc.returncode}: {stderr.strip()[-800:]}")
    seen["exit"] = time.perf_counter() - began
    missing = {"start", "window", "rationale"} - set(seen)
    if missing:
        raise click.ClickException(f"the run emitted no {', '.join(sorted(missing))} event")
    return seen


def import_seconds(command: list[str]) -> dict[str, float]:
    """Import seconds in all (``all``) and of each :data:`HEAVY` package with what it imports, from ``-X importtime``
    (0: not imported).

    A package's time is the sum of the cumulative times of its outermost modules, those not imported (directly or
    through other packages) by another module of the same package. That is the package's own line when the log has one; when the package is first
    entered through a submodule (``import torch._utils`` inside another package's lazy import), the log has no
    line for the package itself, and reading that line alone would say 0.
    """
    proc = subprocess.run(command, capture_output=True, text=True, check=True)
    out = {name: 0.0 for name in ("all", *HEAVY)}
    entries = []  # (depth, module, cumulative seconds), in log order: a module's imports come before it
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or line.count("|") != 2:
            continue
        own, cumulative, module = line.removeprefix("import time:").split("|")
        if not own.strip().isdigit():  # the header line
            continue
        out["all"] += int(own) / 1e6
        entries.append((len(module) - len(module.lstrip()), module.strip(), int(cumulative) / 1e6))
    parents: list[tuple[int, str]] = []  # walking backwards, the enclosing modules of the current line
    for depth, module, seconds in reversed(entries):
        while parents and parents[-1][0] >= depth:
            parents.pop()
        package = module.split(".")[0]
        if package in HEAVY and not any(name.split(".")[0] == package for _, name in parents):
            out[package] += seconds
        parents.append((depth, module))
    return out


@click.command()
@click.option("--runs", default=5, show_default=True, help="Runs per backend (after one unmeasured warm-up run).")
@click.option("--repo", type=click.Path(file_okay=False, exists=True, path_type=Path), default=HERE.parent,
              show_default=True, help="Checkout whose migr_rt is measured (for a before/after comparison).")
@click.option("--cold", is_flag=True, help="Drop the page cache before each run (needs root).")
@click.option("--name", default="startup", show_default=True, help="Results file stem under benchmarks/results.")
@click.option("--python", "python", type=click.Path(dir_okay=False, exists=True), default=sys.executable,
              show_default=True, help="Interpreter the measured runs use (its packages decide what can be imported).")
@click.option("--backends", default="torch,onnxruntime", show_default=True,
              help="Comma-separated: torch (the bundled checkpoint), onnxruntime (an ONNX fp32 artifact).")
def main(runs: int, repo: Path, cold: bool, name: str, python: str, backends: str) -> None:
    repo = repo.resolve()
    packages = installed(python)
    wanted = [b.strip() for b in backends.split(",") if b.strip()]
    if not wanted or set(wanted) - {"torch", "onnxruntime"}:
        raise click.BadParameter(f"{backends!r}: choose from torch, onnxruntime", param_hint="--backends")
    env_note = "cold page cache (dropped before each run)" if cold else "warm page cache (one unmeasured run first)"
    rows = {}
    with tempfile.TemporaryDirectory(prefix="migr-startup-") as tmp:
        artifact = Path(tmp) / "onnx"
        click.echo(f"exporting the bundled model to ONNX fp32 with {repo}'s code ...", err=True)
        subprocess.run(cli(repo, "export", "--out", str(artifact)), check=True, capture_output=True)
        setups = {"torch (bundled checkpoint)": ["--backend", "torch"],
                  "onnxruntime (ONNX fp32 artifact)": ["--backend", "onnxruntime", "--checkpoint", str(artifact)]}
        setups = {label: extra for label, extra in setups.items() if label.split()[0] in wanted}
        for label, extra in setups.items():
            args = ["run", "--source", "demo", "--json", "--max-windows", "1", *extra]
            if not cold:
                timed_run(cli(repo, *args, python=python))
            samples = []
            for i in range(runs):
                if cold:
                    drop_page_cache()
                samples.append(timed_run(cli(repo, *args, python=python)))
                click.echo(f"{label} run {i + 1}/{runs}: start event {samples[-1]['start']:.2f} s", err=True)
            if cold:
                drop_page_cache()
            imports = import_seconds(cli(repo, *args, importtime=True, python=python))
            rows[label] = {
                **{f"to_{kind}_s": statistics.median(s[kind] for s in samples)
                   for kind in ("start", "window", "rationale", "exit")},
                "runs": samples,
                "imports_s": imports,
            }
    result = {"benchmark": "startup", "machine": machine_info(), "commit": git_commit(repo), "python": python,
              "python_packages": packages, "cache": env_note, "runs_per_backend": runs, "backends": rows}
    RESULTS.mkdir(exist_ok=True)
    write_text_atomic(RESULTS / f"{name}.json", json.dumps(result, indent=2) + "\n")
    write_text_atomic(RESULTS / f"{name}.md", render(result))
    click.echo(render(result))


def installed(python: str) -> dict[str, str | None]:
    """Version of each :data:`HEAVY` package under ``python`` (None: not installed there)."""
    probe = ("import importlib.metadata as m, json\n"
             "def v(n):\n    try:\n        return m.version(n)\n    except m.PackageNotFoundError:\n        return None\n"
             f"print(json.dumps({{n: v(n) for n in {list(DISTRIBUTIONS.values())!r}}}))")
    out = json.loads(subprocess.run([python, "-c", probe], capture_output=True, text=True, check=True).stdout)
    return {name: out[dist] for name, dist in DISTRIBUTIONS.items()}


def render(result: dict) -> str:
    m = result["machine"]
    lines = [
        "# `migr-rt run` start-up",
        "",
        f"`python benchmarks/startup.py{' --cold' if result['cache'].startswith('cold') else ''}` at "
        f"{result['commit']}; {m.get('cpu', '?')}, {m.get('cores', '?')} cores; {result['cache']}; median of "
        f"{result['runs_per_backend']} runs of `migr-rt run --source demo --json --max-windows 1` in a fresh process. "
        "Seconds from launching the command.",
        "",
        f"Runs under `{result['python']}`, where "
        + ", ".join(f"{name} {version}" if version else f"**{name} is not installed**"
                    for name, version in result["python_packages"].items()) + ".",
        "",
        "| backend | -> start event | -> first window | -> its rationale | -> exit | all imports | of which torch "
        "| transformers (package) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, row in result["backends"].items():
        imp = row["imports_s"]
        lines.append(f"| {label} | {row['to_start_s']:.2f} | {row['to_window_s']:.2f} | {row['to_rationale_s']:.2f} "
                     f"| {row['to_exit_s']:.2f} | {imp['all']:.2f} | {imp['torch']:.2f} | {imp['transformers']:.2f} |")
    lines += ["", "Import seconds are from one extra run under `python -X importtime` (which adds its own overhead); "
              "0 means the run never imported the package. transformers' modeling stack, which loads on first use, is "
              "counted in all imports, not in its package's column.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
