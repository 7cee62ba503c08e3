"""What installing migr-rt takes: the default install against the runtime alone, which runs ONNX artifacts.

    python benchmarks/install_size.py                  # two fresh virtual environments under a temporary folder
    python benchmarks/install_size.py --torch-spec "torch==2.13.0+cpu --extra-index-url https://download.pytorch.org/whl/cpu"

A robot that only runs ONNX artifacts (the bundled model's export, or its own) needs neither torch nor transformers
(docs/deploy.md, "Without torch").
This builds both installs from the package index in fresh virtual environments, with this checkout as the package:

* ``default + onnx``: ``pip install <torch-spec>`` then ``pip install <repo>[onnx]`` (what exports and runs either);
* ``runtime only``: ``pip install --no-deps <repo>`` then :data:`RUNTIME_PACKAGES` (what docs/deploy.md gives).

It measures each one's site-packages, then runs ``migr-rt run --source demo`` under the runtime-only install, as
installed: the bundled model, which there runs from its ONNX export, must give its windows and rationale. Writes
benchmarks/results/<name>.json and .md.
"""

from __future__ import annotations

import json
import os
import shlex
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
REPO = HERE.parent
RESULTS = HERE / "results"
#: What a run on an exported artifact imports, beyond migr-rt itself (pyproject's ranges; docs/deploy.md).
RUNTIME_PACKAGES = ("numpy>=1.26,<3", "av>=12,<19", "opencv-python-headless>=4.8,<5", "tokenizers>=0.21,<1",
                    "click>=8.1,<9", "onnxruntime>=1.23.1")
#: Largest installed packages listed per install.
TOP = 8


def site_packages(venv: Path) -> Path:
    found = sorted(venv.glob("lib/python3*/site-packages"))
    if not found:
        raise click.ClickException(f"{venv}: no lib/python3*/site-packages")
    return found[0]


def tree_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def pip(venv: Path, *args: str) -> None:
    command = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *args]
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        raise click.ClickException(f"{shlex.join(command)} failed:\n{proc.stderr.strip()[-1500:]}")


def measure(venv: Path) -> dict:
    """Bytes of the install's site-packages, its largest entries, and the versions of what matters here."""
    site = site_packages(venv)
    entries = {p.name: tree_bytes(p) if p.is_dir() else p.stat().st_size for p in site.iterdir()}
    probe = ("import importlib.metadata as m, json\n"
             "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))")
    versions = json.loads(subprocess.run([str(venv / "bin" / "python"), "-c", probe], capture_output=True,
                                         text=True, check=True).stdout)
    return {"site_packages_bytes": sum(entries.values()), "distributions": len(versions),
            "largest": dict(sorted(entries.items(), key=lambda kv: -kv[1])[:TOP]),
            "has_torch": "torch" in versions, "has_transformers": "transformers" in versions,
            "versions": dict(sorted(versions.items()))}


@click.command()
@click.option("--torch-spec", default="torch==2.13.0", show_default=True,
              help="What the default install takes for torch (as the Makefile's TORCH_SPEC).")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where to build the two environments (default: a temporary folder, removed after).")
@click.option("--name", default="install_size", show_default=True, help="Results file stem under benchmarks/results.")
def main(torch_spec: str, workdir: Path | None, name: str) -> None:
    with tempfile.TemporaryDirectory(prefix="migr-install-") as tmp:
        root = workdir or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        installs = {"default + onnx": root / "default", "runtime only": root / "runtime"}
        steps = {"default + onnx": [shlex.split(torch_spec), [f"{REPO}[onnx]"]],
                 "runtime only": [["--no-deps", str(REPO)], list(RUNTIME_PACKAGES)]}
        shown = {label: [shlex.join(a).replace(str(REPO), "<checkout>") for a in args] for label, args in steps.items()}
        rows = {}
        for label, venv in installs.items():
            click.echo(f"{label}: creating {venv} and installing (minutes) ...", err=True)
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
            started = time.perf_counter()
            for args in steps[label]:
                pip(venv, *args)
            rows[label] = {"pip_install_args": shown[label],
                           "install_s": time.perf_counter() - started, **measure(venv)}
        runtime = installs["runtime only"]
        if rows["runtime only"]["has_torch"] or rows["runtime only"]["has_transformers"]:
            raise click.ClickException("the runtime-only install pulled torch or transformers in: "
                                       f"{', '.join(RUNTIME_PACKAGES)} should not")
        run = [str(runtime / "bin" / "migr-rt"), "run", "--source", "demo", "--json", "--max-windows", "2"]
        started = time.perf_counter()
        proc = subprocess.run(run, capture_output=True, text=True, cwd=root, env={**os.environ, "PYTHONPATH": ""})
        if proc.returncode != 0:
            raise click.ClickException(f"the run under the runtime-only install failed:\n{proc.stderr[-1500:]}")
        events = [json.loads(line) for line in proc.stdout.splitlines()]
        kinds = [e["type"] for e in events]
        if kinds.count("window") != 2 or "rationale" not in kinds or "onnxruntime" not in events[0].get("backend", ""):
            raise click.ClickException(f"the run under the runtime-only install gave {kinds} on {events[0].get('backend')}")
        window = next(e for e in events if e["type"] == "window")
        check = {"command": shlex.join(run[1:]), "seconds": time.perf_counter() - started,
                 "events": {kind: kinds.count(kind) for kind in dict.fromkeys(kinds)},
                 "backend": events[0].get("backend"), "first_label": window["label"],
                 "first_dominant": window["dominant"]}

    result = {"benchmark": "install_size", "machine": machine_info(), "commit": git_commit(REPO),
              "python": f"{sys.version_info.major}.{sys.version_info.minor}", "installs": rows,
              "runtime_only_run": check}
    RESULTS.mkdir(exist_ok=True)
    write_text_atomic(RESULTS / f"{name}.json", json.dumps(result, indent=2) + "\n")
    write_text_atomic(RESULTS / f"{name}.md", render(result))
    click.echo(render(result))


def render(result: dict) -> str:
    m, mb = result["machine"], 2**20
    lines = [
        "# What installing migr-rt takes",
        "",
        f"`python benchmarks/install_size.py` at {result['commit']}; {m.get('cpu', '?')}, Python {result['python']}, "
        "each install in a fresh virtual environment from the package index, this checkout as the package.",
        "",
        "| install | pip install ... | site-packages | distributions | torch / transformers | install time |",
        "|---|---|---|---|---|---|",
    ]
    for label, row in result["installs"].items():
        args = "; ".join(f"`{a}`" for a in row["pip_install_args"])
        lines.append(f"| {label} | {args} | {row['site_packages_bytes'] / mb:.0f} MiB | {row['distributions']} "
                     f"| {'yes' if row['has_torch'] else 'no'} / {'yes' if row['has_transformers'] else 'no'} "
                     f"| {row['install_s']:.0f} s |")
    lines += ["", "Largest entries of site-packages (MiB):", ""]
    for label, row in result["installs"].items():
        lines.append(f"- {label}: " + ", ".join(f"{k} {v / mb:.0f}" for k, v in row["largest"].items()))
    run = result["runtime_only_run"]
    events = ", ".join(f"{n} {kind}" for kind, n in run["events"].items())
    lines += ["", f"Under the runtime-only install, `migr-rt {run['command']}` (the bundled model, run from its ONNX "
              f"export shipped in the package) gave {events} events in {run['seconds']:.2f} s on "
              f"{run['backend']}; first window: {run['first_label']}, dominant {run['first_dominant']}.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
