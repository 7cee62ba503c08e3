"""Where the runtime's frames and audio come from: cameras, microphones, files, URLs, lavfi, the demo clip.

A source spec is a string: ``camera:N`` (``/dev/videoN`` through v4l2; ``camera:PATH``
or the device path itself for a stable name such as ``/dev/v4l/by-id/...``), ``-`` (media piped to stdin),
``demo`` (the bundled synthetic clip), ``lavfi:GRAPH`` (an ffmpeg filter
graph, e.g. ``lavfi:testsrc=size=320x240:rate=25[out0];sine=f=220:r=16000[out1]``),
a URL (``rtsp://``, ``http://`` ...) or a file path. A microphone spec is
``alsa:DEVICE`` or ``pulse:DEVICE`` (or ``none``). Opening fails fast with
:class:`SourceError`, which names the device or file, says what is wrong in
plain words (FFmpeg's own after them) and suggests ``--source demo`` where a
device is missing. :func:`check_inputs` finds what cannot work before the
model loads.

Each opened input is read by its own capture thread (see
:mod:`migr_rt.runtime.capture`) through :func:`migr_rt.media.decode.iter_decoded`,
so a file streamed here yields exactly the frames and samples
:func:`migr_rt.media.decode_media` gives for it.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import stat
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit

import av
import av.logging

from migr_rt.media.protocols import unreadable_message, unreadable_scheme, url_scheme
from migr_rt.runtime import devices
from migr_rt.runtime.alsa import AlsaConfigError, configure_alsa, pcm_problem
from migr_rt.runtime.camera_modes import FFMPEG_NAMES, CaptureMode, capture_modes, choose_mode
from migr_rt.runtime.devices import (
    camera_held_by, capture_problem, describe_cameras, held_by, pcm_held_by, pcm_holders,
)
from migr_rt.runtime.rtsp_check import RtspRefusal, check_rtsp, mask_password, mask_passwords

logger = logging.getLogger(__name__)

DEMO = "demo"
#: The source spec of media piped to stdin.
STDIN = "-"
_SOURCES = "sources are a file, a URL, lavfi:GRAPH, demo, - for stdin or --camera N"


#: Seconds an open, and then each read, may wait for data before it fails (PyAV's ``timeout``).
IO_TIMEOUT = 5.0


class SourceError(RuntimeError):
    """A source that cannot be opened (or was lost); the message names it and what to try.

    ``retryable`` is False for what waiting cannot fix (an invalid filter graph, an unknown host name, a file
    that is not media, a device name ALSA does not know), so a reconnect loop can give up at once.
    """

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


def _ffmpeg_problem(exc: BaseException, said: list[tuple[int, str, str]], input_format: str | None,
                    timeout: float, live: bool, remote: bool = False, target: str = "") -> tuple[str, bool]:
    """What went wrong opening an input, in plain words with FFmpeg's own words after them, and whether a retry
    could help. PyAV's exceptions carry FFmpeg's errno text ("[Errno 1279870712] Filter not found"); the cause
    ("No such filter: 'nonsense'", "Failed to resolve hostname ...") is only in FFmpeg's log, captured in ``said``."""
    lines = [message.strip() for level, _, message in said if level <= av.logging.ERROR and message.strip()]
    # "Error processing filtergraph: Invalid argument" only restates the errno: keep the lines that say more
    specific = [line for line in lines if not line.startswith("Error processing filtergraph")] or lines
    detail = "; ".join(dict.fromkeys(specific)) or getattr(exc, "strerror", None) or str(exc)
    errors = av.error
    if isinstance(exc, errors.ExitError):  # PyAV's own timeout interrupted FFmpeg: its words would be "Immediate exit"
        return f"nothing received within {timeout:g} s", True
    if any("resolve hostname" in line for line in lines):
        plain, retryable = "the host name does not resolve (DNS)", False
    elif input_format == "lavfi" and isinstance(exc, (errors.FilterNotFoundError, errors.OptionNotFoundError,
                                                      errors.ArgumentError, errors.InvalidDataError)):
        plain, retryable = "the filter graph is not valid", False
    elif isinstance(exc, errors.ProtocolNotFoundError):
        plain, retryable = "this FFmpeg cannot read that kind of URL", False
        if "://" in target and (scheme := url_scheme(target)):  # PyAV's wheels leave out SRT and RIST
            return unreadable_message(target, scheme, detail), False
    elif isinstance(exc, errors.DemuxerNotFoundError):
        plain, retryable = f"this FFmpeg has no input format {input_format!r}", False
    elif isinstance(exc, (errors.HTTPNotFoundError, errors.HTTPForbiddenError, errors.HTTPUnauthorizedError,
                          errors.HTTPBadRequestError)):
        plain, retryable = "the server refuses to send it (HTTP error)", False
    elif isinstance(exc, ConnectionRefusedError):
        plain, retryable = "nothing answers at that address", True
    elif isinstance(exc, TimeoutError):
        plain, retryable = f"no answer within {timeout:g} s", True
    elif isinstance(exc, PermissionError):
        plain, retryable = "permission denied", False
    elif isinstance(exc, FileNotFoundError):
        plain, retryable = "no such file or device", live  # a device may be plugged in again
    elif isinstance(exc, errors.InvalidDataError):
        # A local file or device that is not media stays so; a live stream's server restarting (an HLS sender killed
        # mid-write leaves an empty playlist) may serve media again within the reconnect timeout.
        plain, retryable = "not media FFmpeg can read (corrupt, truncated or not a media file)", live and remote
    elif input_format in ("alsa", "v4l2") and getattr(exc, "errno", None) == errno.EBUSY:
        if input_format == "v4l2":
            who = camera_held_by(Path(target)) if target else held_by([], "/dev/video*")
        else:
            who = pcm_held_by(pcm_holders(target) or [])
        plain, retryable = f"the device is busy: another program is using it ({who})", True
    elif input_format == "v4l2" and getattr(exc, "errno", None) == errno.ENOSPC:
        # uvcvideo at VIDIOC_STREAMON: the USB controller cannot reserve the camera's isochronous bandwidth
        plain, retryable = ("the USB bus has no bandwidth left for this picture (another camera on the same USB "
                            "controller takes it): ask for less with --camera-size, or plug the camera into another "
                            "controller's port"), True
    elif input_format in ("alsa", "v4l2"):
        plain, retryable = "the device cannot be opened (busy, unplugged or not a capture device)", True
    else:
        plain, retryable = getattr(exc, "strerror", None) or "FFmpeg cannot open it", True
    return f"{plain} (FFmpeg: {detail})" if detail != plain else plain, retryable


def read_problem(exc: BaseException, timeout: float = IO_TIMEOUT) -> str:
    """Why reading an opened input failed, in words: a live stream whose sender stopped times out in PyAV, which
    FFmpeg reports as "Immediate exit requested"."""
    if isinstance(exc, av.error.ExitError):
        return f"nothing received for {timeout:g} s"
    if isinstance(exc, av.error.InvalidDataError):  # e.g. an MJPEG sender stopped in the middle of a picture
        return "the data stopped making sense to FFmpeg (cut off mid-frame, or corrupt)"
    if isinstance(exc, TimeoutError):  # FFmpeg's rw_timeout: an HTTP server stalled (see _url_options)
        return f"the connection stalled: nothing received for {HTTP_STALL:g} s"
    return mask_passwords(str(exc))  # PyAV's message ends with the URL opened, password and all


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
    reopen: bool = True  #: a live input that ends or fails is opened again (not a pipe: it cannot be)

    def open(self, timeout: float = IO_TIMEOUT) -> av.container.InputContainer:
        """Open it with PyAV, or raise :class:`SourceError` naming it and saying why in plain words.

        A server slower than :data:`HTTP_STALL` to answer (its first byte after 3 s; an HLS server's segments as
        slow) never opened with ``rw_timeout`` (see :func:`_url_options`), however often retried: it is opened
        again without it, waiting as long as before ``rw_timeout`` was set; a stall mid-way then ends the read.
        """
        options = dict(self.options)
        try:
            return self._open(options, timeout)
        except SourceError as exc:
            if "rw_timeout" not in options or not isinstance(exc.__cause__, (TimeoutError, av.error.ExitError)):
                raise
        del options["rw_timeout"]
        logger.info("%s: no answer within %g s; opened again, waiting up to %g s", self.name, HTTP_STALL, timeout)
        return self._open(options, timeout)

    def _open(self, options: dict[str, str], timeout: float) -> av.container.InputContainer:
        quiet = av.logging.get_level() is None
        if quiet:  # FFmpeg says why only in its log (a bad filter option, a host name): capture it meanwhile
            av.logging.set_level(av.logging.ERROR)
        said: list[tuple[int, str, str]] = []
        try:
            with av.logging.Capture() as said:
                return av.open(self.target, mode="r", format=self.format, options=options, timeout=timeout)
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            # an HTTP server's stall ends at rw_timeout (see _url_options)
            waited = HTTP_STALL if isinstance(exc, TimeoutError) and "rw_timeout" in options else timeout
            problem, retryable = _ffmpeg_problem(exc, said, self.format, waited, self.live, "://" in self.target,
                                                 self.target)
            raise SourceError(f"{self.name}: cannot be opened: {mask_passwords(problem)}{self.hint}",
                              retryable=retryable) from exc
        finally:
            if quiet:
                av.logging.set_level(None)


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


def camera_input(camera: int | str | Path, fps: float = 25.0, dev: Path = Path("/dev"),
                 size: tuple[int, int] | None = None) -> InputSpec:
    """A camera by index (``/dev/videoN``) or by device path, such as its stable name under ``/dev/v4l/by-id``
    (a robot with two cameras cannot rely on their numbers, which follow the order they were found at boot).

    The node is checked to give pictures: a UVC camera's second node gives metadata. ``size`` (width, height) asks
    for that picture size rather than the one :func:`~migr_rt.runtime.camera_modes.choose_mode` picks.
    """
    if isinstance(camera, int):
        device = dev / f"video{camera}"
        who = f"camera {camera}: {device}"
    else:
        device = Path(camera)
        who = f"camera {device}"
    if not device.exists():
        raise SourceError(
            f"{who} does not exist ({describe_cameras(dev)}); "
            "try the demo clip or a file instead (--source demo / --source FILE; stream(\"demo\") in Python)"
        )
    if not os.access(device, os.R_OK):
        raise SourceError(f"{who} is not readable by this user (add the user to the 'video' group)")
    problem = capture_problem(device)
    if problem is not None:
        raise SourceError(f"{who} {problem}; {describe_cameras(dev)} (`migr-rt devices` lists cameras and "
                          "microphones)", retryable=False)
    name = f"camera {camera} ({device})" if isinstance(camera, int) else f"camera {device}"
    mode = camera_mode(device, fps, size, who)
    if mode is not None:
        options = mode.options
    else:  # the camera lists no mode FFmpeg reads: its own, at the size asked for if any
        options = (("video_size", f"{size[0]}x{size[1]}"),) if size else ()
    return InputSpec(name, str(device), "v4l2", (("framerate", str(int(fps))),) + options, live=True, audio=False)


def camera_mode(device: Path, fps: float, size: tuple[int, int] | None = None, who: str = "") -> CaptureMode | None:
    """The mode the camera at ``device`` is asked for (see :mod:`~migr_rt.runtime.camera_modes`), or None to read it
    in its own: it lists none FFmpeg reads, or does not answer. A ``size`` it does not list is refused, naming the
    sizes it does."""
    try:
        modes = capture_modes(device, devices.query_node(device).buffer_type)
    except OSError as exc:
        logger.info("%s: its modes could not be listed (%s); it is read in the mode it is in", device, exc)
        return None
    mode = choose_mode(modes, fps, size)
    if mode is None and size is not None and any(m.fourcc in FFMPEG_NAMES for m in modes):
        sizes = sorted({(m.width, m.height) for m in modes if m.fourcc in FFMPEG_NAMES})
        listed = ", ".join(f"{w}x{h}" for w, h in sizes)
        raise SourceError(f"{who or device} gives no {size[0]}x{size[1]} picture; it gives {listed}",
                          retryable=False)
    if mode is not None:
        logger.info("%s: asking for %s", device, mode)
    return mode


def camera_ref(text: str) -> int | str | None:
    """A camera as ``--camera`` and ``camera:`` name it: an index N (``/dev/videoN``) or a device path; None if
    ``text`` is neither."""
    if text.isdigit():
        return int(text)
    return text if text.startswith("/") else None


def stdin_input() -> InputSpec:
    """Media piped to this process: a Raspberry Pi camera module (``rpicam-vid -t 0 -o - | migr-rt run --source
    -``), a GStreamer pipeline (``fdsink``), an ``ffmpeg ... -f mpegts -`` producer.

    Read as a live stream (as fast as the producer writes, windows dropped when analysis falls behind) that is
    not opened again when it ends: the run ends with the pipe.
    """
    # File descriptor 0 itself, which FFmpeg's pipe:0 reads: sys.stdin may stand in for it (a notebook's, a test
    # runner's), whose fileno() raises, and is None when the process was started with it closed.
    def refused(what: str) -> SourceError:
        return SourceError(f"--source -: reads media piped to stdin, and stdin is {what} (e.g. rpicam-vid -t 0 -o - "
                           "| migr-rt run --source -)")

    try:
        mode = os.fstat(0).st_mode
    except OSError:
        raise refused("closed") from None
    if os.isatty(0):
        raise refused("a terminal")
    if stat.S_ISREG(mode):  # `< clip.mp4`: a file, which can seek (an MP4 must)
        return InputSpec("stdin", "/proc/self/fd/0")
    return InputSpec("stdin", "pipe:0", live=True, reopen=False,
                     hint=" (a pipe carries a format that needs no seeking: MPEG-TS, Matroska, fragmented MP4, MJPEG "
                          "or raw H.264; an MP4 file is read by its name instead)")


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
            + ("use alsa:DEVICE (`migr-rt devices` lists them)" if "alsa" in av.formats_available else
               "install a PyAV built against a system FFmpeg with ALSA or PulseAudio")
        )
    hint = ""
    if backend == "alsa":
        try:
            configure_alsa()
        except AlsaConfigError as exc:
            raise SourceError(f"microphone {spec}: {exc}") from exc
        hint = ("; note that this machine has no sound card (/dev/snd is missing)" if not Path("/dev/snd").exists()
                else "; `migr-rt devices` lists capture cards, e.g. alsa:plughw:1,0")
        # A name ALSA cannot resolve fails here, in milliseconds, rather than when the stream opens its inputs
        # after the model has loaded (seconds); resolving opens nothing (see pcm_problem).
        problem = pcm_problem(device)
        if problem is not None:
            raise SourceError(f"microphone {spec}: cannot be opened: ALSA cannot resolve the device name {device!r} "
                              f"({problem}: a name it does not know, or one whose sound card is not there){hint}",
                              retryable=False)
        owners = pcm_holders(device)  # a card's PCM records for one program at a time (see pcm_holders)
        if owners is not None:
            raise SourceError(f"microphone {spec}: cannot be opened: the device is busy: another program is recording "
                              f"from it ({pcm_held_by(owners)}); close it, or record from "
                              "a device that is free (`migr-rt devices` lists them)", retryable=False)
    return InputSpec(f"microphone {spec}", device, backend, live=True, video=False, hint=hint)


#: Seconds an HTTP(S) connection may stall (send nothing, yet stay open) before FFmpeg drops it: below
#: :data:`IO_TIMEOUT`, so that its reconnect resumes a remote file before PyAV's timeout ends the read.
HTTP_STALL = 2.5


def _url_options(url: str) -> tuple[tuple[str, str], ...]:
    """FFmpeg options for reading ``url``: an HTTP(S) download cut or stalled mid-way resumes where it stopped.

    A remote file is read to its end and not reopened (that would start it over), so a dropped connection
    would end the run; FFmpeg's ``reconnect`` asks the server for the rest instead (a range request), retrying
    with backoff up to 10 s apart. A server that stops sending without closing the connection left FFmpeg
    waiting until PyAV's read timeout (:data:`IO_TIMEOUT`) ended the run: ``rw_timeout`` makes FFmpeg drop such a
    connection after :data:`HTTP_STALL` seconds and resume in the same way. Measured with a server that cuts its
    first answer off after 40 kB, at once or after stalling 3, 8 or 30 s: every window was analysed, as from the
    file on disk (before, the 8 and 30 s stalls ended the run after one window, exit status 3). A live HTTP
    stream cannot be resumed that way and is reopened by the capture thread as before, after a stall of
    :data:`HTTP_STALL` seconds rather than :data:`IO_TIMEOUT`.
    """
    if url.partition("://")[0].lower() in ("http", "https"):  # the scheme alone: a bad host is check_inputs's to name
        return (("reconnect", "1"), ("reconnect_delay_max", "10"), ("rw_timeout", str(int(HTTP_STALL * 1e6))))
    return ()


def _is_device(path: str) -> bool:
    """Whether ``path`` names a character device, such as a camera's node. A lavfi graph or URL may be longer than
    a file name can be: Path.is_char_device raises that (ENAMETOOLONG) rather than answering False."""
    try:
        return Path(path).is_char_device()
    except OSError:
        return False


def parse_source(
    source: str | None = None, *, camera: int | str | None = None, mic: str | None = None, realtime: bool | None = None,
    loop: bool = False, fps: float = 25.0, camera_size: tuple[int, int] | None = None,
) -> SourceSpec:
    """Resolve what the user asked for into inputs, checking devices and files exist (fast, before any thread).

    ``camera_size`` (width, height) is the picture size a camera is asked for (default: see
    :func:`~migr_rt.runtime.camera_modes.choose_mode`)."""
    if (source is None) == (camera is None):
        raise SourceError("give exactly one of a camera index or a source (FILE, URL, lavfi:GRAPH or demo)")
    if source is not None and source.startswith("camera:"):
        camera = camera_ref(source.removeprefix("camera:"))
        if camera is None:
            raise SourceError(f"{source}: a camera source is camera:N, N the device index (camera:0 is /dev/video0), "
                              "or camera:PATH, PATH its device (/dev/v4l/by-id/...)")
        source = None
    elif source is not None and _is_device(source):  # /dev/video0, /dev/v4l/by-id/usb-...-video-index0
        source, camera = None, source
    if camera_size is not None and camera is None:  # a file under /dev (/dev/shm/clip.mp4) included
        raise SourceError("--camera-size is for a camera (--camera N or a device path)", retryable=False)
    inputs: list[InputSpec] = []
    live = False  # a URL: real time unless asked otherwise (a remote file may be read losslessly)
    device = False  # a camera or microphone: real time always (a device cannot wait for analysis)
    if camera is not None:
        inputs.append(camera_input(camera, fps, size=camera_size))
        description, device = f"camera:{camera}", True
    elif source == DEMO:
        clip = demo_clip()
        inputs.append(InputSpec(f"demo ({clip.name})", str(clip)))
        description = DEMO
    elif source == STDIN:
        inputs.append(stdin_input())
        description, live = "stdin", inputs[-1].live
    elif source.startswith("lavfi:"):
        graph = source.removeprefix("lavfi:")
        inputs.append(InputSpec(f"lavfi {graph}", graph, "lavfi"))
        description = source
    elif "://" in source:
        # named with its password masked: the name goes into the start event, logs and status messages
        inputs.append(InputSpec(mask_password(source), source, options=_url_options(source), live=True))
        description, live = mask_password(source), True
    else:
        if not source.strip():
            raise SourceError(f"the source is empty ({_SOURCES})")
        path = Path(source)
        if path.is_dir():
            raise SourceError(f"{path}: is a folder; a file source is one media file")
        if not path.is_file():
            raise SourceError(f"{path}: no such file ({_SOURCES})")
        if path.stat().st_size == 0:
            raise SourceError(f"{path}: file is empty (0 bytes)")
        inputs.append(InputSpec(str(path), str(path)))
        description = str(path)
    if mic is not None:
        microphone = mic_input(mic)
        if microphone is not None:
            inputs = [InputSpec(**{**i.__dict__, "audio": False}) for i in inputs] + [microphone]
            device = True
    realtime = device or (live if realtime is None else realtime)
    return SourceSpec(description, tuple(inputs), realtime=realtime, loop=loop)


def check_inputs(spec: SourceSpec, timeout: float = IO_TIMEOUT) -> None:
    """Refuse, before the model loads, a source that cannot work: the command line calls this first.

    Loading the model takes seconds; a source opened only after it (by :meth:`Runtime.stream
    <migr_rt.runtime.engine.Runtime.stream>`) makes an invalid filter graph or an unknown host fail seconds late.
    Here every input that is not live (a file, a lavfi graph, the demo clip) is opened and closed again, which
    costs milliseconds and changes nothing, and a URL's host name is resolved (and an RTSP server asked for the
    stream, see :func:`_check_reachable`). A live device is not opened: the stream opens it once, right
    before capture starts, since opening it here would leave it filling buffers (or holding back a producer)
    while the model loads, and closing it again can lose what it hands over once (a pipe behind an ALSA ``file``
    PCM). Devices were checked when the spec was parsed (a missing camera, an ALSA name that does not resolve, a
    node that gives no pictures). ``timeout``: the seconds each check may wait for an answer.
    """
    for item in spec.inputs:
        if not item.live:
            item.open(timeout).close()
            continue
        if "://" in item.target:
            _check_reachable(item, timeout)


#: Default TCP ports of the URL schemes whose servers serve many clients, contacted before the model loads. The
#: other schemes are only resolved: FFmpeg serves HTTP and RTMP with ``-listen 1`` and raw TCP with
#: ``tcp://...?listen`` to its first connection and no other (``ffmpeg -f v4l2 -i /dev/video0 -f mpegts -listen 1
#: http://0.0.0.0:8080`` streams a robot's camera), so a knock would be that connection: the server fails on it
#: and exits, and the run's own connection is refused. FFmpeg has no RTSP server, and RTSP servers (IP cameras,
#: MediaMTX) take every client: an ``rtsp://`` URL is asked for its stream with a DESCRIBE, which opens no session
#: (see :mod:`migr_rt.runtime.rtsp_check`); an ``rtsps://`` server's port is only knocked on (connected to and
#: closed without a byte sent), since asking it would take a TLS handshake first.
_TCP_PORTS = {"rtsp": 554, "rtsps": 322}


def _check_reachable(item: InputSpec, timeout: float = IO_TIMEOUT) -> None:
    """Resolve a URL's host name and, for RTSP, ask the server for the stream (:func:`check_rtsp
    <migr_rt.runtime.rtsp_check.check_rtsp>`): a wrong path or a missing or wrong password is said before the
    model loads, not after it as FFmpeg's HTTP error.

    The messages name the URL with its password masked. FFmpeg's HTTP client honours ``http_proxy``: with a proxy
    set, an HTTP(S) URL is not checked at all, since the proxy, not this machine, resolves its host and connects
    to it (behind a proxy, the local DNS often knows no outside name at all).
    """
    name = mask_password(item.name)  # masked by parse_source already; a spec built by hand may not be
    try:  # an unclosed IPv6 bracket fails on splitting, a port out of range or not a number on reading it
        parts = urlsplit(item.target)
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise SourceError(f"{name}: cannot be opened: {exc}", retryable=False) from exc
    if missing := unreadable_scheme(item.target):  # before the host: an SRT sender's name resolves fine
        raise SourceError(f"{name}: cannot be opened: {unreadable_message(name, missing)}", retryable=False)
    if not host:
        return
    scheme = parts.scheme.lower()
    if scheme in ("http", "https") and any(os.environ.get(v) for v in ("http_proxy", "HTTP_PROXY")):
        return
    try:
        socket.getaddrinfo(host, None)
    except (socket.gaierror, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, socket.gaierror) else str(exc)
        raise SourceError(f"{name}: cannot be opened: the host name {host!r} does not resolve (DNS: "
                          f"{reason})", retryable=False) from exc
    if scheme not in _TCP_PORTS:
        return
    port = port or _TCP_PORTS[scheme]
    try:
        if scheme == "rtsp":
            check_rtsp(item.target, host, port, timeout)
        else:  # rtsps: only the port is knocked on (see _TCP_PORTS)
            socket.create_connection((host, port), timeout=timeout).close()
    except RtspRefusal as exc:
        raise SourceError(f"{name}: cannot be opened: {exc}", retryable=exc.retryable) from exc
    except ConnectionRefusedError as exc:
        raise SourceError(f"{name}: cannot be opened: nothing answers at that address (connection to "
                          f"{host} port {port} refused)") from exc
    except TimeoutError as exc:
        raise SourceError(f"{name}: cannot be opened: no answer within {timeout:g} s (connecting to {host} "
                          f"port {port})") from exc
    except OSError as exc:
        raise SourceError(f"{name}: cannot be opened: cannot connect to {host} port {port} "
                          f"({exc.strerror or exc})") from exc
