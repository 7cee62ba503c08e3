"""A Ctrl-C that library code swallows, as torch.onnx.export sometimes does; run as a script by test_interrupt.py.

    python tests/swallowed_ctrl_c.py bare|guard|guard_end|publish|export [FOLDER]
"""

from __future__ import annotations

import signal
import sys
import weakref
from pathlib import Path

LAUNCH = ("import runpy, signal, sys; signal.signal(signal.SIGINT, signal.{handler}); target = sys.argv.pop(1); "
          "runpy.run_path(target, run_name='__main__') if target.endswith('.py') else "
          "runpy.run_module(target, run_name='__main__', alter_sys=True)")


def python_where_sigint(handler: str, target: str, *args: str) -> list[str]:
    """argv running ``target`` (a module, or a .py script) in a Python whose SIGINT handler is ``handler``.

    ``"default_int_handler"`` is Python under a terminal, where Ctrl-C interrupts; a test runner started in
    the background ignores SIGINT, and its children inherit that unless told otherwise.
    """
    return [sys.executable, "-c", LAUNCH.format(handler=handler), target, *args]


def swallow_ctrl_c() -> None:
    """Ctrl-C while a weakref finalizer runs: Python prints "Exception ignored" and goes on."""

    class Thing:
        pass

    thing = Thing()
    ref = weakref.ref(thing, lambda _: (signal.raise_signal(signal.SIGINT), [0 for _ in range(1000)]))
    del thing
    assert ref() is None


def main(mode: str, folder: Path | None) -> None:
    from migr_rt.interrupt import interrupt_guard, raise_if_interrupted

    if mode == "bare":
        swallow_ctrl_c()
        print("survived", flush=True)
    elif mode == "guard":
        try:
            with interrupt_guard():
                swallow_ctrl_c()
                print("survived", flush=True)
                try:
                    raise_if_interrupted()
                except KeyboardInterrupt:
                    print("raised again", flush=True)
        except KeyboardInterrupt:  # caught inside, still the command is interrupted
            print("raised at the end", flush=True)
    elif mode == "guard_end":
        try:
            with interrupt_guard():
                swallow_ctrl_c()
                print("survived", flush=True)
        except KeyboardInterrupt:
            print("raised at the end", flush=True)
        raise_if_interrupted()  # the guard forgets the interrupt once it is over
        print("cleared", flush=True)
    elif mode == "publish":
        from migr_rt.atomic import staged_folder, write_text_atomic

        def stage_folder() -> None:
            with staged_folder(folder / "artifact", marker="manifest.json", what="artifact") as staging:
                (staging / "manifest.json").write_text("{}")

        for name, write in (("folder", stage_folder),
                            ("file", lambda: write_text_atomic(folder / "result.json", "{}"))):
            try:
                with interrupt_guard():
                    swallow_ctrl_c()
                    write()
            except KeyboardInterrupt:
                print(f"{name} refused", flush=True)
    elif mode == "export":
        # `migr-rt export` with tracing that swallows the Ctrl-C after the last progress step
        from migr_rt.atomic import staged_folder
        from migr_rt.cli import main as cli
        from migr_rt.export import onnx_export

        def tracing_that_swallows(checkpoint, out, precision, check_parity=True, on_progress=None, fused_step=True):
            with staged_folder(out, marker="manifest.json", what="artifact") as staging:
                (staging / "manifest.json").write_text("{}")
                swallow_ctrl_c()
            raise AssertionError(f"published {out}")

        onnx_export.export_onnx = tracing_that_swallows
        cli(["export", "--out", str(folder / "art")])
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    print("handler restored:", signal.getsignal(signal.SIGINT) is signal.default_int_handler, flush=True)


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]) if len(sys.argv) > 2 else None)
