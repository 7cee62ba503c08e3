"""``migr-rt run --save FILE.mp4``: the captured video and audio, annotated with the runtime's events, as H.264 + AAC.

:class:`VideoSaver` takes every captured frame and audio chunk through its
taps (``Runtime.stream(..., frame_tap=saver.frame_tap, audio_tap=saver.audio_tap)``)
and the events through :meth:`VideoSaver.update`; a writer thread draws the
overlay (:func:`draw_overlay`: face box, emotion and probability, an
importance bar per modality with the dominant one marked, the latest
rationale line) and encodes with PyAV into a temporary sibling of the final
path (:func:`migr_rt.atomic.atomic_output`), renamed into place by
:meth:`VideoSaver.close` once the encoders are flushed. A crash or an encoding
error never leaves a half-written file under the final name.

The taps run on the capture threads and never wait for the encoder: frames
and audio go to bounded queues, and what does not fit is dropped and counted
(:attr:`VideoSaver.dropped_frames`, :attr:`VideoSaver.dropped_audio_samples`).
Sync is kept by position, not by arrival: frame ``k`` is shown at ``k / fps``
and sample ``n`` at ``n / sample_rate`` (both streams start at 0, as in the
runtime). A dropped frame is replaced by a repeat of the last written one (a
cheap re-encode of the already converted picture), so the video has one
picture per captured frame and stays aligned with the audio; dropped audio
(only when the writer is more than ``max_queue_seconds`` behind) becomes
silence of the same length. The overlay shows the newest event when the
frame is written, like a live view (so it lags the picture by the analysis
latency). :class:`LiveWindow` shows the same overlay live (``--view``).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np

from migr_rt.atomic import atomic_output
from migr_rt.runtime.terminal import MISSING_FLAGS, plain_rationale, rationale_caption

logger = logging.getLogger(__name__)

_WHITE, _GREY, _GREEN, _ORANGE, _CYAN = (255, 255, 255), (150, 150, 150), (60, 220, 90), (255, 165, 0), (80, 200, 255)
_AUDIO_CHUNK = 1024  # samples per AAC frame


def draw_overlay(frame: np.ndarray, window: dict[str, Any] | None, rationale: str = "") -> np.ndarray:
    """Draw ``window`` (a ``window`` event, or None) and a ``rationale`` line onto ``frame`` (RGB uint8, in place)."""
    h, w = frame.shape[:2]
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, max(0.3, min(h, w) / 480 * 0.55)
    line, thick, pad = int(round(scale * 32)), max(1, int(round(scale * 1.8))), max(2, int(round(scale * 8)))
    box = (window or {}).get("face", {}).get("box")
    if box:
        x, y, bw, bh = box
        cv2.rectangle(frame, (x, y), (x + bw - 1, y + bh - 1), _GREEN, max(1, int(round(scale * 3))))
    if window is None:
        rows = [("waiting for the first window", _GREY, None)]
    else:
        label = window.get("label")
        rows = [(f"{label} {window['probs'].get(label, 0.0):.2f}" if label else "no evidence", _WHITE, None)]
        for m in window.get("importance") or {m: 0.0 for m in window.get("present", {})}:
            dominant = m == window.get("dominant")
            flag = MISSING_FLAGS.get(window.get("missing", {}).get(m, ""), "")
            rows.append((f"{'*' if dominant else ' '}{m}", _ORANGE if dominant else _CYAN,
                         (window.get("importance", {}).get(m, 0.0), flag)))
    bar_w = max(20, w // 4)

    def width(text: str) -> int:
        return cv2.getTextSize(text, font, scale, thick)[0][0]

    label_w = max((width(t) for t, _, v in rows if v), default=0)
    value_w = max((width(f"0.00 {v[1]}") for _, _, v in rows if v), default=0)
    content = max([width(t) for t, _, v in rows if not v] + [label_w + bar_w + value_w + 2 * pad if value_w else 0])
    _darken(frame, 0, 0, min(w, content + 2 * pad), min(h, len(rows) * line + pad))
    for i, (text, colour, value) in enumerate(rows):
        base = (i + 1) * line - pad // 2
        cv2.putText(frame, text, (pad, base), font, scale, colour, thick, cv2.LINE_AA)
        if value is not None:
            x0, top = 2 * pad + label_w, base - line // 2
            cv2.rectangle(frame, (x0, top), (x0 + bar_w, base), _GREY, 1)
            cv2.rectangle(frame, (x0, top), (x0 + int(round(bar_w * min(max(value[0], 0.0), 1.0))), base), colour, -1)
            cv2.putText(frame, f"{value[0]:.2f} {value[1]}".rstrip(), (x0 + bar_w + pad, base), font, scale, _WHITE,
                        thick, cv2.LINE_AA)
    if rationale:
        text = rationale.encode("ascii", "replace").decode()
        chars = max(8, int((w - 2 * pad) * 10 / max(1, width("abcdefghij"))))
        if len(text) > chars:  # the newest words: a ticker while it streams
            text = "..." + text[len(text) - chars + 3 :].partition(" ")[2]
        _darken(frame, 0, h - line - pad, w, line + pad)
        cv2.putText(frame, text, (pad, h - pad), font, scale, _WHITE, thick, cv2.LINE_AA)
    return frame


def _darken(frame: np.ndarray, x: int, y: int, w: int, h: int) -> None:
    roi = frame[y : y + h, x : x + w]
    roi[:] = (roi.astype(np.uint16) * 2 // 5).astype(np.uint8)


class VideoSaver:
    """Annotated video + audio to ``path`` (.mp4, H.264 + AAC); feed it taps and events, then :meth:`close`.

    ``fps`` and ``sample_rate`` are those of the runtime's frames and audio
    chunks. At most ``max_queue_frames`` frames and ``max_queue_seconds`` of
    audio wait for the writer. Usable as a context manager.
    """

    def __init__(self, path: str | Path, fps: float, sample_rate: int, *, max_queue_frames: int = 48,
                 max_queue_seconds: float = 30.0, video_codec: str = "libx264", audio_codec: str = "aac",
                 video_options: dict[str, str] | None = None) -> None:
        if not fps > 0 or sample_rate <= 0 or max_queue_frames < 1:
            raise ValueError(f"fps, sample_rate and max_queue_frames must be positive, got {fps}, {sample_rate}, "
                             f"{max_queue_frames}")
        self.path, self.fps, self.sample_rate = Path(path), float(fps), int(sample_rate)
        self.max_queue_frames, self._audio_limit = max_queue_frames, int(max_queue_seconds * sample_rate)
        self.video_codec, self.audio_codec = video_codec, audio_codec
        self.video_options = video_options if video_options is not None else {"preset": "veryfast"}
        self.dropped_frames = 0  #: frames the tap dropped (queue full); the file repeats the previous frame
        self.dropped_audio_samples = 0  #: samples the tap dropped; the file has silence there
        self.repeated_frames = 0  #: pictures written as repeats (dropped frames, and the tail after a drop)
        self.frames_written = self.samples_written = 0
        self._cond = threading.Condition()
        self._frames: deque[tuple[int, np.ndarray]] = deque()
        self._audio: deque[tuple[int, np.ndarray]] = deque()
        self._audio_pending = self._frames_seen = self._audio_seen = 0
        self._missing: set[str] = set()  # streams a window event says the source lacks
        self._closing = False
        self._window: dict[str, Any] | None = None
        self._rationale = ("", -1, "")  # (raw streamed text, window, finished summary line)
        self._error: BaseException | None = None
        self._result: Path | None = None
        self._thread = threading.Thread(target=self._run, name=f"save {self.path.name}", daemon=True)
        self._thread.start()

    # -- feeding (capture threads and the event loop) ----------------------------------------------------------------
    def frame_tap(self, index: int, frame: np.ndarray) -> None:
        """Queue captured frame ``index`` (RGB uint8); never waits: a full queue drops it (counted)."""
        with self._cond:
            if self._closing:
                return
            self._frames_seen = max(self._frames_seen, index + 1)
            if len(self._frames) >= self.max_queue_frames:
                self.dropped_frames += 1
                return
            self._frames.append((index, frame))
            self._cond.notify()

    def audio_tap(self, samples: np.ndarray) -> None:
        """Queue the next mono float32 audio chunk; never waits: past ``max_queue_seconds`` it is dropped (counted)."""
        samples = np.asarray(samples, np.float32).reshape(-1)
        with self._cond:
            if self._closing or not len(samples):
                return
            start, self._audio_seen = self._audio_seen, self._audio_seen + len(samples)
            if self._audio_pending + len(samples) > self._audio_limit:
                self.dropped_audio_samples += len(samples)
                return
            self._audio.append((start, samples))
            self._audio_pending += len(samples)
            self._cond.notify()

    def update(self, event: dict[str, Any]) -> None:
        """Take a runtime event: ``window`` events and the rationale feed the overlay."""
        kind = event.get("type")
        if kind == "window":
            self._window = event
            with self._cond:
                self._missing.update(m for m, r in event.get("missing", {}).items() if r in ("no_video", "no_audio"))
                self._cond.notify()
        elif kind == "rationale_token":
            raw, w, _ = self._rationale
            self._rationale = ((raw if w == event["window"] else "") + event["text"], event["window"], "")
        elif kind == "rationale":
            self._rationale = (event["text"], event["window"], rationale_caption(event))

    # -- lifecycle ---------------------------------------------------------------------------------------------------
    def __enter__(self) -> VideoSaver:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self, timeout: float | None = None) -> Path | None:
        """Stop taking input, write what is queued, flush the encoders and rename the file into place.

        Returns the path, or None when nothing was captured (no file is
        written). Raises the writer's error (and leaves no file) if encoding failed.
        """
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"{self.path}: the video writer did not finish within {timeout} s")
        error, self._error = self._error, None
        if error is not None:
            raise error
        return self._result

    # -- the writer thread -------------------------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            with self._cond:  # the container needs all its streams before the first packet: see which exist
                self._cond.wait_for(self._streams_known)
                video, audio = self._frames_seen > 0, self._audio_seen > 0
            if not (video or audio):
                logger.warning("%s: nothing was captured; no file written", self.path)
                return
            with atomic_output(self.path) as tmp, av.open(str(tmp), mode="w") as container:
                self._write(container, video, audio)
            self._result = self.path
        except BaseException as exc:  # reported by close()
            self._error = exc
            with self._cond:
                self._closing = True
                self._frames.clear()
                self._audio.clear()

    def _streams_known(self) -> bool:
        # Both streams seen, a window event says one is absent, or one ran 2 s alone (or closing).
        video, audio = self._frames_seen, self._audio_seen
        return (self._closing or bool(video and audio) or bool(self._missing)
                or video >= 2 * self.fps or audio >= 2 * self.sample_rate)

    def _write(self, container, video: bool, audio: bool) -> None:
        vstream = astream = None
        if video:
            with self._cond:
                self._cond.wait_for(lambda: self._frames or self._closing)
                first = self._frames[0][1] if self._frames else None
            if first is not None:
                size = (first.shape[0] + first.shape[0] % 2, first.shape[1] + first.shape[1] % 2)  # yuv420p: even
                vstream = container.add_stream(self.video_codec, rate=Fraction(self.fps).limit_denominator(1001))
                vstream.height, vstream.width = size
                vstream.pix_fmt = "yuv420p"
                vstream.options = dict(self.video_options)
        if audio:
            astream = container.add_stream(self.audio_codec, rate=self.sample_rate)
            astream.layout = "mono"
        last: av.VideoFrame | None = None
        pending = np.zeros(0, np.float32)
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._frames or self._audio or self._closing)
                frames, chunks = list(self._frames), list(self._audio)
                self._frames.clear()
                self._audio.clear()
                self._audio_pending = 0
                done = self._closing and not frames and not chunks
                seen = (self._frames_seen, self._audio_seen)
            for start, samples in chunks if astream is not None else ():
                gap = start - self.samples_written - len(pending)  # dropped audio: silence
                pending = np.concatenate([pending, np.zeros(max(gap, 0), np.float32), samples])
                pending = self._encode_audio(container, astream, pending)
            for index, image in frames if vstream is not None else ():
                picture = av.VideoFrame.from_ndarray(self._annotate(image, vstream), format="rgb24")
                self._encode_video(container, vstream, last or picture, index, repeat=True)  # dropped frames
                last = self._encode_video(container, vstream, picture, index + 1)
            if done:
                break
        if vstream is not None and last is not None:
            self._encode_video(container, vstream, last, seen[0], repeat=True)  # frames dropped at the end
            for packet in vstream.encode(None):
                container.mux(packet)
        if astream is not None:
            gap = seen[1] - self.samples_written - len(pending)
            pending = np.concatenate([pending, np.zeros(max(gap, 0), np.float32)])
            self._encode_audio(container, astream, pending, final=True)
            for packet in astream.encode(None):
                container.mux(packet)

    def _annotate(self, image: np.ndarray, vstream) -> np.ndarray:
        h, w = vstream.height, vstream.width
        if abs(image.shape[0] - h) > 1 or abs(image.shape[1] - w) > 1:  # a reconnect changed the size
            image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
        canvas = np.zeros((h, w, 3), np.uint8)  # a copy padded to even dims: the runtime still reads the frame
        canvas[: image.shape[0], : image.shape[1]] = image
        raw, _, summary = self._rationale
        return draw_overlay(canvas, self._window, summary or plain_rationale(raw))

    def _encode_video(self, container, vstream, picture: av.VideoFrame, upto: int, repeat: bool = False
                      ) -> av.VideoFrame:
        """Encode ``picture`` at every frame position from the next one up to (not including) ``upto``."""
        while self.frames_written < upto:
            picture.pts = self.frames_written
            for packet in vstream.encode(picture):
                container.mux(packet)
            self.frames_written += 1
            self.repeated_frames += repeat
        return picture

    def _encode_audio(self, container, astream, samples: np.ndarray, final: bool = False) -> np.ndarray:
        """Encode whole AAC frames of ``samples`` (all of them when ``final``); returns the remainder."""
        n = len(samples) if final else len(samples) - len(samples) % _AUDIO_CHUNK
        for start in range(0, n, _AUDIO_CHUNK):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[None, start : start + _AUDIO_CHUNK]),
                                               format="fltp", layout="mono")
            frame.sample_rate, frame.pts = self.sample_rate, self.samples_written
            for packet in astream.encode(frame):
                container.mux(packet)
            self.samples_written += frame.samples
        return samples[n:]


class LiveWindow:
    """``migr-rt run --view``: the newest captured frame, annotated, in an OpenCV window (needs GUI OpenCV).

    Same taps and :meth:`update` as :class:`VideoSaver`; a display thread
    owns the window and shows only the newest frame (older ones are skipped,
    so the tap never waits). Raises RuntimeError where no window can be opened.
    """

    def __init__(self, title: str = "migr-rt") -> None:
        self.title = title
        self._frame: np.ndarray | None = None
        self._window: dict[str, Any] | None = None
        self._rationale = ""
        self._cond = threading.Condition()
        self._closing = False
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"view {title}", daemon=True)
        self._thread.start()
        self._started.wait()
        if self._error is not None:
            raise RuntimeError(f"cannot open a window ({self._error})") from self._error

    def frame_tap(self, index: int, frame: np.ndarray) -> None:
        with self._cond:
            self._frame = frame
            self._cond.notify()

    def update(self, event: dict[str, Any]) -> None:
        if event.get("type") == "window":
            self._window = event
        elif event.get("type") == "rationale":
            self._rationale = rationale_caption(event)

    def close(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join(2.0)

    def __enter__(self) -> LiveWindow:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _run(self) -> None:
        try:
            cv2.namedWindow(self.title, cv2.WINDOW_NORMAL)
        except cv2.error as exc:  # headless OpenCV, no display
            self._error = exc
            return
        finally:
            self._started.set()
        try:
            while True:
                with self._cond:
                    self._cond.wait_for(lambda: self._frame is not None or self._closing, timeout=0.05)
                    frame, self._frame = self._frame, None
                    if self._closing:
                        break
                if frame is not None:
                    image = draw_overlay(frame.copy(), self._window, self._rationale)
                    cv2.imshow(self.title, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
                cv2.waitKey(1)
        finally:
            try:
                cv2.destroyWindow(self.title)
            except cv2.error:
                pass
