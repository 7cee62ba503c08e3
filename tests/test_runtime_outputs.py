"""The outputs of ``migr-rt run``: the terminal view and the annotated ``--save`` video, on the real demo stream."""

from __future__ import annotations

import io
import re
import threading
import time

import numpy as np
import pytest

from migr_rt import Runtime
from migr_rt.media import decode_media
from migr_rt.runtime import RuntimeConfig
from migr_rt.runtime.annotate import LiveWindow, VideoSaver
from migr_rt.runtime.sources import demo_clip
from migr_rt.runtime.terminal import TerminalView, rationale_caption

CURSOR_UP = re.compile(r"\x1b\[\d+A")


@pytest.fixture(scope="module")
def runtime():
    with Runtime(config=RuntimeConfig(max_rationale_tokens=32)) as rt:
        yield rt


@pytest.fixture(scope="module")
def source():
    return decode_media(demo_clip())


@pytest.fixture(scope="module")
def demo_run(runtime, tmp_path_factory):
    """One full demo stream feeding a VideoSaver and two TerminalViews (plain and TTY) at once."""
    out = tmp_path_factory.mktemp("save") / "demo annotated.mp4"
    plain, tty = io.StringIO(), io.StringIO()
    views = [TerminalView(plain, isatty=False), TerminalView(tty, isatty=True, width=100)]
    events = []
    with VideoSaver(out, runtime.plan.fps, runtime.plan.sample_rate) as saver:
        for event in runtime.stream("demo", frame_tap=saver.frame_tap, audio_tap=saver.audio_tap):
            events.append(event)
            saver.update(event)
            for view in views:
                view.update(event)
        for view in views:
            view.close()
    return {"path": out, "saver": saver, "events": events, "plain": plain.getvalue(), "tty": tty.getvalue()}


def _of(events, kind):
    return [e for e in events if e["type"] == kind]


def test_saved_video_is_playable_aligned_and_annotated(demo_run, source):
    path, saver = demo_run["path"], demo_run["saver"]
    assert path.is_file()
    assert not [p for p in path.parent.iterdir() if p != path], "a temporary file was left behind"
    saved = decode_media(path)
    assert saved.frames.shape[1:] == source.frames.shape[1:]  # the demo is 160x160: already even
    assert abs(len(saved.frames) - len(source.frames)) <= 3
    assert abs(len(saved.audio) - len(source.audio)) <= 0.2 * source.sample_rate
    assert saver.frames_written == len(source.frames) and saver.samples_written == len(source.audio)
    assert saver.frames_written - saver.repeated_frames == len(source.frames) - saver.dropped_frames
    n = min(len(saved.frames), len(source.frames))
    diff = np.abs(saved.frames[:n].astype(np.int16) - source.frames[:n].astype(np.int16))
    panel = diff[:, :20, :40].mean()  # top left: the darkened panel with the label and the bars
    centre = np.median(diff[:, 70:110, 60:100].mean(axis=(1, 2, 3)))  # inside the face box: only coding noise
    assert panel > 30, panel
    assert centre < 8, centre
    # The audio is the source's (AAC round trip): strongly correlated, not silence.
    k = min(len(saved.audio), len(source.audio))
    assert np.corrcoef(saved.audio[:k], source.audio[:k])[0, 1] > 0.9


def test_plain_output_has_one_line_per_window_and_rationale(demo_run):
    windows, rationales = _of(demo_run["events"], "window"), _of(demo_run["events"], "rationale")
    assert len(windows) >= 10 and rationales
    text = demo_run["plain"]
    assert "\x1b" not in text
    lines = text.splitlines()
    window_lines = [line for line in lines if line.startswith("window ")]
    assert len(window_lines) == len(windows)
    for line, event in zip(window_lines, windows):
        assert line.startswith(f"window {event['window']} ") and f" {event['label']} " in line
        assert f"dominant {event['dominant']}" in line and "latency" in line
    assert len([line for line in lines if line.startswith("rationale ")]) == len(rationales)
    assert not any("<think>" in line or "</" in line for line in lines)
    assert lines[-1].startswith("end: end_of_stream")


def test_tty_output_is_a_live_block_with_bars(demo_run):
    text = demo_run["tty"]
    windows = _of(demo_run["events"], "window")
    assert CURSOR_UP.search(text) and "\x1b[2K" in text
    assert text.startswith("\x1b[?25l") and text.endswith("\x1b[?25h")
    heights = {int(m) for m in re.findall(r"\x1b\[(\d+)A", text)}
    assert len(heights) == 1  # a fixed block
    last = text.rsplit("\r", 1)[-1]  # the final redraw
    assert f"emotion    {windows[-1]['label']}" in last
    for m in ("visual", "audio"):
        assert re.search(rf"{m}\s+[█░]{{20}} \d\.\d\d  MI ", last), last
    assert "windows/s" in last and "frames/s" in last and "first token" in last and "ended: end_of_stream" in last
    assert max(len(line) for line in re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text).splitlines()) < 100


def test_terminal_view_flags_and_status():
    event = {"type": "window", "window": 3, "t_start": 1.5, "t_end": 3.5, "label": "sad", "probs": {"sad": 0.6},
             "mi": {"visual": 0.0, "audio": 0.0}, "importance": {"visual": 0.25, "audio": 0.75}, "dominant": "audio",
             "present": {"visual": False, "audio": False}, "missing": {"visual": "no_face", "audio": "silent"},
             "face": {"box": None, "frames_with_face": 0, "frames_sampled": 8}, "latency_ms": {"total": 12.0},
             "drops": {"frames": 2, "windows": 1, "captured_frames": 90, "windows_seen": 5}}
    status = {"type": "status", "level": "warning", "code": "reconnecting", "message": "camera 0 lost; retry 1"}
    tty, plain = io.StringIO(), io.StringIO()
    views = [TerminalView(tty, ["sad"], ["visual", "audio"], isatty=True, width=80), TerminalView(plain, isatty=False)]
    for e in (event, status):
        for view in views:
            view.update(e)
    for view in views:
        view.close()
        view.update(event)  # ignored after close
    last = tty.getvalue().rsplit("\r", 1)[-1]
    assert "[no face]" in last and "[silent]" in last and "camera 0 lost" in last and "frames 2  windows 1" in last
    assert plain.getvalue().splitlines() == [
        "window 3 1.50-3.50s  sad 0.60  visual 0.25 (MI +0.00)  audio 0.75 (MI +0.00)  dominant audio  "
        "visual: no face  audio: silent  latency 12 ms",
        "status warning reconnecting: camera 0 lost; retry 1",
    ]


def test_interrupted_save_is_playable(runtime, tmp_path):
    path = tmp_path / "interrupted.mp4"
    stop = threading.Event()
    saver = VideoSaver(path, runtime.plan.fps, runtime.plan.sample_rate)
    events = []
    stream = runtime.stream("demo", stop=stop, frame_tap=saver.frame_tap, audio_tap=saver.audio_tap)
    for event in stream:
        events.append(event)
        saver.update(event)
        if event["type"] == "window" and event["window"] == 1:
            stop.set()
            assert saver.close() == path  # mid-stream: capture is still feeding the taps, which now ignore it
    assert events[-1]["type"] == "end" and events[-1]["reason"] == "interrupted"
    saver.frame_tap(10_000, np.zeros((160, 160, 3), np.uint8))  # after close: ignored
    saver.audio_tap(np.zeros(1600, np.float32))
    saved = decode_media(path)
    assert 2.0 * saved.fps <= len(saved.frames) < 225
    assert abs(len(saved.audio) / saved.sample_rate - len(saved.frames) / saved.fps) < 0.5
    assert [p.name for p in tmp_path.iterdir()] == ["interrupted.mp4"]


def _feed(saver, frames, audio_per_frame=640, pace=0.0):
    for k, frame in enumerate(frames):
        saver.frame_tap(k, frame)
        t = (k * audio_per_frame + np.arange(audio_per_frame)) / 16000
        saver.audio_tap((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32))
        if pace:
            time.sleep(pace)


def test_dropped_frames_are_repeated_and_odd_sizes_padded(tmp_path, monkeypatch):
    import migr_rt.runtime.annotate as annotate

    real = annotate.draw_overlay
    monkeypatch.setattr(annotate, "draw_overlay", lambda *a, **k: (time.sleep(0.02), real(*a, **k))[1])
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (60, 67, 95, 3), dtype=np.uint8)
    path = tmp_path / "drops.mp4"
    with VideoSaver(path, 25, 16000, max_queue_frames=2) as saver:
        _feed(saver, frames)  # far faster than the slowed writer: the queue overflows
    assert saver.dropped_frames > 0
    assert saver.repeated_frames == saver.dropped_frames and saver.frames_written == 60
    saved = decode_media(path)
    assert saved.frames.shape == (60, 68, 96, 3)
    assert 0 <= len(saved.audio) - 60 * 640 < 1024  # kept whole (AAC pads the last frame): video time matches it
    assert np.sqrt(np.mean(saved.audio[1024:-1024] ** 2)) > 0.15  # the tone, not silence


def test_failed_encoding_leaves_no_file(tmp_path, monkeypatch):
    import migr_rt.runtime.annotate as annotate

    calls = []

    def broken(frame, *args, **kwargs):
        calls.append(1)
        if len(calls) > 20:
            raise RuntimeError("encoder exploded")
        return frame

    monkeypatch.setattr(annotate, "draw_overlay", broken)
    frames = np.zeros((50, 64, 64, 3), np.uint8)
    path = tmp_path / "broken.mp4"
    saver = VideoSaver(path, 25, 16000)
    _feed(saver, frames, pace=0.002)
    with pytest.raises(RuntimeError, match="encoder exploded"):
        saver.close()
    assert list(tmp_path.iterdir()) == []  # neither the final file nor the temporary one

    with pytest.raises(Exception):  # an unknown codec fails at the first frame
        with VideoSaver(tmp_path / "codec.mp4", 25, 16000, video_codec="no-such-codec") as bad:
            _feed(bad, frames[:5])
    assert list(tmp_path.iterdir()) == []


def test_nothing_captured_writes_nothing(tmp_path):
    saver = VideoSaver(tmp_path / "empty.mp4", 25, 16000)
    assert saver.close() is None
    assert list(tmp_path.iterdir()) == []


def test_live_window_without_gui_raises_runtime_error():
    import cv2

    if not re.search(r"GUI:\s+NONE", cv2.getBuildInformation()):
        pytest.skip("this OpenCV has a GUI backend: opening a window depends on a display")
    with pytest.raises(RuntimeError, match="cannot open a window"):
        LiveWindow("migr-rt")


def test_terminal_view_says_when_an_explanation_argues_for_another_emotion():
    base = {"type": "rationale", "window": 0, "segments": {}, "first_modality": "audio", "answer": "happy",
            "model_answer": "happy", "tokens": 20, "cancelled": False,
            "latency_ms": {"first_token": 1.0, "full": 9.0}}
    text = "<think><audio>clearly trembling voice</audio></think><answer>happy</answer>"
    against = {**base, "text": text, "explanation_emotion": "fear", "consistent": False}
    agrees = {**base, "text": text, "explanation_emotion": "happy", "consistent": True}
    plain, tty = io.StringIO(), io.StringIO()
    views = [TerminalView(plain, isatty=False), TerminalView(tty, ["happy"], ["visual", "audio"], isatty=True,
                                                             width=120)]
    for view in views:
        view.update(against)
    assert plain.getvalue().rstrip().endswith("(the explanation argues for fear)")
    assert "the explanation argues for fear" in tty.getvalue().rsplit("\r", 1)[-1]
    for view in views:
        view.update(agrees)
        view.close()
    assert plain.getvalue().splitlines()[-1].endswith("-> happy")
    assert "argues for" not in tty.getvalue().rsplit("\r", 1)[-1]


def test_the_video_caption_of_a_rationale_is_its_summary_answer_and_verdict():
    text = ("<think><audio>clearly trembling voice</audio><visual>raised cheeks</visual>"
            "<summary>the audio evidence decides: clearly trembling voice</summary></think><answer>happy</answer>")
    event = {"type": "rationale", "text": text, "answer": "happy", "explanation_emotion": "fear", "consistent": False}
    assert rationale_caption(event) == ("the audio evidence decides: clearly trembling voice -> happy "
                                        "(the explanation argues for fear)")
    assert rationale_caption({**event, "explanation_emotion": "happy", "consistent": True}).endswith("-> happy")
    cut = {"type": "rationale", "text": "<think><audio>clearly trembling", "answer": None,
           "explanation_emotion": None, "consistent": None}
    assert rationale_caption(cut) == "audio: clearly trembling"
