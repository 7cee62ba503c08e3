"""Ctrl-C that always stops long CLI work (export, train, eval, bench).

Python turns SIGINT into ``KeyboardInterrupt`` wherever the main thread is.
Deep inside ``torch.onnx.export`` that is sometimes a weakref finalizer, where
Python prints "Exception ignored" and carries on, or C++ that clears the error
without a word: an export interrupted there ran to completion and published its
artifact (CI saw it). So the guard's handler also remembers the interrupt, and
``raise_if_interrupted`` raises it again where it cannot be lost: in the CLI's
progress callbacks, at the guard's end, and in :mod:`migr_rt.atomic` before
anything is published, so an interrupted command never leaves a result behind.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_pending = threading.Event()


def raise_if_interrupted() -> None:
    """Raise ``KeyboardInterrupt`` if Ctrl-C was pressed inside an :func:`interrupt_guard` (even if swallowed)."""
    if _pending.is_set():
        raise KeyboardInterrupt


@contextmanager
def interrupt_guard() -> Iterator[None]:
    """Within the block, Ctrl-C raises at once as usual, and :func:`raise_if_interrupted` raises it again.

    Inert where SIGINT is ignored (a background job keeps ignoring it) or has
    another handler (``migr-rt run`` finishes its stream on the first Ctrl-C;
    an enclosing guard already remembers), and off the main thread, where no
    signal handler can be installed.
    """
    if threading.current_thread() is not threading.main_thread() \
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return

    def on_sigint(signum: int, frame: object) -> None:
        _pending.set()
        raise KeyboardInterrupt

    previous_hook = sys.unraisablehook

    def on_unraisable(info: sys.UnraisableHookArgs) -> None:
        if info.exc_type is not None and issubclass(info.exc_type, KeyboardInterrupt):
            return  # remembered in _pending; raised again where it cannot be lost
        previous_hook(info)

    previous_handler = signal.signal(signal.SIGINT, on_sigint)
    sys.unraisablehook = on_unraisable
    try:
        yield
        raise_if_interrupted()  # lost after the last check: the command must not report success
    finally:
        _pending.clear()
        sys.unraisablehook = previous_hook
        signal.signal(signal.SIGINT, previous_handler)


@contextmanager
def deferred_interrupts(signums: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[None]:
    """Ctrl-C (and the other ``signums``) inside the block are held to its end, then raise ``KeyboardInterrupt``.

    For imports of native libraries whose initialisation runs Python code from C++: ``import torch`` aborted the
    whole process ("terminate called after throwing an instance of 'pybind11::error_already_set'", status 134)
    when Ctrl-C landed in it. A signal whose handler is Python's (one that would raise) is held; an ignored one
    stays ignored. Off the main thread it does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    previous = {signum: signal.getsignal(signum) for signum in signums}
    try:  # a signal between two installs raises there: the handlers installed before it are put back too
        for signum, handler in previous.items():
            if callable(handler):
                signal.signal(signum, lambda got, frame: held.append(got))
        yield
    finally:
        for signum, handler in previous.items():
            if callable(handler):
                signal.signal(signum, handler)
    if held:  # raised here, in Python, where it cannot be lost: nothing for raise_if_interrupted to remember
        raise KeyboardInterrupt
