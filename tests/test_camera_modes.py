"""Which mode a camera is asked for (migr_rt.runtime.camera_modes).

No camera exists on CI machines. The kernel's answers to VIDIOC_ENUM_FMT, VIDIOC_ENUM_FRAMESIZES and
VIDIOC_ENUM_FRAMEINTERVALS are given here as the bytes it fills in (linux/videodev2.h's layouts, checked against
the header by test_devices.py where a C compiler is at hand), from the mode lists `v4l2-ctl --list-formats-ext`
prints for real cameras.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import struct
from pathlib import Path

import pytest

from migr_rt.runtime import camera_modes, devices
from migr_rt.runtime.camera_modes import CaptureMode, capture_modes, choose_mode

# Logitech C920 (uvcvideo): YUYV is slow at large sizes over USB 2, MJPG keeps 30 fps up to 1080p.
C920 = {
    "YUYV": [((640, 480), (30, 24, 20, 15, 10, 7.5, 5)), ((160, 90), (30,)), ((320, 240), (30,)),
             ((640, 360), (30,)), ((800, 600), (24,)), ((960, 720), (15,)), ((1280, 720), (10,)),
             ((1920, 1080), (5,)), ((2304, 1536), (2,))],
    "MJPG": [((640, 480), (30, 24, 20, 15)), ((160, 90), (30,)), ((640, 360), (30,)), ((1280, 720), (30,)),
             ((1920, 1080), (30,))],
    "H264": [((640, 480), (30,)), ((1920, 1080), (30,))],
}
# A cheap "1080p" webcam whose first (FFmpeg's default) mode is full-HD MJPEG.
CHEAP = {
    "MJPG": [((1920, 1080), (30,)), ((1280, 720), (30,)), ((640, 480), (30,))],
    "YUYV": [((1920, 1080), (5,)), ((1280, 720), (10,)), ((640, 480), (30,))],
}


class FakeCameraKernel:
    """The kernel's side of the three enumerations for one camera: ``formats`` maps a FourCC to its sizes, each
    with its frame rates (discrete), or to ``("stepwise", ...)`` for a range of sizes with a range of intervals."""

    def __init__(self, formats: dict, stepwise: dict | None = None) -> None:
        self.formats, self.stepwise, self.asked = formats, stepwise or {}, []

    def __call__(self, fd, request, arg=0, mutate=True):
        codes = list(self.formats) + list(self.stepwise)
        if request == camera_modes.VIDIOC_ENUM_FMT:
            index, kind = struct.unpack_from("<II", arg)
            self.asked.append(kind)
            if index >= len(codes):
                raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
            struct.pack_into("<III32sII", arg, 0, index, kind, 0, codes[index].encode(), code(codes[index]), 0)
        elif request == camera_modes.VIDIOC_ENUM_FRAMESIZES:
            index, pixel = struct.unpack_from("<II", arg)
            fourcc = camera_modes.fourcc(pixel)
            if fourcc in self.stepwise:
                if index > 0:
                    raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
                struct.pack_into("<III6I", arg, 0, index, pixel, camera_modes.FRMSIZE_STEPWISE,
                                 *self.stepwise[fourcc]["sizes"])
                return 0
            sizes = self.formats[fourcc]
            if index >= len(sizes):
                raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
            struct.pack_into("<III2I", arg, 0, index, pixel, camera_modes.FRMSIZE_DISCRETE, *sizes[index][0])
        elif request == camera_modes.VIDIOC_ENUM_FRAMEINTERVALS:
            index, pixel, width, height = struct.unpack_from("<IIII", arg)
            fourcc = camera_modes.fourcc(pixel)
            if fourcc in self.stepwise:
                if index > 0:
                    raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
                low, high = self.stepwise[fourcc]["fps"]  # intervals 1/high .. 1/low, continuous
                struct.pack_into("<IIIII6I", arg, 0, index, pixel, width, height, 2, 1, high, 1, low, 1, 1)
                return 0
            rates = dict(self.formats[fourcc])[(width, height)]
            if index >= len(rates):
                raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
            numerator, denominator = (2, int(rates[index] * 2)) if rates[index] % 1 else (1, int(rates[index]))
            struct.pack_into("<IIIII2I", arg, 0, index, pixel, width, height, camera_modes.FRMIVAL_DISCRETE,
                             numerator, denominator)
        else:
            raise OSError(errno.ENOTTY, os.strerror(errno.ENOTTY))
        return 0


def code(fourcc: str) -> int:
    return int.from_bytes(fourcc.encode(), "little")


@pytest.fixture
def node(tmp_path):
    path = tmp_path / "video0"
    path.touch()
    return path


def test_every_mode_a_camera_lists_is_read_with_its_fastest_rate(node, monkeypatch):
    kernel = FakeCameraKernel(C920)
    monkeypatch.setattr(fcntl, "ioctl", kernel)
    modes = capture_modes(node, devices.BUF_TYPE_VIDEO_CAPTURE)
    assert len(modes) == sum(len(sizes) for sizes in C920.values())
    assert modes[0] == CaptureMode("YUYV", 640, 480, 30.0)
    assert CaptureMode("YUYV", 1920, 1080, 5.0) in modes and CaptureMode("MJPG", 1920, 1080, 30.0) in modes
    assert set(kernel.asked) == {devices.BUF_TYPE_VIDEO_CAPTURE}


@pytest.mark.parametrize("camera, fps, chosen", [
    # the smallest picture at least 640 wide that keeps 25 fps, in MJPEG (a fifteenth of YUYV's USB bandwidth, and
    # as cheap to turn into RGB), not the camera's first mode or the 5 fps full HD
    (C920, 25, CaptureMode("MJPG", 640, 360, 30.0)),
    # a camera whose own first mode is full-HD MJPEG: 640x480 MJPEG
    (CHEAP, 25, CaptureMode("MJPG", 640, 480, 30.0)),
    # faster than any mode: the fastest there is
    (CHEAP, 60, CaptureMode("MJPG", 640, 480, 30.0)),
])
def test_the_smallest_mode_that_keeps_up_is_chosen(node, monkeypatch, camera, fps, chosen):
    monkeypatch.setattr(fcntl, "ioctl", FakeCameraKernel(camera))
    assert choose_mode(capture_modes(node, devices.BUF_TYPE_VIDEO_CAPTURE), fps) == chosen
    assert chosen.options == (("video_size", f"{chosen.width}x{chosen.height}"), ("input_format", "mjpeg"))


def test_a_camera_only_fast_in_mjpeg_is_read_in_mjpeg_and_a_small_one_at_its_largest():
    raw_only = [CaptureMode("YUYV", 640, 480, 30.0), CaptureMode("NV12", 640, 480, 30.0)]
    assert choose_mode(raw_only, 25).options[1] == ("input_format", "yuyv422")  # no MJPEG: uncompressed
    slow_raw = [CaptureMode("YUYV", 640, 480, 10.0), CaptureMode("MJPG", 640, 480, 30.0),
                CaptureMode("MJPG", 1280, 720, 30.0)]
    assert choose_mode(slow_raw, 25) == CaptureMode("MJPG", 640, 480, 30.0)
    assert choose_mode(slow_raw, 25).options[1] == ("input_format", "mjpeg")
    small = [CaptureMode("YUYV", 320, 240, 30.0), CaptureMode("YUYV", 352, 288, 30.0)]
    assert choose_mode(small, 25) == CaptureMode("YUYV", 352, 288, 30.0)
    assert choose_mode([CaptureMode("Y10B", 640, 480, 30.0)], 25) is None  # nothing FFmpeg reads: left as it is
    assert choose_mode([], 25) is None


def test_a_camera_that_states_ranges_is_asked_for_a_common_size_within_them(node, monkeypatch):
    # The Raspberry Pi's legacy camera driver (bcm2835-v4l2): sizes 32..2592 x 32..1944 in steps of 2, any rate up
    # to 90 fps
    kernel = FakeCameraKernel({}, {"YU12": {"sizes": (32, 2592, 2, 32, 1944, 2), "fps": (1, 90)}})
    monkeypatch.setattr(fcntl, "ioctl", kernel)
    modes = capture_modes(node, devices.BUF_TYPE_VIDEO_CAPTURE)
    assert [(m.width, m.height) for m in modes] == list(camera_modes.COMMON_SIZES)
    assert {m.fps for m in modes} == {90.0}
    assert choose_mode(modes, 25) == CaptureMode("YU12", 640, 360, 90.0)


def test_camera_input_asks_ffmpeg_for_the_chosen_mode(node, monkeypatch):
    from migr_rt.runtime.sources import camera_input

    webcam = devices.decode_capability(
        struct.pack("<16s32s32sIII12x", b"uvcvideo", b"HD Pro Webcam C920", b"usb-1", 0,
                    devices.CAP_VIDEO_CAPTURE | devices.CAP_STREAMING, 0), 0, node)
    monkeypatch.setattr(devices, "query_node", lambda path: webcam)
    kernel = FakeCameraKernel(CHEAP)
    monkeypatch.setattr(fcntl, "ioctl", kernel)
    spec = camera_input(0, fps=25, dev=node.parent)
    assert dict(spec.options) == {"framerate": "25", "video_size": "640x480", "input_format": "mjpeg"}
    monkeypatch.setattr(fcntl, "ioctl", FakeCameraKernel({"Y10B": [((640, 480), (30,))]}))
    assert dict(camera_input(0, fps=25, dev=node.parent).options) == {"framerate": "25"}  # as it is


def test_a_camera_that_answers_no_enumeration_is_read_in_its_own_mode(tmp_path):
    # /dev/null answers every V4L2 question with ENOTTY: no modes, so nothing is asked for
    assert capture_modes(Path("/dev/null"), devices.BUF_TYPE_VIDEO_CAPTURE) == []


def test_devices_command_says_which_mode_each_camera_is_read_in(node, monkeypatch):
    import json
    from functools import partial

    from click.testing import CliRunner

    from migr_rt.cli import main

    webcam = devices.decode_capability(
        struct.pack("<16s32s32sIII12x", b"uvcvideo", b"HD Pro Webcam C920", b"usb-1", 0,
                    devices.CAP_VIDEO_CAPTURE | devices.CAP_STREAMING, 0), 0, node)
    monkeypatch.setattr(devices, "query_node", lambda path: webcam)
    monkeypatch.setattr(devices, "scan", partial(devices.scan, node.parent))
    monkeypatch.setattr(devices, "stable_names", partial(devices.stable_names, node.parent))
    kernel = FakeCameraKernel(C920)

    def answer(fd, request, arg=0, mutate=True):  # the camera's queue is free
        return 0 if request == devices.VIDIOC_REQBUFS else kernel(fd, request, arg, mutate)

    monkeypatch.setattr(fcntl, "ioctl", answer)
    listed = json.loads(CliRunner().invoke(main, ["devices", "--json"]).output)
    assert [(c["camera"], c["mode"]) for c in listed["cameras"]] == [(0, "640x360 MJPG at 30 fps")]
    assert "read as 640x360 MJPG at 30 fps" in CliRunner().invoke(main, ["devices"]).output


def test_a_size_asked_for_is_read_in_the_format_that_keeps_up_and_one_the_camera_lacks_is_refused(node, monkeypatch):
    from migr_rt.runtime.sources import SourceError, camera_input, parse_source

    webcam = devices.decode_capability(
        struct.pack("<16s32s32sIII12x", b"uvcvideo", b"USB Camera", b"usb-1", 0,
                    devices.CAP_VIDEO_CAPTURE | devices.CAP_STREAMING, 0), 0, node)
    monkeypatch.setattr(devices, "query_node", lambda path: webcam)
    monkeypatch.setattr(fcntl, "ioctl", FakeCameraKernel(CHEAP))
    # sharper crops: 1280x720, which this camera gives at 30 fps in MJPEG only (YUYV: 10 fps)
    assert dict(camera_input(0, fps=25, dev=node.parent, size=(1280, 720)).options) == {
        "framerate": "25", "video_size": "1280x720", "input_format": "mjpeg"}
    assert dict(parse_source(camera=str(node), camera_size=(1280, 720)).inputs[0].options)["video_size"] == \
        "1280x720"
    with pytest.raises(SourceError) as caught:
        camera_input(0, fps=25, dev=node.parent, size=(1024, 768))
    assert str(caught.value) == f"camera 0: {node} gives no 1024x768 picture; it gives 640x480, 1280x720, 1920x1080"


def test_run_refuses_a_camera_size_that_is_not_one_or_not_for_a_camera(tmp_path):
    from click.testing import CliRunner

    from migr_rt.cli import main

    bad = CliRunner().invoke(main, ["run", "--camera", "0", "--camera-size", "1280"])
    assert bad.exit_code == 2 and "'1280': a picture size is WIDTHxHEIGHT, e.g. 1280x720" in bad.output
    from migr_rt.cli import SizeParam

    assert SizeParam().convert("1280X720", None, None) == (1280, 720)
    assert SizeParam().convert(" 640x480 ", None, None) == (640, 480)
    for text in ("0x0", "640x480x3", "\u00b2x2", "640x\u00b9"):  # "²" passes str.isdigit, not int()
        bad = CliRunner().invoke(main, ["run", "--camera", "0", "--camera-size", text])
        assert bad.exit_code == 2 and f"{text!r}: a picture size is WIDTHxHEIGHT" in bad.output, (text, bad)
    not_camera = CliRunner().invoke(main, ["run", "--source", "demo", "--camera-size", "1280x720", "--checkpoint",
                                           str(tmp_path / "no-model")])
    assert not_camera.exit_code == 1
    assert "--camera-size is for a camera (--camera N or a device path)" in not_camera.output


@pytest.mark.skipif(not os.access("/dev/shm", os.W_OK), reason="needs a writable /dev/shm")
def test_a_camera_size_for_a_file_under_dev_is_refused_not_ignored(tmp_path):
    # A file kept in /dev/shm (a RAM disk) is a file source, not a camera: its size is its own
    import uuid

    from click.testing import CliRunner

    from migr_rt.cli import main
    from migr_rt.runtime.sources import SourceError, demo_clip, parse_source

    clip = Path("/dev/shm") / f"migr-rt-test-{uuid.uuid4().hex}.mp4"
    shutil.copy(demo_clip(), clip)
    try:
        with pytest.raises(SourceError, match="--camera-size is for a camera"):
            parse_source(str(clip), camera_size=(1280, 720))
        refused = CliRunner().invoke(main, ["run", "--source", str(clip), "--camera-size", "1280x720",
                                            "--checkpoint", str(tmp_path / "no-model")])
        assert refused.exit_code == 1 and "--camera-size is for a camera" in refused.output, refused.output
    finally:
        clip.unlink()


def test_a_driver_that_ignores_the_index_is_read_to_its_first_repeat_not_16_million_times(node, monkeypatch):
    # A driver that ignores the index answers every VIDIOC_ENUM_* with its first entry and never ends a list
    kernel = FakeCameraKernel({"YUYV": [((640, 480), (30,))]})

    def first_entry_forever(fd, request, arg=0, mutate=True):
        kernel.calls = getattr(kernel, "calls", 0) + 1
        if kernel.calls > 10_000:  # each list cut off at 256 entries, three deep: 16.8 million questions
            raise AssertionError("still asking")
        [index] = struct.unpack_from("<I", arg)
        struct.pack_into("<I", arg, 0, 0)  # whatever is asked, entry 0 is given, under the index asked for
        result = kernel(fd, request, arg, mutate)
        struct.pack_into("<I", arg, 0, index)
        return result

    monkeypatch.setattr(fcntl, "ioctl", first_entry_forever)
    assert capture_modes(node, devices.BUF_TYPE_VIDEO_CAPTURE) == [CaptureMode("YUYV", 640, 480, 30.0)]
    assert kernel.calls <= 10


def test_a_camera_with_only_jpeg_is_read_in_its_own_mode():
    # FFmpeg's input_format=mjpeg asks for MJPG first; a JPEG-only driver answers with its own default format and
    # size, which FFmpeg keeps when it goes on to JPEG: the size asked for would be lost
    assert choose_mode([CaptureMode("JPEG", 640, 480, 30.0), CaptureMode("JPEG", 1280, 720, 30.0)], 25) is None


def test_a_range_holding_no_common_size_offers_its_largest(node, monkeypatch):
    # a machine-vision sensor read as a window of 2048x1536 up to its full 2592x1944, in steps of 16
    monkeypatch.setattr(fcntl, "ioctl", FakeCameraKernel({}, {"GREY": {"sizes": (2048, 2592, 16, 1536, 1944, 8),
                                                                       "fps": (1, 60)}}))
    assert capture_modes(node, devices.BUF_TYPE_VIDEO_CAPTURE) == [CaptureMode("GREY", 2592, 1944, 60.0)]
