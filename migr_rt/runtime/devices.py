"""The cameras and microphones this machine has, found the way the kernel lists them.

A number in ``--camera N`` is a V4L2 node, ``/dev/videoN``, and not every node is a camera: a UVC webcam
registers two, the picture and a metadata node (so a laptop's camera is ``/dev/video0`` and ``/dev/video1``,
and a second webcam is ``/dev/video2``), and boards add hardware codecs and scalers as further nodes. FFmpeg's
v4l2 input checks what the whole device can do, not the node, so it opens a metadata node and only then fails
to set a picture format. :func:`capture_problem` asks the node itself (``VIDIOC_QUERYCAP``: no streaming is
started and nothing is configured), so ``migr-rt run`` refuses such a node in plain words before the model
loads, and :func:`cameras` names the nodes that do give pictures.

Microphones come from ``/proc/asound`` (cards and their capture PCMs), named as ``--mic`` takes them:
``alsa:plughw:CARD=<id>,DEV=<n>`` (the card's id, which stays put when cards are numbered in another order
at the next boot, as long as no two cards are the same model: two C920s get ``C920`` and ``C920_1`` in the
order they were found; ``plughw`` converts to the rate and channels FFmpeg asks for).
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import stat
import struct
from dataclasses import dataclass
from pathlib import Path

#: ``_IOR('V', 0, struct v4l2_capability)``: the struct is 104 bytes (linux/videodev2.h).
VIDIOC_QUERYCAP = 0x80685600
_CAPABILITY = struct.Struct("<16s32s32sIII12x")  # driver, card, bus_info, version, capabilities, device_caps
CAP_VIDEO_CAPTURE = 0x00000001
CAP_VIDEO_OUTPUT = 0x00000002
CAP_VIDEO_CAPTURE_MPLANE = 0x00001000
CAP_VIDEO_M2M_MPLANE = 0x00004000
CAP_VIDEO_M2M = 0x00008000
CAP_META_CAPTURE = 0x00800000
CAP_STREAMING = 0x04000000
CAP_TOUCH = 0x10000000
CAP_IO_MC = 0x20000000
#: Drivers of image signal processors that take pictures in and give processed ones out, and flag their output
#: nodes as plain capture (not memory-to-memory, not media controller): the Raspberry Pi 5's back end and the Pi 4's
#: firmware ISP. Such a node gives a picture only for one fed to it.
ISP_DRIVERS = frozenset({"pispbe", "bcm2835-isp"})
#: The character-device major of every V4L2 node (include/uapi/linux/major.h).
VIDEO_MAJOR = 81
CAP_DEVICE_CAPS = 0x80000000
#: ``_IOWR('V', 8, struct v4l2_requestbuffers)``: count, type, memory, capabilities, flags, 3 reserved (20 bytes).
VIDIOC_REQBUFS = 0xC0145608
_REQUEST_BUFFERS = struct.Struct("<IIIIB3x")
BUF_TYPE_VIDEO_CAPTURE = 1
BUF_TYPE_VIDEO_CAPTURE_MPLANE = 9
MEMORY_MMAP = 1


@dataclass(frozen=True)
class VideoNode:
    """One ``/dev/videoN`` and what the kernel says it does."""

    index: int
    path: Path
    card: str  #: the device's name, e.g. "Integrated Camera: Integrated C"
    driver: str  #: e.g. "uvcvideo"
    bus: str  #: where it is plugged, e.g. "usb-0000:00:14.0-8"
    caps: int  #: this node's capabilities (the device's when the driver does not report the node's own)

    @property
    def media_controller(self) -> bool:
        """Whether the node is one stage of a media-controller pipeline (a Raspberry Pi's camera-module receiver or
        its ISP, a Rockchip ISP): it gives pictures only once that pipeline is set up (libcamera does it), which
        FFmpeg's v4l2 input does not do; ``rpicam-vid ... -o - | migr-rt run --source -`` reads such a camera."""
        return self.caps & CAP_IO_MC != 0  # rp1-cfe, unicam, rkisp1, ipu3-cio2, Intel IPU6's isys: raw Bayer

    @property
    def buffer_type(self) -> int:
        """The V4L2 buffer type of its picture queue: single-planar capture, else multi-planar."""
        return BUF_TYPE_VIDEO_CAPTURE if self.caps & CAP_VIDEO_CAPTURE else BUF_TYPE_VIDEO_CAPTURE_MPLANE

    @property
    def is_camera(self) -> bool:
        """Whether FFmpeg's v4l2 input can read pictures from this node: it captures video and streams.

        FFmpeg asks for nothing more (libavdevice/v4l2.c, ``device_open``). The FFmpeg of PyAV's wheels (8.0) reads
        multi-planar capture too (Rockchip's HDMI input and ISP); an older one refuses such a node when it opens it.
        A memory-to-memory flag is not held against a node that captures: v4l2loopback before 0.13 reports
        VIDEO_M2M beside VIDEO_CAPTURE once a program writes to it.
        """
        return (self.caps & (CAP_VIDEO_CAPTURE | CAP_VIDEO_CAPTURE_MPLANE) != 0 and self.caps & CAP_STREAMING != 0
                and not self.caps & CAP_TOUCH  # a touch sensor's node "captures" its pressure map
                and not self.media_controller and self.driver not in ISP_DRIVERS)


def decode_capability(raw: bytes, index: int, path: Path) -> VideoNode:
    """A :class:`VideoNode` from the bytes ``VIDIOC_QUERYCAP`` filled in."""
    driver, card, bus, _version, capabilities, device_caps = _CAPABILITY.unpack(raw[:_CAPABILITY.size])

    def text(field: bytes) -> str:
        return field.split(b"\0", 1)[0].decode("utf-8", "replace")

    caps = device_caps if capabilities & CAP_DEVICE_CAPS else capabilities
    return VideoNode(index, path, text(card), text(driver), text(bus), caps)


def node_index(path: Path) -> int:
    """N of the ``/dev/videoN`` that ``path`` is or links to (a stable ``/dev/v4l/by-id/...`` name), else -1."""
    number = path.resolve().name.removeprefix("video")
    return int(number) if number.isdigit() else -1


def query_node(path: Path) -> VideoNode:
    """Ask the node what it is; raises :class:`OSError` (``ENOTTY``: not a V4L2 device at all).

    Only a V4L2 node (a character device of major 81) is opened: opening another device read-write can act on
    it (a serial port resets the board behind it, ``/dev/watchdog`` arms the watchdog).
    """
    info = os.stat(path)
    if not stat.S_ISCHR(info.st_mode) or os.major(info.st_rdev) != VIDEO_MAJOR:
        raise OSError(errno.ENOTTY, "not a V4L2 device node", str(path))
    fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)  # FFmpeg opens it read-write too; nothing streams until asked
    try:
        raw = bytearray(_CAPABILITY.size)
        fcntl.ioctl(fd, VIDIOC_QUERYCAP, raw)
    finally:
        os.close(fd)
    return decode_capability(bytes(raw), node_index(path), path)


def streaming_elsewhere(node: VideoNode) -> bool:
    """Whether another program holds the camera's capture queue (it streams from it, e.g. a video call), so that
    FFmpeg's open would fail with EBUSY, which it does only after the model has loaded.

    Asking for zero buffers is how a V4L2 program hands its buffers back. From a new file handle on a queue nobody
    holds it changes nothing; on a queue another handle holds, the kernel answers EBUSY: vb2's queue owner
    (``vb2_ioctl_reqbufs``), and uvcvideo's streaming privilege before it moved to vb2's helpers. A driver that
    answers anything else (no such ioctl, no memory-mapped buffers) is taken as free: FFmpeg's open then says.
    """
    request = bytearray(_REQUEST_BUFFERS.pack(0, node.buffer_type, MEMORY_MMAP, 0, 0))
    fd = os.open(node.path, os.O_RDWR | os.O_NONBLOCK)
    try:
        fcntl.ioctl(fd, VIDIOC_REQBUFS, request)
    except OSError as exc:
        return exc.errno == errno.EBUSY
    finally:
        os.close(fd)
    return False


def holders(path: Path, proc: Path = Path("/proc")) -> list[tuple[int, str]]:
    """The processes that hold ``path`` open, as (pid, name), by pid: what ``fuser`` finds, for the processes this
    user may look into (all of them as root). This process is left out."""
    target = os.path.realpath(path)
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if not any(_link(fd) == target for fd in (entry / "fd").iterdir()):
                continue
            name = (entry / "comm").read_text().strip()
        except OSError:  # another user's process, or one that ended meanwhile
            continue
        found.append((int(entry.name), name))
    return sorted(found)


def _link(fd: Path) -> str | None:
    """What the descriptor ``fd`` (``/proc/PID/fd/N``) refers to, or None when it was closed since it was listed: a
    program streaming from a camera opens and closes sockets and files all the while."""
    try:
        return os.readlink(fd)
    except OSError:
        return None


def process_names(pids: list[int], proc: Path = Path("/proc")) -> list[tuple[int, str]]:
    """(pid, name) of each of ``pids`` ("?" for one that ended meanwhile)."""
    named = []
    for pid in pids:
        try:
            named.append((pid, (proc / str(pid) / "comm").read_text().strip()))
        except OSError:
            named.append((pid, "?"))
    return named


def held_by(found: list[tuple[int, str]], nodes: str) -> str:
    """Who holds a device, as words for an error: the processes ``found``, else how to find them (``fuser`` sees
    other users' processes as root)."""
    if not found:
        return f"`fuser -v {nodes}` names it"
    return "held by " + ", ".join(f"{name} (pid {pid})" for pid, name in found)


def camera_held_by(path: Path) -> str:
    """Who holds the camera at ``path``, as words for an error (see :func:`held_by`)."""
    return held_by(holders(path), str(path))


def pcm_held_by(pids: list[int]) -> str:
    """Who records from a sound card's capture device, the ``pids`` :func:`pcm_holders` found, as words."""
    return held_by(process_names(pids), "/dev/snd/*")


def why_not_a_camera(node: VideoNode) -> str:
    """Why ``node`` gives no pictures, as words that follow its name."""
    name = f" of {node.card!r}" if node.card else ""
    if node.driver == "v4l2 loopback" and not node.caps & CAP_VIDEO_CAPTURE:  # exclusive_caps: output until written
        return f"is a loopback device{name} no program writes to yet (start its producer, e.g. OBS's virtual camera)"
    if node.caps & CAP_TOUCH:
        return f"is a touch sensor{name}, not a camera"
    if node.driver in ISP_DRIVERS:
        return (f"is an output of the image signal processor{name}, which gives pictures only for those fed to it, "
                "not a camera")
    if node.media_controller:
        return (f"is a stage of a media-controller pipeline{name} (a camera module's raw sensor receiver or an ISP), "
                "which gives pictures once libcamera sets the pipeline up, and FFmpeg does not: read a Raspberry "
                "Pi camera module through `rpicam-vid -t 0 --inline -o - | migr-rt run --source -`, or another "
                "board's through a libcamera program writing to stdout")
    if node.caps & (CAP_VIDEO_M2M | CAP_VIDEO_M2M_MPLANE):
        return f"is a memory-to-memory device{name} (a hardware codec or scaler), not a camera"
    if node.caps & CAP_META_CAPTURE and not node.caps & CAP_VIDEO_CAPTURE:
        return (f"is the metadata node{name}, not its picture (a UVC camera has two nodes, /dev/videoN for the "
                "picture and the next one for metadata)")
    if node.caps & CAP_VIDEO_OUTPUT and not node.caps & CAP_VIDEO_CAPTURE:
        return f"is a video output{name}, not a camera"
    if not node.caps & CAP_VIDEO_CAPTURE:
        return f"captures no video{name} (its V4L2 capabilities are 0x{node.caps:08x})"
    return f"cannot stream{name} (FFmpeg's v4l2 input needs streaming I/O, and the driver offers only read())"


def _open_problem(exc: OSError) -> str:
    """Why a node did not answer ``VIDIOC_QUERYCAP``, as words that follow its name."""
    if exc.errno in (errno.ENOTTY, errno.EINVAL):
        return "is not a V4L2 video device"
    if exc.errno in (errno.ENODEV, errno.ENXIO):
        return "does not answer (unplugged, or its driver is gone)"
    if exc.errno == errno.EBUSY:
        return "is busy (another program holds it)"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "cannot be opened by this user (add the user to the 'video' group)"
    return f"cannot be opened ({exc.strerror or exc})"


def capture_problem(path: Path) -> str | None:
    """Why ``path`` cannot be read as a camera, as words that follow its name, or None if it can."""
    try:
        node = query_node(path)
        if not node.is_camera:
            return why_not_a_camera(node)
        busy = streaming_elsewhere(node)
    except OSError as exc:
        return _open_problem(exc)
    return f"is busy: another program is streaming from it ({camera_held_by(path)})" if busy else None


def _node_paths(dev: Path) -> list[Path]:
    """``dev/videoN`` by N."""
    return sorted((path for path in dev.glob("video*") if path.name[5:].isdigit()), key=lambda p: int(p.name[5:]))


def scan(dev: Path = Path("/dev")) -> tuple[list[VideoNode], list[tuple[Path, str]]]:
    """Every ``videoN`` under ``dev``, by N: the nodes that answered, and the others with why they did not (not
    readable by this user, not V4L2, unplugged meanwhile)."""
    answered, silent = [], []
    for path in _node_paths(dev):
        try:
            answered.append(query_node(path))
        except OSError as exc:
            silent.append((path, _open_problem(exc)))
    return answered, silent


def video_nodes(dev: Path = Path("/dev")) -> list[VideoNode]:
    """Every V4L2 node under ``dev`` that answers, by index (cameras and the rest)."""
    return scan(dev)[0]


def cameras(dev: Path = Path("/dev")) -> list[VideoNode]:
    """The nodes ``--camera N`` can read."""
    return [node for node in video_nodes(dev) if node.is_camera]


def stable_names(dev: Path = Path("/dev")) -> dict[Path, Path]:
    """Each node's stable name: udev's link under ``v4l/by-id`` (the device's USB identity), else ``v4l/by-path``
    (the port it is plugged into). ``/dev/videoN`` numbers follow the order devices were found at boot."""
    names: dict[Path, Path] = {}
    for folder in ("by-path", "by-id"):  # by-id last: it wins
        for link in sorted((dev / "v4l" / folder).glob("*")):
            try:
                names[link.resolve(strict=True)] = link
            except OSError:
                continue  # a link whose device is gone
    return names


def describe_cameras(dev: Path = Path("/dev")) -> str:
    """One clause naming the cameras there are, for an error about one that is not."""
    found = cameras(dev)
    if not found:
        return "no V4L2 camera is found on this machine"
    return "cameras here: " + ", ".join(f"--camera {node.index} ({node.card or node.path})" for node in found)


@dataclass(frozen=True)
class Microphone:
    """One ALSA capture PCM, as ``--mic`` takes it."""

    spec: str  #: e.g. "alsa:plughw:CARD=C920,DEV=0"
    card: str  #: the card's name, e.g. "HD Pro Webcam C920"
    name: str  #: the PCM's name, e.g. "USB Audio"
    bus: str = ""  #: a USB card's port, e.g. "usb-0000:00:14.0-2": a webcam's camera node names the same one


_CARD_LINE = re.compile(r"^\s*(\d+)\s+\[(\S+)\s*\]:\s*(.*?)\s+-\s+(.*?)\s*$")
_PCM_LINE = re.compile(r"^(\d+)-(\d+):\s*([^:]*?)\s*:\s*([^:]*?)\s*:(.*)$")


def microphones(asound: Path = Path("/proc/asound")) -> list[Microphone]:
    """The sound cards' capture PCMs, from ``cards`` and ``pcm`` under ``asound`` (empty without sound cards)."""
    try:
        cards_text = (asound / "cards").read_text()
        pcm_text = (asound / "pcm").read_text()
    except OSError:
        return []
    cards = {}  # number -> (id, name, USB port)
    last = None
    for line in cards_text.splitlines():
        match = _CARD_LINE.match(line)
        if match:
            last = int(match[1])
            cards[last] = (match[2], match[4] or match[3], "")
        elif last is not None:  # the long name: "HD Pro Webcam C920 at usb-0000:00:14.0-2, high speed"
            port = re.search(r" at (usb-[^,\s]+)", line)
            if port:
                cards[last] = (*cards[last][:2], port[1])
    found = []
    for line in pcm_text.splitlines():
        match = _PCM_LINE.match(line)
        if not match or not re.search(r"\bcapture\s+\d+", match[5]):
            continue
        card, device = int(match[1]), int(match[2])
        card_id, card_name, bus = cards.get(card, (str(card), f"card {card}", ""))  # CARD= takes a number as well
        found.append(Microphone(f"alsa:plughw:CARD={card_id},DEV={device}", card_name, match[3], bus))
    return found


def hardware_pcm(device: str) -> tuple[str, int, int | None] | None:
    """(card, device, subdevice or None) that an ALSA ``hw:``/``plughw:`` name opens, else None (``default``,
    ``dsnoop``, a name from the configuration: shared or resolved elsewhere).

    The forms are ALSA's: positional ``hw:1,0,0`` or named ``hw:CARD=C920,DEV=0``; the card is its number or
    its id, the device defaults to 0.
    """
    kind, _, args = device.partition(":")
    if kind not in ("hw", "plughw") or not args:
        return None
    card, pcm, sub = None, "0", None
    for position, arg in enumerate(args.split(",")):
        key, equals, value = arg.partition("=")
        key, value = (key.strip().upper(), value) if equals else (("CARD", "DEV", "SUBDEV")[min(position, 2)], arg)
        value = value.strip().strip("'\"")
        if key == "CARD":
            card = value
        elif key == "DEV":
            pcm = value
        elif key == "SUBDEV":
            sub = value
    if (not re.fullmatch(r"\w+", card or "", re.ASCII) or not re.fullmatch(r"\d+", pcm, re.ASCII)
            or (sub is not None and not re.fullmatch(r"-?\d+", sub, re.ASCII))):
        return None  # not a name ALSA would open (it refuses such a name itself)
    sub_number = int(sub) if sub is not None and int(sub) >= 0 else None  # -1: any free one
    return card, int(pcm), sub_number


def pcm_holders(device: str, asound: Path = Path("/proc/asound")) -> list[int] | None:
    """The pids recording from the ALSA capture device ``device`` when every one of its substreams is taken (so that
    opening it fails with EBUSY), else None: free, shared (``dsnoop``, ``default``), or not found here.

    A ``hw``/``plughw`` PCM is one program's at a time. On a desktop a sound server (PipeWire, PulseAudio) holds a
    card's PCM while any application records from it. ``/proc/asound/<card>/pcm<D>c/sub<S>/status`` reads
    "closed" when a substream is free and names its ``owner_pid`` when not; reading it opens nothing.
    """
    address = hardware_pcm(device)
    if address is None:
        return None
    card, pcm, sub = address
    folder = asound / (f"card{card}" if card.isdigit() else card) / f"pcm{pcm}c"
    subs = [folder / f"sub{sub}"] if sub is not None else sorted(folder.glob("sub*"))
    pids = []
    for substream in subs:
        try:
            status = (substream / "status").read_text()
        except OSError:
            return None
        if status.startswith("closed"):
            return None
        owner = re.search(r"^owner_pid\s*:\s*(\d+)", status, re.MULTILINE)
        # 0: a process outside this PID namespace (this runs in a container, the sound server on the host)
        if owner and int(owner[1]) > 0 and int(owner[1]) not in pids:
            pids.append(int(owner[1]))
    return pids if subs else None


def microphone_of(camera: VideoNode, found: list[Microphone]) -> Microphone | None:
    """The microphone built into ``camera`` (a USB webcam's sound card sits on the same USB port), if any.

    A webcam's own microphone hears the person the camera sees, with no clock between them to drift; a user
    who asks for a camera alone may not know the webcam has one.
    """
    if not camera.bus.startswith("usb-"):
        return None
    return next((mic for mic in found if mic.bus == camera.bus), None)


def mic_suggestion(camera: VideoNode, found: list[Microphone]) -> str | None:
    """What to add for sound when ``camera`` is read alone: its own microphone, else the ones there are."""
    own = microphone_of(camera, found)
    if own is not None:
        return f"its own microphone is --mic {own.spec} ({own.card})"
    if not found:
        return None
    listed = ", ".join(f"--mic {mic.spec} ({mic.card})" for mic in found[:3])
    return f"microphones here: {listed}" + (", ..." if len(found) > 3 else "")
