"""Where the runtime's frames and audio come from: cameras, microphones, files, URLs, lavfi, the demo clip.

A source spec is a string: ``camera:N`` (``/dev/videoN`` through v4l2),
``demo`` (the bundled synthetic clip), ``lavfi:GRAPH`` (an ffmpeg filter
graph, e.g. ``lavfi:testsrc=size=320x240:rate=25[out0];sine=f=220:r=16000[out1]``),
a URL (``rtsp://``, ``http://`` ...) or a file path. A microphone spec is
``alsa:DEVICE`` or ``pulse:DEVICE`` (or ``none``). Opening fails fast with
:class:`SourceError`, which names the device or file and suggests
``--source demo`` where a device is missing.

Each opened input is read by its own capture thread (see
:mod:`migr_rt.runtime.capture`) through :func:`migr_rt.media.decode.iter_decoded`,
so a file streamed here yields exactly the frames and samples
:func:`migr_rt.media.decode_media` gives for it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import av

from migr_rt.runtime.alsa import AlsaConfigError, configure_alsa

DEMO = "demo"


class SourceError(RuntimeError):
    """A source that cannot be opened (or was lost); the message names it and what to try."""


@dataclass(frozen=True)
class InputSpec:
    """One container to open: what ffmpeg calls the input, its format, and whether it is a live device."""

    name: str  #: for messages and events
    target: str  #: what av.open receives
    format: str | None = None
    options: tuple[tuple[str, str], ...] = ()
    live: bool = False  #: a device or network stream: it paces itself and may disappear
    video: bool = True
    audio: bool = True
    hint: str = ""  #: appended to the message when it cannot be opened

    def open(self, timeout: float = 5.0) -> av.container.InputContainer:
        """Open it with PyAV, or raise :class:`SourceError` naming it."""
        try:
            return av.open(self.target, mode="r", format=self.format, options=dict(self.options), timeout=timeout)
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            raise SourceError(f"{self.name}: cannot be opened ({exc}){self.hint}") from exc


@dataclass(frozen=True)
class SourceSpec:
    """A parsed ``--source``/``--camera`` plus ``--mic``: one or two inputs."""

    description: str
    inputs: tuple[InputSpec, ...]
    #: files and the demo: replay at their own rate (True) or as fast as analysis goes, losing nothing (False)
    realtime: bool = False
    loop: bool = False

    @property
    def live(self) -> bool:
        return any(i.live for i in self.inputs)


def demo_clip() -> Path:
    """The bundled demo clip (synthetic faces and voices, several emotions in a row)."""
    path = Path(str(resources.files("migr_rt") / "assets" / "demo" / "demo.mp4"))
    if not path.is_file():
        raise SourceError(f"{path}: the bundled demo clip is missing from this installation")
    return path


def camera_input(index: int, fps: float = 25.0) -> InputSpec:
    device = Path(f"/dev/video{index}")
    if not device.exists():
        raise SourceError(
            f"camera {index}: {device} does not exist (no camera on this machine, or no access to it); "
            "try the demo clip or a file instead (--source demo / --source FILE; stream(\"demo\") in Python)"
        )
    if not os.access(device, os.R_OK):
        raise SourceError(f"camera {index}: {device} is not readable by this user (add it to the 'video' group)")
    return InputSpec(f"camera {index} ({device})", str(device), "v4l2", (("framerate", str(int(fps))),),
                     live=True, audio=False)


def mic_input(spec: str) -> InputSpec | None:
    """An ALSA or PulseAudio capture device, checked against what this PyAV's FFmpeg can open."""
    if spec in ("", "none"):
        return None
    backend, _, device = spec.partition(":")
    if backend not in ("alsa", "pulse") or not device:
        raise SourceError(f"microphone {spec!r}: expected alsa:DEVICE or pulse:DEVICE (e.g. alsa:default), or none")
    if backend not in av.formats_available:
        raise SourceError(
            f"microphone {spec}: this PyAV's FFmpeg has no {backend} input"
            + (" (PyAV's Linux wheels have alsa, not pulse); " if backend == "pulse" else "; ")
            + ("use alsa:DEVICE (`arecord -L` lists them)" if "alsa" in av.formats_available else
               "install a PyAV built against a system FFmpeg with ALSA or PulseAudio")
        )
    hint = ""
    if backend == "alsa":
        try:
            configure_alsa()
        except AlsaConfigError as exc:
            raise SourceError(f"microphone {spec}: {exc}") from exc
        hint = ("; note that this machine has no sound card (/dev/snd is missing)" if not Path("/dev/snd").exists()
                else "; `arecord -l` lists capture cards, e.g. alsa:plughw:1,0")
    return InputSpec(f"microphone {spec}", device, backend, live=True, video=False, hint=hint)


def parse_source(
    source: str | None = None, *, camera: int | None = None, mic: str | None = None, realtime: bool | None = None,
    loop: bool = False, fps: float = 25.0,
) -> SourceSpec:
    """Resolve what the user asked for into inputs, checking devices and files exist (fast, before any thread)."""
    if (source is None) == (camera is None):
        raise SourceError("give exactly one of a camera index or a source (FILE, URL, lavfi:GRAPH or demo)")
    if source is not None and source.startswith("camera:"):
        index = source.removeprefix("camera:")
        if not index.isdigit():
            raise SourceError(f"{source}: a camera source is camera:N, N the device index (camera:0 is /dev/video0)")
        source, camera = None, int(index)
    inputs: list[InputSpec] = []
    live = False
    if camera is not None:
        inputs.append(camera_input(camera, fps))
        description, live = f"camera:{camera}", True
    elif source == DEMO:
        clip = demo_clip()
        inputs.append(InputSpec(f"demo ({clip.name})", str(clip)))
        description = DEMO
    elif source.startswith("lavfi:"):
        graph = source.removeprefix("lavfi:")
        inputs.append(InputSpec(f"lavfi {graph}", graph, "lavfi"))
        description = source
    elif "://" in source:
        inputs.append(InputSpec(source, source, live=True))
        description, live = source, True
    else:
        if not source.strip():
            raise SourceError("the source is empty (sources are a file, a URL, lavfi:GRAPH, demo or --camera N)")
        path = Path(source)
        if path.is_dir():
            raise SourceError(f"{path}: is a folder; a file source is one media file")
        if not path.is_file():
            raise SourceError(f"{path}: no such file (sources are a file, a URL, lavfi:GRAPH, demo or --camera N)")
        if path.stat().st_size == 0:
            raise SourceError(f"{path}: file is empty (0 bytes)")
        inputs.append(InputSpec(str(path), str(path)))
        description = str(path)
    if mic is not None:
        microphone = mic_input(mic)
        if microphone is not None:
            inputs = [InputSpec(**{**i.__dict__, "audio": False}) for i in inputs] + [microphone]
            live = True
    return SourceSpec(description, tuple(inputs), realtime=live if realtime is None else realtime or live, loop=loop)
