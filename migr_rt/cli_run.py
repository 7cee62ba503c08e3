"""``migr-rt run``: the command-line edge of the streaming runtime (prints; the runtime itself only yields).

Ctrl-C sets a stop flag: the runtime ends the current step, the last events
are flushed, a ``--save`` video is finalised, and the exit status is 0. SIGTERM
(a service stopped) does the same. A second Ctrl-C aborts at once. Ctrl-C or
SIGTERM while the model loads ends the command with one line on stderr, also
with status 0.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from migr_rt.interrupt import deferred_interrupts, interrupt_guard

if TYPE_CHECKING:
    from migr_rt.runtime.sources import SourceSpec

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_BAD_INPUT, EXIT_SOURCE_LOST = 0, 1, 3
#: Set when Ctrl-C or SIGTERM ended a run while its model loaded: the console script then leaves at once
#: (see :func:`migr_rt.cli.entry`).
interrupted_loading = threading.Event()


@dataclass(frozen=True)
class RunOptions:
    camera: int | str | None = None  #: an index N (/dev/videoN) or a device path
    camera_size: tuple[int, int] | None = None  #: (width, height) to ask the camera for; None: chosen
    mic: str | None = None
    source: str | None = None
    loop: bool = False
    realtime: bool | None = None
    checkpoint: Path | None = None
    backend: str = "auto"
    window: float | None = None
    hop: float = 0.5
    fps: float = 25.0
    rationale: bool = True
    max_rationale_tokens: int = 96
    rationale_answer: str = "label"
    as_json: bool = False
    save: Path | None = None
    view: bool = False
    reconnect_timeout: float = 10.0
    max_windows: int | None = None
    threads: int | None = None
    face_tracking: bool = True


def _unwritable(path: Path) -> str | None:
    """Why a file cannot be written at ``path`` (None: it can).

    Asked before capture starts: the saver writes at the end, and a whole session's video would otherwise be
    lost to a bad folder. A missing folder is created (with its parents) as the saver would create it; the
    caller says so.
    """
    from migr_rt.atomic import check_can_create

    try:
        check_can_create(path)
        path.parent.mkdir(parents=True, exist_ok=True)
    except NotADirectoryError as exc:
        return str(exc)
    except OSError as exc:
        return f"cannot write there: {exc}"
    return None


def _runs_on_torch(model: Path | None, backend: str = "auto") -> bool:
    """Whether the run loads torch, where torch is installed: a checkpoint folder (the torch backend) or a
    TensorRT artifact (its backend runs the engines on torch's CUDA tensors).

    An ONNX artifact never needs torch. A folder that cannot be read counts as not: the runtime reports why
    when it opens it, as it reports a checkpoint on a machine without torch.
    """
    if importlib.util.find_spec("torch") is None:
        return False  # the backend then says that torch is missing and what runs without it
    if model is None:  # the bundled model: its ONNX export or its checkpoint (bundled.default_model)
        from migr_rt.bundled import runs_export

        return not runs_export(backend)
    from migr_rt.artifact import ArtifactError
    from migr_rt.backends import folder_kind

    try:
        return folder_kind(model) in ("checkpoint", "tensorrt")
    except (ArtifactError, OSError):
        return False


def _error(message: str) -> int:
    print(f"migr-rt run: {message}", file=sys.stderr, flush=True)
    return EXIT_BAD_INPUT


def _sound_hint(spec: SourceSpec) -> str | None:
    """A camera read without --mic gives a visual-only analysis: say so, naming the microphone to add."""
    from migr_rt.runtime.devices import mic_suggestion, microphones, query_node

    cameras = [i for i in spec.inputs if i.format == "v4l2"]
    if len(cameras) != 1 or any(not i.video for i in spec.inputs):  # no camera, or a microphone is read with it
        return None
    try:
        node = query_node(Path(cameras[0].target))
    except OSError:
        return None
    suggestion = mic_suggestion(node, microphones())
    return f"{cameras[0].name} is analysed without sound (no --mic); {suggestion}" if suggestion else None


def run_stream(o: RunOptions) -> int:
    from migr_rt.runtime.sources import SourceError, check_inputs, parse_source

    try:  # devices, files, graphs and host names are checked before the model loads: a bad one fails in milliseconds
        spec = parse_source(o.source, camera=o.camera, mic=o.mic, realtime=o.realtime, loop=o.loop, fps=o.fps,
                            camera_size=o.camera_size)
        check_inputs(spec)
    except SourceError as exc:
        return _error(str(exc))
    if hint := _sound_hint(spec):
        print(f"migr-rt run: {hint}", file=sys.stderr, flush=True)
    if o.save is not None and o.save.suffix.lower() != ".mp4":
        return _error(f"--save {o.save}: the annotated video is written as .mp4")
    if o.save is not None:
        new_folder = not o.save.parent.exists()
        if problem := _unwritable(o.save):
            return _error(f"--save {o.save}: {problem}")
        if new_folder:  # like `mkdir -p`, but said: a typo in the folder name would otherwise go unnoticed
            print(f"migr-rt run: --save {o.save}: created the folder {o.save.parent}", file=sys.stderr, flush=True)

    # Loading (torch, the backend, the weights) takes seconds before the stream's Ctrl-C handler is in place;
    # Ctrl-C there ends the run as cleanly as Ctrl-C during it (exit 0), not with click's "Aborted!" (exit 1).
    # The guard also catches a Ctrl-C that a native loader swallowed, at the block's end. SIGTERM (a service
    # stopped) ends it the same way, rather than killing the process with no word.
    main = threading.current_thread() is threading.main_thread()
    term = signal.signal(signal.SIGTERM, signal.default_int_handler) if main else None
    try:
        with interrupt_guard():
            logger.info("loading the model (%s, backend %s)", o.checkpoint or "bundled", o.backend)
            if _runs_on_torch(o.checkpoint, o.backend):
                with deferred_interrupts():  # Ctrl-C inside torch's own initialisation aborts the process
                    importlib.import_module("torch")
            from migr_rt.artifact import ArtifactError
            from migr_rt.backends.base import BackendUnavailable
            from migr_rt.model import CheckpointError
            from migr_rt.runtime.engine import Runtime, RuntimeConfig

            try:
                runtime = Runtime(o.checkpoint, RuntimeConfig(window=o.window, hop=o.hop, fps=o.fps,
                                                              rationale=o.rationale,
                                                              max_rationale_tokens=o.max_rationale_tokens,
                                                              rationale_answer=o.rationale_answer,
                                                              reconnect_timeout=o.reconnect_timeout,
                                                              face_tracking=o.face_tracking),
                                  backend=o.backend, threads=o.threads)
            except (ArtifactError, BackendUnavailable, CheckpointError, ValueError, FileNotFoundError) as exc:
                return _error(str(exc))
    except KeyboardInterrupt:
        print("migr-rt run: interrupted while loading the model", file=sys.stderr, flush=True)
        interrupted_loading.set()
        return EXIT_OK
    finally:
        if term is not None:
            signal.signal(signal.SIGTERM, term)

    from migr_rt.runtime.events import to_json

    stop = threading.Event()

    def interrupt(signum, frame):  # first Ctrl-C or SIGTERM: finish cleanly; a second Ctrl-C aborts
        stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    # SIGTERM is how `systemctl stop`, `docker stop` and a supervising process end a service: it finishes as Ctrl-C
    # does (the last events flushed, --save finalised), where Python's default would end it on the spot
    handled = (signal.SIGINT, signal.SIGTERM) if main else ()
    previous = {signum: signal.signal(signum, interrupt) for signum in handled}
    view = saver = window = None
    reason = "end_of_stream"
    try:
        if not o.as_json:
            from migr_rt.runtime.terminal import TerminalView

            view = TerminalView(sys.stdout, labels=list(runtime.model_config.labels),
                                modalities=list(runtime.model_config.modalities))
        if o.save is not None:
            from migr_rt.runtime.annotate import VideoSaver

            saver = VideoSaver(o.save, o.fps, runtime.model_config.sample_rate)
        if o.view:
            window = _open_view()
        with runtime:
            events = runtime.stream(spec, stop=stop, max_windows=o.max_windows,
                                    frame_tap=_taps(saver, window, "frame"), audio_tap=_taps(saver, None, "audio"))
            for event in events:
                if o.as_json:
                    sys.stdout.write(to_json(event) + "\n")
                    sys.stdout.flush()
                else:
                    view.update(event)
                if saver is not None:
                    saver.update(event)
                if window is not None:
                    window.update(event)
                if event["type"] == "end":
                    reason = event["reason"]
    except SourceError as exc:
        return _error(str(exc))
    except BrokenPipeError:  # the reader of the events went away (`| head -1`): stop quietly, as pipes expect
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error flushing at exit
        return EXIT_OK
    except OSError as exc:
        if exc.filename is not None:  # a file's error (e.g. the saver's), not the events output's
            raise
        return _error(f"cannot write the events to standard output ({exc.strerror or exc})")
    finally:
        for closer in (saver, view, window):
            if closer is not None:
                closer.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if saver is not None:
        logger.info("wrote %s", o.save)
    return EXIT_SOURCE_LOST if reason == "source_lost" else EXIT_OK


def _taps(saver, window, kind: str):
    targets = [getattr(t, f"{kind}_tap") for t in (saver, window) if t is not None]
    if not targets:
        return None

    def tap(*args):
        for target in targets:
            target(*args)

    return tap


def _open_view():
    """The ``--view`` window, or None (with a warning) where no display or GUI OpenCV exists."""
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        print("migr-rt run: --view needs a display (no DISPLAY or WAYLAND_DISPLAY); continuing without it",
              file=sys.stderr)
        return None
    from migr_rt.runtime.annotate import LiveWindow

    try:
        return LiveWindow("migr-rt")
    except RuntimeError as exc:
        print(f"migr-rt run: --view unavailable ({exc}); continuing without it", file=sys.stderr)
        return None
