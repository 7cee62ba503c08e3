"""Ctrl-C during long CLI work: a KeyboardInterrupt that library code swallows still stops the command."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

# A SIGINT that arrives while a weakref finalizer runs raises inside it, where Python only prints
# "Exception ignored" (torch.onnx.export does this); the probe provokes exactly that.
PROBE = textwrap.dedent("""
    import gc, os, signal, weakref
    from migr_rt.interrupt import interrupt_guard

    class Thing:
        pass

    with interrupt_guard() as check:
        thing = Thing()
        ref = weakref.ref(thing, lambda _: (os.kill(os.getpid(), signal.SIGINT), [0 for _ in range(100)]))
        del thing
        gc.collect()
        print("survived the finalizer", flush=True)
        try:
            check()
        except KeyboardInterrupt:
            print("check raised", flush=True)
        else:
            print("check passed", flush=True)
    print("handler after:", signal.getsignal(signal.SIGINT) is signal.default_int_handler, flush=True)
""")


def _probe(sigint: signal.Handlers) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, sigint))


def test_a_swallowed_ctrl_c_is_raised_again_by_check_and_not_printed():
    bare = subprocess.run([sys.executable, "-c", PROBE.replace("interrupt_guard() as check", "_nothing() as check")
                           .replace("from migr_rt.interrupt import interrupt_guard",
                                    "from contextlib import contextmanager\n"
                                    "@contextmanager\ndef _nothing():\n    yield lambda: None")],
                          capture_output=True, text=True, timeout=60,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    # without the guard the interrupt is lost: the probe really provokes the swallowing
    assert "Exception ignored" in bare.stderr and "check passed" in bare.stdout, bare
    proc = _probe(signal.SIG_DFL)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["survived the finalizer", "check raised", "handler after: True"]
    assert proc.stderr == ""


def test_an_ignored_sigint_stays_ignored():
    """A background job (SIGINT ignored) is not made interruptible by the guard."""
    proc = _probe(signal.SIG_IGN)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["survived the finalizer", "check passed", "handler after: False"]
