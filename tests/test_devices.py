"""Cameras and microphones as the kernel lists them (migr_rt.runtime.devices) and how `run` refuses a wrong one.

No V4L2 device exists on CI machines. What the kernel answers for a non-V4L2 node (ENOTTY) is asked of the real
kernel through /dev/null; the answers of real cameras are the bytes VIDIOC_QUERYCAP fills in, packed here in the
kernel's layout (linux/videodev2.h) with the capability bits a UVC webcam, its metadata node and a codec report.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from migr_rt.runtime import devices
from migr_rt.runtime.devices import (
    CAP_DEVICE_CAPS, CAP_META_CAPTURE, CAP_STREAMING, CAP_VIDEO_CAPTURE, CAP_VIDEO_M2M_MPLANE, decode_capability,
    microphones,
)
from migr_rt.runtime.sources import SourceError, camera_input, mic_input

EXT_PIX_FORMAT = 0x00200000
#: What uvcvideo reports for the whole device (both nodes say this in ``capabilities``).
UVC_DEVICE = CAP_VIDEO_CAPTURE | CAP_META_CAPTURE | CAP_STREAMING | EXT_PIX_FORMAT | CAP_DEVICE_CAPS


def querycap(card: str, capabilities: int, device_caps: int, driver: str = "uvcvideo") -> bytes:
    """struct v4l2_capability as the kernel fills it in (104 bytes, NUL-padded strings)."""
    raw = struct.pack("<16s32s32sIII3I", driver.encode(), card.encode(), b"usb-0000:00:14.0-8", 0x060800,
                      capabilities, device_caps, 0, 0, 0)
    assert len(raw) == 104
    return raw


def test_a_uvc_cameras_picture_node_is_a_camera_and_its_metadata_node_is_not():
    picture = decode_capability(querycap("Integrated Camera: Integrated C", UVC_DEVICE,
                                         CAP_VIDEO_CAPTURE | CAP_STREAMING | EXT_PIX_FORMAT), 0, Path("/dev/video0"))
    # FFmpeg checks ``capabilities``, which has VIDEO_CAPTURE on both nodes: the node's own device_caps decide
    metadata = decode_capability(querycap("Integrated Camera: Integrated C", UVC_DEVICE,
                                          CAP_META_CAPTURE | CAP_STREAMING | EXT_PIX_FORMAT), 1, Path("/dev/video1"))
    assert picture.is_camera and picture.card == "Integrated Camera: Integrated C" and picture.driver == "uvcvideo"
    assert picture.bus == "usb-0000:00:14.0-8"
    assert not metadata.is_camera
    assert "metadata node of 'Integrated Camera: Integrated C'" in devices.why_not_a_camera(metadata)


def picture_node():
    return decode_capability(querycap("Integrated Camera", UVC_DEVICE, CAP_VIDEO_CAPTURE | CAP_STREAMING), 0,
                             Path("/dev/video0"))


def test_a_codec_node_is_not_a_camera_and_an_old_driver_without_node_caps_is_judged_by_the_device():
    codec = decode_capability(querycap("bcm2835-codec-decode", CAP_VIDEO_M2M_MPLANE | CAP_STREAMING | CAP_DEVICE_CAPS,
                                       CAP_VIDEO_M2M_MPLANE | CAP_STREAMING, "bcm2835-codec"), 10, Path("/dev/video10"))
    assert not codec.is_camera and "hardware codec or scaler" in devices.why_not_a_camera(codec)
    old = decode_capability(querycap("old cam", CAP_VIDEO_CAPTURE | CAP_STREAMING, 0, "gspca"), 0, Path("/dev/video0"))
    assert old.is_camera  # no DEVICE_CAPS flag: device_caps (0) is not filled in and must not be read
    touch = decode_capability(querycap("sur40", CAP_VIDEO_CAPTURE | CAP_STREAMING | devices.CAP_TOUCH, 0, "sur40"), 1,
                              Path("/dev/video1"))  # a touch sensor streams its pressure map as "video"
    assert not touch.is_camera and devices.why_not_a_camera(touch) == "is a touch sensor of 'sur40', not a camera"
    receiver = decode_capability(querycap("rp1-cfe", CAP_VIDEO_CAPTURE | CAP_STREAMING | devices.CAP_IO_MC
                                          | CAP_DEVICE_CAPS, CAP_VIDEO_CAPTURE | CAP_STREAMING | devices.CAP_IO_MC,
                                          "rp1-cfe"), 0, Path("/dev/video0"))  # a Pi 5's camera-module receiver
    # raw Bayer behind links libcamera enables (rp1-cfe sets IO_MC on every node): FFmpeg cannot read it
    assert not receiver.is_camera and receiver.media_controller
    assert "media-controller pipeline of 'rp1-cfe'" in devices.why_not_a_camera(receiver)
    assert "rpicam-vid -t 0 --inline -o - | migr-rt run --source -" in devices.why_not_a_camera(receiver)
    assert not picture_node().media_controller
    # the ISPs that flag their outputs as plain capture: the Pi 5's back end (multi-planar) and the Pi 4's firmware ISP
    for driver, caps in (("pispbe", devices.CAP_VIDEO_CAPTURE_MPLANE), ("bcm2835-isp", CAP_VIDEO_CAPTURE)):
        isp = decode_capability(querycap(driver, caps | CAP_STREAMING | CAP_DEVICE_CAPS, caps | CAP_STREAMING,
                                         driver), 20, Path("/dev/video20"))
        assert not isp.is_camera
        assert devices.why_not_a_camera(isp).startswith(f"is an output of the image signal processor of {driver!r}")
    no_streaming = decode_capability(querycap("read-only cam", CAP_VIDEO_CAPTURE, 0), 0, Path("/dev/video0"))
    assert not no_streaming.is_camera and "streaming I/O" in devices.why_not_a_camera(no_streaming)


def test_nodes_ffmpeg_reads_are_not_refused_a_loopback_with_a_writer_and_a_multi_planar_capture():
    # FFmpeg's v4l2 input asks only for VIDEO_CAPTURE (or, since it reads the multi-planar API,
    # VIDEO_CAPTURE_MPLANE) and STREAMING in ``capabilities`` (libavdevice/v4l2.c device_open).
    # v4l2loopback before 0.13 adds VIDEO_M2M to every answer (v4l2loopback.c vidioc_querycap); with a writer
    # attached (OBS's virtual camera) it captures: 0x85208001 / 0x05208001.
    loop = CAP_VIDEO_CAPTURE | devices.CAP_VIDEO_M2M | CAP_STREAMING | 0x01000000 | EXT_PIX_FORMAT
    obs = decode_capability(querycap("OBS Virtual Camera", loop | CAP_DEVICE_CAPS, loop, "v4l2 loopback"), 10,
                            Path("/dev/video10"))
    assert obs.is_camera
    # the same device before a writer attaches (exclusive_caps=1): an output only, and said to wait for one
    idle = loop & ~CAP_VIDEO_CAPTURE | devices.CAP_VIDEO_OUTPUT
    waiting = decode_capability(querycap("OBS Virtual Camera", idle | CAP_DEVICE_CAPS, idle, "v4l2 loopback"), 10,
                                Path("/dev/video10"))
    assert not waiting.is_camera and "no program writes to yet" in devices.why_not_a_camera(waiting)
    # Rockchip's HDMI input (rk_hdmirx) captures through the multi-planar API only: 0x84201000 / 0x04201000
    mplane = devices.CAP_VIDEO_CAPTURE_MPLANE | CAP_STREAMING | EXT_PIX_FORMAT
    hdmirx = decode_capability(querycap("rk_hdmirx", mplane | CAP_DEVICE_CAPS, mplane, "rk_hdmirx"), 0,
                               Path("/dev/video0"))
    assert hdmirx.is_camera


def test_a_camera_index_whose_node_is_not_v4l2_is_refused_by_the_kernels_own_answer(tmp_path):
    os.symlink("/dev/null", tmp_path / "video0")  # a character device that answers VIDIOC_QUERYCAP with ENOTTY
    with pytest.raises(SourceError, match=r"camera 0: .*video0 is not a V4L2 video device; no V4L2 camera is found"
                       ) as caught:
        camera_input(0, dev=tmp_path)
    assert not caught.value.retryable  # no retry makes it a camera
    with pytest.raises(SourceError, match=r"camera 3: .*video3 does not exist \(no V4L2 camera is found on this "
                       r"machine\).*--source demo"):
        camera_input(3, dev=tmp_path)
    assert devices.video_nodes(tmp_path) == []
    assert devices.scan(tmp_path) == ([], [(tmp_path / "video0", "is not a V4L2 video device")])


def test_asking_for_a_metadata_node_names_it_and_the_camera_to_ask_for(tmp_path, monkeypatch):
    # The kernel's answers for a laptop's UVC camera (two nodes) and a USB webcam (two more); the files exist so
    # that the checks before the query (exists, readable) see a device.
    answers = {
        0: querycap("Integrated Camera", UVC_DEVICE, CAP_VIDEO_CAPTURE | CAP_STREAMING),
        1: querycap("Integrated Camera", UVC_DEVICE, CAP_META_CAPTURE | CAP_STREAMING),
        2: querycap("HD Pro Webcam C920", UVC_DEVICE, CAP_VIDEO_CAPTURE | CAP_STREAMING),
        3: querycap("HD Pro Webcam C920", UVC_DEVICE, CAP_META_CAPTURE | CAP_STREAMING),
    }
    for index in answers:
        (tmp_path / f"video{index}").touch()
    (tmp_path / "video-not-a-node").touch()
    def answer(path: Path) -> devices.VideoNode:
        index = devices.node_index(path)
        return decode_capability(answers[index], index, path)

    monkeypatch.setattr(devices, "query_node", answer)
    assert [node.index for node in devices.cameras(tmp_path)] == [0, 2]
    with pytest.raises(SourceError) as caught:
        camera_input(1, dev=tmp_path)
    message = str(caught.value)
    assert message.startswith(f"camera 1: {tmp_path / 'video1'} is the metadata node of 'Integrated Camera'")
    assert "cameras here: --camera 0 (Integrated Camera), --camera 2 (HD Pro Webcam C920)" in message
    assert camera_input(2, dev=tmp_path).target == str(tmp_path / "video2")


ASOUND_CARDS = """\
 0 [PCH            ]: HDA-Intel - HDA Intel PCH
                      HDA Intel PCH at 0xf7f10000 irq 130
 1 [C920           ]: USB-Audio - HD Pro Webcam C920
                      HD Pro Webcam C920 at usb-0000:00:14.0-2, high speed
"""
ASOUND_PCM = """\
00-00: ALC3246 Analog : ALC3246 Analog : playback 1 : capture 1
00-03: HDMI 0 : HDMI 0 : playback 1
01-00: USB Audio : USB Audio : capture 1
"""


def test_microphones_are_the_capture_pcms_named_by_card_id_as_alsa_resolves_them(tmp_path):
    (tmp_path / "cards").write_text(ASOUND_CARDS)
    (tmp_path / "pcm").write_text(ASOUND_PCM)
    found = microphones(tmp_path)
    assert [(m.spec, m.card, m.name, m.bus) for m in found] == [
        ("alsa:plughw:CARD=PCH,DEV=0", "HDA Intel PCH", "ALC3246 Analog", ""),
        ("alsa:plughw:CARD=C920,DEV=0", "HD Pro Webcam C920", "USB Audio", "usb-0000:00:14.0-2"),
    ]  # the HDMI output has no capture
    # each spec is one --mic takes: this machine's ALSA parses the name (it has no such card to open)
    if "alsa" in __import__("av").formats_available:
        for mic in found:
            assert mic_input(mic.spec).target == mic.spec.removeprefix("alsa:")
    assert microphones(tmp_path / "missing") == []


def test_a_webcam_read_without_a_mic_is_pointed_to_its_own_microphone_by_usb_port(tmp_path):
    (tmp_path / "cards").write_text(ASOUND_CARDS)
    (tmp_path / "pcm").write_text(ASOUND_PCM)
    found = microphones(tmp_path)
    webcam = decode_capability(querycap("HD Pro Webcam C920", UVC_DEVICE, CAP_VIDEO_CAPTURE | CAP_STREAMING)
                               .replace(b"usb-0000:00:14.0-8", b"usb-0000:00:14.0-2"), 2, Path("/dev/video2"))
    laptop = decode_capability(querycap("Integrated Camera", UVC_DEVICE, CAP_VIDEO_CAPTURE | CAP_STREAMING), 0,
                               Path("/dev/video0"))  # on port -8, where no sound card is
    assert devices.microphone_of(webcam, found) == found[1]
    assert devices.mic_suggestion(webcam, found) == ("its own microphone is --mic alsa:plughw:CARD=C920,DEV=0 "
                                                     "(HD Pro Webcam C920)")
    assert devices.microphone_of(laptop, found) is None
    assert devices.mic_suggestion(laptop, found) == ("microphones here: --mic alsa:plughw:CARD=PCH,DEV=0 (HDA Intel "
                                                     "PCH), --mic alsa:plughw:CARD=C920,DEV=0 (HD Pro Webcam C920)")
    assert devices.mic_suggestion(laptop, []) is None


def test_devices_command_lists_what_this_machine_has_as_json():
    result = subprocess.run([sys.executable, "-m", "migr_rt.cli", "devices", "--json"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    listed = json.loads(result.stdout)
    assert [c["camera"] for c in listed["cameras"]] == [n.index for n in devices.cameras()]
    assert {m["mic"] for m in listed["microphones"]} >= {m.spec for m in microphones()}
    table = subprocess.run([sys.executable, "-m", "migr_rt.cli", "devices"], capture_output=True, text=True,
                           timeout=120)
    assert table.returncode == 0 and table.stdout.startswith("cameras (run --camera N):")
    assert "microphones (run --mic SPEC):" in table.stdout


def test_run_names_the_microphone_to_add_when_a_webcam_is_read_without_one(tmp_path, monkeypatch):
    from migr_rt.cli_run import _sound_hint
    from migr_rt.runtime.sources import InputSpec, SourceSpec

    (tmp_path / "cards").write_text(ASOUND_CARDS)
    (tmp_path / "pcm").write_text(ASOUND_PCM)
    webcam = querycap("HD Pro Webcam C920", UVC_DEVICE, CAP_VIDEO_CAPTURE | CAP_STREAMING).replace(
        b"usb-0000:00:14.0-8", b"usb-0000:00:14.0-2")
    monkeypatch.setattr(devices, "query_node", lambda path: decode_capability(webcam, devices.node_index(path), path))
    monkeypatch.setattr(devices, "microphones", lambda asound=tmp_path: microphones(tmp_path))
    camera = InputSpec("camera 2 (/dev/video2)", "/dev/video2", "v4l2", live=True, audio=False)
    assert _sound_hint(SourceSpec("camera:2", (camera,))) == (
        "camera 2 (/dev/video2) is analysed without sound (no --mic); its own microphone is --mic "
        "alsa:plughw:CARD=C920,DEV=0 (HD Pro Webcam C920)")
    mic = InputSpec("microphone alsa:default", "default", "alsa", live=True, video=False)
    assert _sound_hint(SourceSpec("camera:2", (camera, mic))) is None  # a microphone is read with it
    assert _sound_hint(SourceSpec("demo", (InputSpec("demo", "demo.mp4"),))) is None


def test_a_camera_is_also_named_by_its_device_path_such_as_its_stable_udev_name(tmp_path):
    # A robot with two webcams cannot rely on /dev/videoN, numbered in the order they were found at boot; udev's
    # /dev/v4l/by-id names stay. Here the "camera" is /dev/null behind such a name: the kernel refuses it as V4L2.
    from migr_rt.runtime.sources import parse_source

    by_id = tmp_path / "v4l" / "by-id"
    by_id.mkdir(parents=True)
    (tmp_path / "video0").touch()
    os.symlink("../../video0", by_id / "usb-046d_HD_Pro_Webcam_C920-video-index0")
    os.symlink("../../video9", by_id / "usb-gone-video-index0")  # unplugged: its link dangles
    assert devices.stable_names(tmp_path) == {(tmp_path / "video0").resolve(): by_id /
                                              "usb-046d_HD_Pro_Webcam_C920-video-index0"}
    link = tmp_path / "usb-fake-video-index0"
    os.symlink("/dev/null", link)
    for source in (str(link), f"camera:{link}"):
        with pytest.raises(SourceError, match=rf"^camera {link} is not a V4L2 video device; "):
            parse_source(source)
    with pytest.raises(SourceError, match=r"camera:front: a camera source is camera:N.* or camera:PATH"):
        parse_source("camera:front")
    result = subprocess.run([sys.executable, "-m", "migr_rt.cli", "run", "--camera", str(link)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 1 and result.stderr.startswith(f"migr-rt run: camera {link} is not a V4L2"), \
        result.stderr
    bad = subprocess.run([sys.executable, "-m", "migr_rt.cli", "run", "--camera", "front"], capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 2 and "a camera is its index N (/dev/videoN) or its device path" in bad.stderr


def test_a_source_longer_than_a_file_name_is_not_taken_for_a_device():
    # Asking whether a source is a device node stats it: a lavfi graph of more than 255 characters before any '/'
    # is a file name too long for the kernel (ENAMETOOLONG), which Path.is_char_device raises instead of answering
    from migr_rt.runtime.sources import parse_source

    graph = "testsrc=size=320x240:rate=25" + ",null" * 60 + "[out0];sine=f=220:r=16000[out1]"
    spec = parse_source(f"lavfi:{graph}")
    assert [(i.format, i.target) for i in spec.inputs] == [("lavfi", graph)]


@pytest.mark.parametrize("input_format, nodes", [("v4l2", "/dev/video*"), ("alsa", "/dev/snd/*")])
def test_a_device_another_program_holds_is_said_to_be_busy(input_format, nodes):
    # FFmpeg's EBUSY as PyAV raises it (VIDIOC_S_FMT / snd_pcm_open while a video call holds the device)
    import errno

    import av

    from migr_rt.runtime.sources import _ffmpeg_problem

    with pytest.raises(av.error.FFmpegError) as busy:
        av.error.err_check(-errno.EBUSY, "/dev/video0")
    plain, retryable = _ffmpeg_problem(busy.value, [], input_format, 5.0, True)
    assert plain.startswith(f"the device is busy: another program is using it (`fuser -v {nodes}` names it)")
    assert retryable  # the other program may let go within --reconnect-timeout


def test_a_camera_taken_by_another_program_while_the_run_reconnects_names_that_program(tmp_path, holder):
    # The camera was unplugged and a video call took it before the run reopened it: FFmpeg's EBUSY, with the holder
    import errno

    import av

    from migr_rt.runtime.sources import _ffmpeg_problem

    node = tmp_path / "video0"
    node.touch()
    call = holder(node)
    name = Path(f"/proc/{call.pid}/comm").read_text().strip()
    with pytest.raises(av.error.FFmpegError) as busy:
        av.error.err_check(-errno.EBUSY, str(node))
    plain, retryable = _ffmpeg_problem(busy.value, [], "v4l2", 5.0, True, target=str(node))
    assert plain.startswith(f"the device is busy: another program is using it (held by {name} (pid {call.pid}))")
    assert retryable


def test_data_that_is_not_media_is_retried_only_from_a_live_server():
    # An HLS sender killed mid-write leaves an empty playlist, served until it restarts: a live URL is retried; a
    # local file or device whose data is not media stays so (the run ends at once).
    import av

    from migr_rt.runtime.sources import _ffmpeg_problem

    with pytest.raises(av.error.InvalidDataError) as garbled:
        av.error.err_check(-1094995529, "http://cam.local/live.m3u8")
    assert _ffmpeg_problem(garbled.value, [], None, 5.0, live=True, remote=True)[1]
    assert not _ffmpeg_problem(garbled.value, [], None, 5.0, live=True, remote=False)[1]
    assert not _ffmpeg_problem(garbled.value, [], None, 5.0, live=False, remote=True)[1]  # a remote file


@pytest.mark.skipif(not Path("/usr/include/linux/videodev2.h").exists() or shutil.which("cc") is None,
                    reason="needs a C compiler and the kernel's linux/videodev2.h")
def test_the_ioctl_numbers_and_layouts_are_the_kernel_headers(tmp_path):
    # what devices.py and camera_modes.py pack and unpack, against linux/videodev2.h itself
    from migr_rt.runtime import camera_modes

    values = {
        "(unsigned long)VIDIOC_QUERYCAP": devices.VIDIOC_QUERYCAP,
        "sizeof(struct v4l2_capability)": 104,
        "(unsigned long)VIDIOC_REQBUFS": devices.VIDIOC_REQBUFS,
        "sizeof(struct v4l2_requestbuffers)": devices._REQUEST_BUFFERS.size,
        "offsetof(struct v4l2_requestbuffers, type)": 4,
        "offsetof(struct v4l2_requestbuffers, memory)": 8,
        "V4L2_BUF_TYPE_VIDEO_CAPTURE": devices.BUF_TYPE_VIDEO_CAPTURE,
        "V4L2_BUF_TYPE_VIDEO_CAPTURE_MPLANE": devices.BUF_TYPE_VIDEO_CAPTURE_MPLANE,
        "V4L2_MEMORY_MMAP": devices.MEMORY_MMAP,
        "(unsigned long)VIDIOC_ENUM_FMT": camera_modes.VIDIOC_ENUM_FMT,
        "sizeof(struct v4l2_fmtdesc)": camera_modes._FMTDESC.size,
        "offsetof(struct v4l2_fmtdesc, pixelformat)": 44,
        "(unsigned long)VIDIOC_ENUM_FRAMESIZES": camera_modes.VIDIOC_ENUM_FRAMESIZES,
        "sizeof(struct v4l2_frmsizeenum)": camera_modes._FRMSIZE.size,
        "offsetof(struct v4l2_frmsizeenum, discrete)": 12,
        "(unsigned long)VIDIOC_ENUM_FRAMEINTERVALS": camera_modes.VIDIOC_ENUM_FRAMEINTERVALS,
        "sizeof(struct v4l2_frmivalenum)": camera_modes._FRMIVAL.size,
        "offsetof(struct v4l2_frmivalenum, type)": 16,
        "offsetof(struct v4l2_frmivalenum, discrete)": 20,
        "V4L2_FRMSIZE_TYPE_DISCRETE": camera_modes.FRMSIZE_DISCRETE,
        "V4L2_FRMSIZE_TYPE_STEPWISE": camera_modes.FRMSIZE_STEPWISE,
        "V4L2_FRMIVAL_TYPE_DISCRETE": camera_modes.FRMIVAL_DISCRETE,
    }
    program = tmp_path / "v4l2.c"
    prints = "\n".join(f'    printf("%lu\\n", (unsigned long)({expression}));' for expression in values)
    program.write_text(f"#include <stdio.h>\n#include <stddef.h>\n#include <linux/videodev2.h>\n"
                       f"int main(void) {{\n{prints}\n    return 0;\n}}\n")
    subprocess.run(["cc", "-o", str(tmp_path / "v4l2"), str(program)], check=True, timeout=60)
    said = subprocess.run([str(tmp_path / "v4l2")], capture_output=True, text=True, check=True).stdout.split()
    assert dict(zip(values, map(int, said))) == values


@pytest.fixture
def holder():
    """Another process that holds a file open (as a video call holds a camera), once given its path."""
    started = []

    def hold(path: Path) -> subprocess.Popen:
        process = subprocess.Popen([sys.executable, "-c", "import sys, time\nf = open(sys.argv[1], 'rb')\n"
                                    "print('holding', flush=True)\ntime.sleep(120)", str(path)],
                                   stdout=subprocess.PIPE, text=True)
        started.append(process)
        assert process.stdout.readline().strip() == "holding"
        return process

    yield hold
    for process in started:
        process.kill()
        process.wait()


class KernelQueue:
    """The kernel's answers to VIDIOC_REQBUFS on a camera's capture queue: EBUSY while another file handle owns
    it (vb2_ioctl_reqbufs), else the zero buffers asked for. Every request is kept, as the bytes passed in."""

    def __init__(self, owned: bool) -> None:
        self.owned, self.requests = owned, []
        self.real = fcntl_ioctl

    def __call__(self, fd, request, arg=0, mutate=True):
        if request != devices.VIDIOC_REQBUFS:
            return self.real(fd, request, arg, mutate)
        self.requests.append(devices._REQUEST_BUFFERS.unpack(bytes(arg)))
        if self.owned:
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY))
        return 0


fcntl_ioctl = __import__("fcntl").ioctl


def test_a_camera_another_program_streams_from_is_refused_naming_that_program(tmp_path, monkeypatch, holder):
    # A video call holds the laptop's camera: FFmpeg's open fails with EBUSY only once the model has loaded, and
    # then after --reconnect-timeout of retries. The node is asked first, and the program holding it is named.
    node = tmp_path / "video0"
    node.touch()
    webcam = querycap("Integrated Camera", UVC_DEVICE, CAP_VIDEO_CAPTURE | CAP_STREAMING)
    monkeypatch.setattr(devices, "query_node", lambda path: decode_capability(webcam, devices.node_index(path), path))
    queue = KernelQueue(owned=True)
    monkeypatch.setattr("fcntl.ioctl", queue)
    call = holder(node)
    name = Path(f"/proc/{call.pid}/comm").read_text().strip()
    with open(node, "rb"):  # this process holding it too is not named: the check's own handle is no other program
        with pytest.raises(SourceError) as caught:
            camera_input(0, dev=tmp_path)
    assert str(caught.value).startswith(f"camera 0: {node} is busy: another program is streaming from it (held by "
                                        f"{name} (pid {call.pid}))")
    assert not caught.value.retryable
    # zero buffers of the node's own queue type, memory-mapped: a request that changes nothing on a free queue
    assert queue.requests == [(0, devices.BUF_TYPE_VIDEO_CAPTURE, devices.MEMORY_MMAP, 0, 0)]
    call.kill()
    call.wait()
    queue.owned = False  # the call ended: the camera is read
    assert camera_input(0, dev=tmp_path).target == str(node)


def test_a_busy_multi_planar_camera_is_asked_about_its_own_queue_and_an_unknown_holder_is_left_to_fuser(
        tmp_path, monkeypatch):
    node = tmp_path / "video0"
    node.touch()
    hdmi = querycap("rk_hdmirx", devices.CAP_VIDEO_CAPTURE_MPLANE | CAP_STREAMING | CAP_DEVICE_CAPS,
                    devices.CAP_VIDEO_CAPTURE_MPLANE | CAP_STREAMING, "snps_hdmirx")
    monkeypatch.setattr(devices, "query_node", lambda path: decode_capability(hdmi, 0, path))
    queue = KernelQueue(owned=True)
    monkeypatch.setattr("fcntl.ioctl", queue)
    # another user's process holds it: its descriptors cannot be read, so fuser (as root) is named instead
    assert devices.capture_problem(node) == f"is busy: another program is streaming from it (`fuser -v {node}` " \
                                            "names it)"
    assert queue.requests[0][1] == devices.BUF_TYPE_VIDEO_CAPTURE_MPLANE


def test_the_kernels_own_answer_for_a_node_without_buffers_is_not_taken_for_busy():
    # /dev/null answers VIDIOC_REQBUFS with ENOTTY, as a driver without streaming I/O would: not busy
    null = decode_capability(querycap("null", CAP_VIDEO_CAPTURE | CAP_STREAMING, 0), -1, Path("/dev/null"))
    assert devices.streaming_elsewhere(null) is False


def asound_tree(root: Path, statuses: dict[str, str]) -> Path:
    """/proc/asound as the kernel lays it out: cards, pcm, cardN/pcmDc/subS/status, and the card id's link."""
    root.mkdir()
    (root / "cards").write_text(ASOUND_CARDS)
    (root / "pcm").write_text(ASOUND_PCM)
    for sub, status in statuses.items():
        folder = root / "card1" / "pcm0c" / sub
        folder.mkdir(parents=True)
        (folder / "status").write_text(status)
    (root / "C920").symlink_to("card1")
    return root


def running(pid: int) -> str:
    # the lines of snd_pcm_substream_proc_status_read for an open substream
    return (f"state: RUNNING\nowner_pid   : {pid}\ntrigger_time: 1234.5\ntstamp      : 0.0\ndelay       : 256\n"
            "avail       : 0\navail_max   : 512\n-----\nhw_ptr      : 96000\nappl_ptr    : 95744\n")


def test_a_microphone_another_program_records_from_is_refused_naming_that_program(tmp_path, monkeypatch, holder):
    # On a desktop, PipeWire holds a card's capture PCM while any application records from it; plughw then fails
    # with EBUSY, once the model has loaded. /proc/asound says so beforehand, and who it is.
    (tmp_path / "pcmC1D0c").touch()
    call = holder(tmp_path / "pcmC1D0c")  # the program recording (its pid is what the kernel's status names)
    name = Path(f"/proc/{call.pid}/comm").read_text().strip()
    asound = asound_tree(tmp_path / "asound", {"sub0": running(call.pid)})
    for spec in ("plughw:CARD=C920,DEV=0", "hw:1,0", "plughw:1", "hw:C920,0,0"):
        assert devices.pcm_holders(spec, asound) == [call.pid], spec
    assert devices.pcm_holders("hw:0,0", asound) is None  # another card: not found here, so not said to be busy
    assert devices.pcm_holders("dsnoop:CARD=C920", asound) is None  # shared by design
    if "alsa" not in __import__("av").formats_available:
        return
    from migr_rt.runtime import sources

    monkeypatch.setattr(sources, "pcm_holders", lambda device: devices.pcm_holders(device, asound))
    with pytest.raises(SourceError) as caught:
        mic_input("alsa:plughw:CARD=C920,DEV=0")
    assert str(caught.value).startswith(f"microphone alsa:plughw:CARD=C920,DEV=0: cannot be opened: the device is "
                                        f"busy: another program is recording from it (held by {name} (pid "
                                        f"{call.pid})); close it")


def test_a_microphone_with_a_free_substream_or_a_closed_one_is_not_busy(tmp_path):
    two = asound_tree(tmp_path / "two", {"sub0": running(4242), "sub1": "closed\n"})
    assert devices.pcm_holders("plughw:C920", two) is None  # ALSA opens the free one
    assert devices.pcm_holders("hw:C920,0,0", two) == [4242]  # unless that very substream is asked for
    assert devices.pcm_holders("hw:C920,0,1", two) is None
    closed = asound_tree(tmp_path / "closed", {"sub0": "closed\n"})
    assert devices.pcm_holders("plughw:CARD=C920,DEV=0", closed) is None
    assert devices.held_by(devices.process_names([4242], tmp_path), "/dev/snd/*") == "held by ? (pid 4242)"
    assert devices.held_by([], "/dev/snd/*") == "`fuser -v /dev/snd/*` names it"


def test_devices_command_says_which_camera_and_microphone_another_program_holds(tmp_path, monkeypatch, holder):
    from functools import partial

    from click.testing import CliRunner

    from migr_rt.cli import main

    dev = tmp_path / "dev"
    dev.mkdir()
    for index in (0, 2):
        (dev / f"video{index}").touch()
    answers = {0: querycap("Integrated Camera", UVC_DEVICE, CAP_VIDEO_CAPTURE | CAP_STREAMING),
               2: querycap("HD Pro Webcam C920", UVC_DEVICE, CAP_VIDEO_CAPTURE | CAP_STREAMING)}
    monkeypatch.setattr(devices, "query_node", lambda path: decode_capability(answers[devices.node_index(path)],
                                                                              devices.node_index(path), path))
    monkeypatch.setattr(devices, "scan", partial(devices.scan, dev))
    monkeypatch.setattr(devices, "stable_names", partial(devices.stable_names, dev))
    call = holder(dev / "video2")  # a video call streams from the webcam, and records from its microphone
    asound = asound_tree(tmp_path / "asound", {"sub0": running(call.pid)})
    monkeypatch.setattr(devices, "microphones", partial(devices.microphones, asound))
    monkeypatch.setattr(devices, "pcm_holders", partial(devices.pcm_holders, asound=asound))
    real = fcntl_ioctl

    def queue(fd, request, arg=0, mutate=True):  # the webcam's queue is owned by the call, the laptop's is free
        if request == devices.VIDIOC_REQBUFS and os.readlink(f"/proc/self/fd/{fd}") == str(dev / "video2"):
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY))
        return 0 if request == devices.VIDIOC_REQBUFS else real(fd, request, arg, mutate)

    monkeypatch.setattr("fcntl.ioctl", queue)
    name = Path(f"/proc/{call.pid}/comm").read_text().strip()
    listed = json.loads(CliRunner().invoke(main, ["devices", "--json"]).output)
    assert [(c["camera"], c["busy"], c["held_by"]) for c in listed["cameras"]] == [
        (0, False, []), (2, True, [{"pid": call.pid, "name": name}])]
    mics = {m["mic"]: (m["busy"], m["held_by"]) for m in listed["microphones"]}
    assert mics["alsa:plughw:CARD=C920,DEV=0"] == (True, [{"pid": call.pid, "name": name}])
    assert mics["alsa:plughw:CARD=PCH,DEV=0"] == (False, [])
    table = CliRunner().invoke(main, ["devices"]).output
    held = f"held by {name} (pid {call.pid})"
    assert f"(busy: another program is streaming from it, {held})" in table
    assert f"(busy: another program is recording from it, {held})" in table
    assert table.count("busy:") == 2, table


def test_a_descriptor_closed_while_the_holders_are_looked_for_does_not_hide_its_process(tmp_path):
    # /proc as the kernel shows it to a scan that lists a process's descriptors and then reads each: one closed in
    # between (a video call opens and closes sockets all the while) no longer reads (here: a file that is no link)
    node = tmp_path / "video0"
    node.touch()
    proc = tmp_path / "proc"
    for pid, entries in ((100001, (("3", None), ("4", node))), (100002, (("3", node), ("4", None)))):
        (proc / str(pid) / "fd").mkdir(parents=True)
        (proc / str(pid) / "comm").write_text("zoom\n")
        for fd, target in entries:  # created in both orders under both names: listed first, whatever the order
            if target is None:
                (proc / str(pid) / "fd" / fd).write_text("")
            else:
                (proc / str(pid) / "fd" / fd).symlink_to(target)
    assert devices.holders(node, proc) == [(100001, "zoom"), (100002, "zoom")]


def test_a_microphone_held_from_outside_this_containers_pid_namespace_is_busy_without_a_pid_0(tmp_path):
    # The kernel words owner_pid with pid_vnr: 0 for a process this namespace cannot see (the host's PipeWire, this
    # runtime in a Docker container given /dev/snd). Busy all the same; no "pid 0" to name, so fuser is pointed to.
    asound = asound_tree(tmp_path / "asound", {"sub0": running(0)})
    assert devices.pcm_holders("plughw:CARD=C920,DEV=0", asound) == []
    assert devices.held_by(devices.process_names([]), "/dev/snd/*") == "`fuser -v /dev/snd/*` names it"


def test_a_camera_the_usb_bus_has_no_bandwidth_for_says_so():
    # uvcvideo's VIDIOC_STREAMON fails with ENOSPC when the controller cannot reserve the isochronous bandwidth:
    # two uncompressed 640x480 cameras at 30 fps fill a USB 2 bus
    import errno

    import av

    from migr_rt.runtime.sources import _ffmpeg_problem

    with pytest.raises(av.error.FFmpegError) as full:
        av.error.err_check(-errno.ENOSPC, "/dev/video2")
    plain, retryable = _ffmpeg_problem(full.value, [], "v4l2", 5.0, True, target="/dev/video2")
    assert plain.startswith("the USB bus has no bandwidth left for this picture (another camera on the same USB "
                            "controller takes it): ask for less with --camera-size")


def test_alsa_names_that_are_not_a_cards_pcm_are_not_looked_up():
    # ALSA refuses these itself; here they must neither raise nor read /proc/asound outside a card's folder
    for name in ("hw:1,0,--1", "hw:1,\u00b2", "hw:\u00b2", "hw:../../etc,0", "hw:", "default", "dsnoop:1"):
        assert devices.hardware_pcm(name) is None, name
    assert devices.hardware_pcm("hw:1,0,-1") == ("1", 0, None)  # -1: any free substream
    assert devices.hardware_pcm("plughw:CARD=C920,DEV=1,SUBDEV=2") == ("C920", 1, 2)
