"""Ctrl-C during long CLI work: a KeyboardInterrupt that library code swallows still stops the command,
and nothing is published after it."""

from __future__ import annotations

import subprocess
from pathlib import Path

from swallowed_ctrl_c import python_where_sigint

PROBE = str(Path(__file__).with_name("swallowed_ctrl_c.py"))


def _probe(mode: str, *args: str, handler: str = "default_int_handler") -> subprocess.CompletedProcess[str]:
    return subprocess.run(python_where_sigint(handler, PROBE, mode, *args), capture_output=True, text=True,
                          timeout=120)


def test_the_probe_really_loses_a_ctrl_c_without_the_guard():
    proc = _probe("bare")
    assert proc.returncode == 0 and proc.stdout.startswith("survived"), proc
    assert "Exception ignored" in proc.stderr and "KeyboardInterrupt" in proc.stderr


def test_a_swallowed_ctrl_c_is_raised_again_and_not_printed():
    proc = _probe("guard")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["survived", "raised again", "raised at the end", "handler restored: True"]
    assert proc.stderr == ""


def test_a_swallowed_ctrl_c_is_raised_at_the_guards_end_and_then_forgotten():
    proc = _probe("guard_end")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["survived", "raised at the end", "cleared", "handler restored: True"]


def test_nothing_is_published_after_a_swallowed_ctrl_c(tmp_path):
    proc = _probe("publish", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["folder refused", "file refused", "handler restored: True"]
    assert list(tmp_path.iterdir()) == [], "no artifact, result or temporary left"


def test_export_stops_on_a_ctrl_c_its_tracing_swallowed(tmp_path):
    proc = _probe("export", str(tmp_path))
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output
    assert "Aborted" in output and "Traceback" not in output and "Exception ignored" not in output, output
    assert list(tmp_path.iterdir()) == [], "no artifact and no staging folder"


def test_an_ignored_sigint_stays_ignored():
    """A background job (SIGINT ignored) is not made interruptible by the guard."""
    proc = _probe("guard", handler="SIG_IGN")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["survived", "handler restored: False"]
