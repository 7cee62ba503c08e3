"""Which URL schemes the FFmpeg inside PyAV can read, asked of that FFmpeg itself.

PyAV's wheels carry their own FFmpeg, built without some protocols that the ``ffmpeg`` command line of a
distribution has: SRT and RIST, which drones, hardware encoders and OBS send. Opening such a URL fails only
with "Protocol not found", and the run opens a live URL after the model has loaded, seconds late. FFmpeg lists
its protocols (``avio_enum_protocols``); PyAV does not pass that on, so it is called in the library PyAV has
loaded, looked up through PyAV's own extension module: a process may hold more than one libavformat (OpenCV's
wheels carry their own FFmpeg, built with other protocols, and ``cv2`` is imported before this is asked).
"""

from __future__ import annotations

import ctypes
import difflib
import functools
import importlib
import logging
import re
import shlex

logger = logging.getLogger(__name__)

#: Schemes FFmpeg reads through a demuxer that claims the URL, not through a protocol of that name.
DEMUXER_SCHEMES = frozenset({"rtsp", "rtsps", "satip", "sap"})
#: Protocols of other FFmpeg builds (a distribution's ``ffmpeg`` command line) that a stream may come in by.
OTHER_BUILDS = frozenset({"srt", "rist", "rtmpe", "rtmpte", "sctp", "sftp", "smb", "zmq", "amqp"})
#: What a camera or an encoder streams over, named when a scheme is not known at all.
STREAMING = ("rtsp", "rtmp", "http", "https", "udp", "tcp", "rtp")


#: A URL's protocol as FFmpeg reads it (``url_find_protocol``): these characters, then ':'. ``async:http://...``
#: and ``cache:file://...`` name the outer protocol first; ``crypto+http://...`` is crypto's, over HTTP.
_SCHEME = re.compile(r"[A-Za-z0-9+.-]+(?=:)")


@functools.cache
def input_protocols() -> frozenset[str] | None:
    """The input protocols of PyAV's FFmpeg, or None where they cannot be asked (a static build)."""
    # dlsym through the handle of PyAV's extension module searches that module and the libraries it links, so it
    # finds PyAV's libavformat and not another one the process loaded first (OpenCV's, which reads rtmpe://).
    av_format = importlib.import_module("av.format")
    try:
        enum = ctypes.CDLL(av_format.__file__).avio_enum_protocols  # loaded already: dlopen hands back its handle
    except (OSError, AttributeError, TypeError) as exc:
        logger.debug("cannot ask PyAV's FFmpeg for its protocols: %s", exc)
        return None
    enum.restype, enum.argtypes = ctypes.c_char_p, [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int]
    cursor, names = ctypes.c_void_p(), []
    while (name := enum(ctypes.byref(cursor), 0)) is not None:  # 0: input protocols
        names.append(name.decode())
    return frozenset(names)


def url_scheme(url: str) -> str | None:
    """The protocol FFmpeg looks up for ``url``, as written (it matches ``HTTP://`` to no protocol); None: a path."""
    found = _SCHEME.match(url)
    return found[0] if found else None


def unreadable_scheme(url: str) -> str | None:
    """The scheme of ``url`` where PyAV's FFmpeg certainly cannot read it, else None (readable, or not known)."""
    scheme = url_scheme(url)
    known = input_protocols()
    if scheme is None or known is None:  # a path (FFmpeg's file protocol), or a form not parsed here
        return None
    if {scheme, scheme.partition("+")[0]} & (known | DEMUXER_SCHEMES):
        return None
    return scheme


def unreadable_message(url: str, scheme: str, ffmpeg_says: str = "") -> str:
    """Why ``url`` cannot be read, and what reads it: the pipe through the ffmpeg command line for a protocol other
    FFmpeg builds have, the nearest scheme this one reads for anything else (``rstp://`` is a typo)."""
    said = f" (FFmpeg: {ffmpeg_says})" if ffmpeg_says else ""
    if scheme in OTHER_BUILDS:
        return (f"PyAV's FFmpeg is built without {scheme}://{said}; receive it with the ffmpeg command line and pipe "
                f"it in: ffmpeg -i {shlex.quote(url)} -c copy -f mpegts - | migr-rt run --source -")
    readable = sorted((input_protocols() or frozenset()) | DEMUXER_SCHEMES)
    lower = scheme.lower()
    swapped = [p for p in readable if sorted(p) == sorted(lower)]  # RTSP, or two letters swapped: rstp for rtsp
    near = swapped or difflib.get_close_matches(lower, readable, n=1, cutoff=0.6)
    hint = f"; did you mean {near[0]}://?" if near else f"; it reads {', '.join(f'{p}://' for p in STREAMING)}"
    return f"FFmpeg knows no {scheme}:// URLs{said}{hint}"
