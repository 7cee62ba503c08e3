"""What a camera's mode costs per frame before any analysis: decoding and converting to RGB.

    python benchmarks/camera_modes.py              # 120 frames per mode
    python benchmarks/camera_modes.py --frames 30  # a quick look

`migr-rt run --camera` asks a camera for the smallest picture at least 640 wide that keeps up with --fps,
in MJPEG where it has it (migr_rt/runtime/camera_modes.py); left alone, FFmpeg reads it in the mode it is in,
for many USB webcams full-HD MJPEG. No camera is at hand here, so each mode's frames are made as a camera sends them
(testsrc2 pictures: raw YUYV as it is, MJPEG encoded by FFmpeg at quality 3) and then taken through what capture does
with each frame: PyAV decodes it (MJPEG) and ``migr_rt.media.tracks.upright`` converts it to the RGB array the
runtime works on. The face finder's cost does not depend on the mode (it looks at a copy at most 320 wide).
Writes benchmarks/results/camera_modes.json and .md.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import click

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info  # noqa: E402

from migr_rt.atomic import write_text_atomic  # noqa: E402
from migr_rt.media.tracks import upright  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
MODES = [("YUYV", 640, 360), ("MJPG", 640, 360), ("YUYV", 640, 480), ("MJPG", 640, 480), ("YUYV", 1280, 720), ("MJPG", 1280, 720),
         ("YUYV", 1920, 1080), ("MJPG", 1920, 1080)]


def camera_frames(fourcc: str, width: int, height: int, count: int):
    """What the camera hands over per frame: a YUYV picture, or an MJPEG packet."""
    graph = f"testsrc2=size={width}x{height}:rate=30"
    with av.open(graph, format="lavfi") as source:
        pictures = [frame for _, frame in zip(range(count), source.decode(video=0))]
    if fourcc == "YUYV":
        return [picture.reformat(format="yuyv422") for picture in pictures]
    encoder = av.CodecContext.create("mjpeg", "w")
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuvj422p"
    encoder.time_base = Fraction(1, 30)
    encoder.qscale = True  # fixed quality, as `ffmpeg -q:v 3`: a webcam's JPEGs are not starved of bits
    encoder.global_quality = 3 * 118  # FF_QP2LAMBDA
    packets = []
    for picture in pictures:
        packets += encoder.encode(picture.reformat(format="yuvj422p"))
    return packets + encoder.encode(None)


def cost_ms(fourcc: str, items) -> list[float]:
    """Milliseconds per frame from what the camera hands over to the RGB array."""
    decoder = av.CodecContext.create("mjpeg", "r") if fourcc == "MJPG" else None
    times = []
    for item in items:
        start = time.perf_counter()
        frames = decoder.decode(item) if decoder is not None else [item]
        for frame in frames:
            upright(frame)
        times.append((time.perf_counter() - start) * 1e3)
    return times


@click.command()
@click.option("--frames", type=click.IntRange(min=10), default=120, show_default=True)
def main(frames: int) -> None:
    rows = []
    for fourcc, width, height in MODES:
        items = camera_frames(fourcc, width, height, frames)
        times = cost_ms(fourcc, items)[5:]  # the first few warm the decoder and the caches
        size = statistics.mean(len(bytes(i)) for i in items) if fourcc == "MJPG" else width * height * 2
        rows.append({"mode": f"{width}x{height} {fourcc}", "p50_ms": statistics.median(times),
                     "p95_ms": sorted(times)[int(0.95 * (len(times) - 1))],
                     "core_share_at_30fps": statistics.median(times) * 30 / 1000, "bytes_per_frame": round(size),
                     "usb_mb_per_s_at_30fps": size * 30 / 1e6})
        click.echo(f"{rows[-1]['mode']:>16}: p50 {rows[-1]['p50_ms']:6.2f} ms, p95 {rows[-1]['p95_ms']:6.2f} ms, "
                   f"{rows[-1]['core_share_at_30fps']:.0%} of a core at 30 fps, "
                   f"{rows[-1]['usb_mb_per_s_at_30fps']:.1f} MB/s")
    info = machine_info()
    RESULTS.mkdir(exist_ok=True)
    write_text_atomic(RESULTS / "camera_modes.json", json.dumps({"machine": info, "frames": frames, "modes": rows},
                                                                indent=2) + "\n")
    lines = ["# Camera modes: cost per frame before analysis", "",
             f"Machine: {info.get('cpu', '?')}, {info.get('cores', '?')} cores; PyAV {av.__version__}; "
             f"{frames} frames per mode (testsrc2; MJPEG at FFmpeg's quality 3). "
             "Per frame: MJPEG decoded by PyAV, then `upright` to the RGB array (YUYV: the conversion only).", "",
             "| mode | p50 ms | p95 ms | share of one core at 30 fps | MB/s over USB at 30 fps |", "|---|---|---|---|---|"]
    lines += [f"| {r['mode']} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} | {r['core_share_at_30fps']:.0%} | "
              f"{r['usb_mb_per_s_at_30fps']:.1f} |" for r in rows]
    lines += ["", "Reproduce: `python benchmarks/camera_modes.py`."]
    write_text_atomic(RESULTS / "camera_modes.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
