"""Which picture a camera is asked for: size, pixel format and frame rate.

FFmpeg's v4l2 input, given no size or format, reads a camera in whatever mode it is in, usually the first one
its descriptor lists. For many USB webcams that is 1920x1080: in YUYV a USB 2 camera gives it at 5 fps (the
stream then holds 5 pictures a second, not 25), and in MJPEG every frame costs a full-HD JPEG decode and RGB
conversion (7.8 ms on two EPYC cores, against 1.4 to 1.7 ms at 640 wide: benchmarks/results/camera_modes.md), for
a face that is cropped to a few dozen pixels. So the
camera's modes are listed first (``VIDIOC_ENUM_FMT``, ``VIDIOC_ENUM_FRAMESIZES``,
``VIDIOC_ENUM_FRAMEINTERVALS``: questions only, nothing is set or streamed), and :func:`choose_mode` picks the
smallest picture at least :data:`MIN_WIDTH` wide that keeps up with the frame rate asked for, in MJPEG when the
camera has it. A camera that answers none of this is read as before, in its own mode.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
from dataclasses import dataclass
from pathlib import Path

#: ``_IOWR('V', 2, struct v4l2_fmtdesc)``: index, type, flags, description[32], pixelformat, mbus_code, reserved[3].
VIDIOC_ENUM_FMT = 0xC0405602
_FMTDESC = struct.Struct("<III32sII12x")
#: ``_IOWR('V', 74, struct v4l2_frmsizeenum)``: index, pixel_format, type, a 24-byte union, reserved[2].
VIDIOC_ENUM_FRAMESIZES = 0xC02C564A
_FRMSIZE = struct.Struct("<III6I8x")
#: ``_IOWR('V', 75, struct v4l2_frmivalenum)``: index, pixel_format, width, height, type, a 24-byte union, reserved[2].
VIDIOC_ENUM_FRAMEINTERVALS = 0xC034564B
_FRMIVAL = struct.Struct("<IIIII6I8x")
FRMSIZE_DISCRETE, FRMSIZE_CONTINUOUS, FRMSIZE_STEPWISE = 1, 2, 3
FRMIVAL_DISCRETE = 1  # 2 continuous and 3 stepwise give a range whose fastest end is read the same way

#: The narrowest picture asked for: a face a metre or two away is then still ~100 pixels wide.
MIN_WIDTH = 640
#: The V4L2 pixel formats FFmpeg's v4l2 input reads, as its ``input_format`` option names them, in the order they
#: are preferred: MJPEG first, then uncompressed, then H.264. Turning a 640x480 frame into RGB costs as much from
#: MJPEG (decoded) as from YUYV (converted), 1.7 ms either way on two EPYC cores (benchmarks/camera_modes.py), but
#: MJPEG carries a fifteenth of the data (for the benchmark's test picture): two uncompressed 640x480 cameras at 30
#: fps do not fit one USB 2 controller (how much bandwidth a camera reserves in MJPEG is its own choice).
FFMPEG_NAMES = {"MJPG": "mjpeg", "YUYV": "yuyv422", "UYVY": "uyvy422", "NV12": "nv12", "YU12": "yuv420p",
                "RGB3": "rgb24", "BGR3": "bgr24", "GREY": "gray", "H264": "h264"}
# Not "JPEG": FFmpeg's "mjpeg" asks for MJPG first, and a driver that has only JPEG answers with its own default
# format and size, which FFmpeg then keeps when it tries JPEG: a camera with only JPEG is read in its own mode.
#: The sizes tried within a camera that states a range of sizes rather than a list.
COMMON_SIZES = ((640, 480), (640, 360), (800, 600), (1280, 720), (1920, 1080))
_LIMIT = 256  # entries read from each list: a driver that never ends its list is cut off


def _entries(fd: int, request: int, layout: struct.Struct, *fields: int):
    """The driver's answers for indexes 0, 1, ... of one list, each without its index, until the end of the list.

    A driver that ignores the index gives its first entry again and again: a list ends at an entry it already
    gave (no list repeats an entry), rather than after :data:`_LIMIT` of them, which nested three lists deep (formats,
    sizes, intervals) were 16 million questions.
    """
    seen = set()
    for index in range(_LIMIT):
        answer = _ask(fd, request, layout, index, *fields)
        if answer is None or answer[1:] in seen:
            return
        seen.add(answer[1:])
        yield answer[1:]


@dataclass(frozen=True)
class CaptureMode:
    """One picture a camera gives: pixel format (its FourCC), size, and the fastest frame rate at that size."""

    fourcc: str  #: e.g. "YUYV", "MJPG"
    width: int
    height: int
    fps: float | None  #: None when the driver lists no frame intervals

    @property
    def options(self) -> tuple[tuple[str, str], ...]:
        """FFmpeg's v4l2 input options that ask for this mode."""
        return (("video_size", f"{self.width}x{self.height}"), ("input_format", FFMPEG_NAMES[self.fourcc]))

    def __str__(self) -> str:
        rate = f" at {self.fps:g} fps" if self.fps else ""
        return f"{self.width}x{self.height} {self.fourcc}{rate}"


def fourcc(code: int) -> str:
    """The four characters a V4L2 pixel format code packs (little-endian)."""
    return code.to_bytes(4, "little").decode("ascii", "replace").rstrip()


def _ask(fd: int, request: int, layout: struct.Struct, *fields: int) -> tuple | None:
    """One enumeration step: the driver's answer, or None at the end of the list (EINVAL) or when it has none."""
    raw = bytearray(layout.size)  # zeroed: the fields the driver fills in, and the reserved ones it checks
    struct.pack_into(f"<{len(fields)}I", raw, 0, *fields)  # the leading fields that say what is asked
    try:
        fcntl.ioctl(fd, request, raw)
    except OSError as exc:
        if exc.errno in (errno.EINVAL, errno.ENOTTY, errno.ENODATA):
            return None
        raise
    return layout.unpack(bytes(raw))


def _fastest(fd: int, code: int, width: int, height: int) -> float | None:
    """The highest frame rate the camera gives ``code`` at ``width`` x ``height``."""
    best = None
    for answer in _entries(fd, VIDIOC_ENUM_FRAMEINTERVALS, _FRMIVAL, code, width, height):
        kind, numerator, denominator = answer[3], answer[4], answer[5]  # discrete, or a range's shortest interval
        if numerator and denominator:
            best = max(best or 0.0, denominator / numerator)
        if kind != FRMIVAL_DISCRETE:
            break
    return best


def _sizes(fd: int, code: int) -> list[tuple[int, int]]:
    sizes = []
    for answer in _entries(fd, VIDIOC_ENUM_FRAMESIZES, _FRMSIZE, code):
        kind, values = answer[1], answer[2:]
        if kind == FRMSIZE_DISCRETE:
            sizes.append((values[0], values[1]))
            continue
        min_w, max_w, step_w, min_h, max_h, step_h = values  # a range (continuous: steps of 1)
        step_w, step_h = max(step_w, 1), max(step_h, 1)
        common = [(w, h) for w, h in COMMON_SIZES
                  if min_w <= w <= max_w and min_h <= h <= max_h and (w - min_w) % step_w == 0
                  and (h - min_h) % step_h == 0]
        sizes += common or [(max_w, max_h)]  # a range holding no common size: its largest
        break
    return sizes


def capture_modes(path: Path, buffer_type: int) -> list[CaptureMode]:
    """Every mode the camera at ``path`` lists for its ``buffer_type`` queue (1: single-planar capture), in its
    order; raises :class:`OSError` when the node cannot be opened."""
    fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
    try:
        modes = []
        for answer in _entries(fd, VIDIOC_ENUM_FMT, _FMTDESC, buffer_type):
            code = answer[3]
            modes += [CaptureMode(fourcc(code), w, h, _fastest(fd, code, w, h)) for w, h in _sizes(fd, code)]
        return modes
    finally:
        os.close(fd)


def choose_mode(modes: list[CaptureMode], fps: float, size: tuple[int, int] | None = None) -> CaptureMode | None:
    """The mode to ask for when ``fps`` frames a second are wanted, or None to leave the camera as it is (it lists
    no mode FFmpeg reads, or none of ``size``, (width, height), when a size is asked for).

    Among the modes that keep up with ``fps`` (or, when none does, the fastest): the smallest at least
    :data:`MIN_WIDTH` wide (or, when none is, the largest), in the first pixel format of :data:`FFMPEG_NAMES` the
    camera has at that size. A mode whose rate is not listed is taken to keep up.
    """
    readable = [mode for mode in modes if mode.fourcc in FFMPEG_NAMES and size in (None, (mode.width, mode.height))]
    if not readable:
        return None
    keeping_up = [mode for mode in readable if mode.fps is None or mode.fps >= fps * 0.95]
    if not keeping_up:
        fastest = max(mode.fps or 0.0 for mode in readable)
        keeping_up = [mode for mode in readable if mode.fps == fastest]
    wide = [mode for mode in keeping_up if mode.width >= MIN_WIDTH]
    pool, smaller = (wide, 1) if wide else (keeping_up, -1)  # the smallest wide enough, else the largest
    preference = list(FFMPEG_NAMES)
    return min(pool, key=lambda m: (smaller * m.width * m.height, preference.index(m.fourcc), -(m.fps or 0.0)))
