"""Ctrl-C that always stops long CLI work (export, train, eval, bench).

Python turns SIGINT into ``KeyboardInterrupt`` wherever the main thread is.
Deep inside ``torch.onnx.export`` that is sometimes a weakref finalizer, where
Python prints "Exception ignored" and carries on, or C++ that clears the error
without a word: an export interrupted there ran to completion and published its
artifact (CI saw it). So the handler here also remembers the interrupt, and
``check`` raises it again: the CLI calls it at every progress step, and the
exporters report a step just before they publish.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def interrupt_guard() -> Iterator[Callable[[], None]]:
    """Within the block, Ctrl-C raises at once as usual and once more at the next ``check()`` if it was lost.

    Nothing changes where SIGINT is ignored (a background job keeps ignoring
    it) or another handler is installed, or off the main thread (signal
    handlers live there).
    """
    pending = threading.Event()

    def check() -> None:
        if pending.is_set():
            raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread() \
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield check
        return

    def on_sigint(signum: int, frame: object) -> None:
        pending.set()
        raise KeyboardInterrupt

    previous_hook = sys.unraisablehook

    def on_unraisable(info) -> None:  # noqa: ANN001 (sys.UnraisableHookArgs)
        if info.exc_type is not None and issubclass(info.exc_type, KeyboardInterrupt):
            return  # remembered in `pending`; check() raises it where it cannot be lost
        previous_hook(info)

    signal.signal(signal.SIGINT, on_sigint)
    sys.unraisablehook = on_unraisable
    try:
        yield check
    finally:
        sys.unraisablehook = previous_hook
        signal.signal(signal.SIGINT, signal.default_int_handler)
