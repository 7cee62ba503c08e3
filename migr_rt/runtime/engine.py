"""The streaming runtime: ``Runtime.analyze`` for one window, ``Runtime.stream`` for a live source.

Per window (DESIGN.md, Runtime): sampled frames -> face detection and crop ->
frame embeddings (cached: overlapping windows share most sampled frames, and
each is processed when it arrives, before its window closes) -> pooling, the
audio encoder and one MI scoring pass -> the fast ``window`` event -> the
rationale, streamed token by token and cancelled as soon as a newer window is
waiting (it would be stale).

One analysis path serves both entry points: :meth:`Runtime.analyze` on a
window of frames computes exactly what :meth:`Runtime.stream` computes for the
same window of a stream, which the tests check on real files.

A :class:`Runtime` owns its backend and holds no global state; calls are
serialised by a lock, so several threads may share one.
"""

from __future__ import annotations

import logging
import math
import numbers
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from migr_rt.backends import Backend, ModalityTokens, iter_greedy, load_backend
from migr_rt.face import FaceBox, FaceDetector, HaarFaceDetector, TrackingFaceDetector
from migr_rt.face.crop import center_box, square_box
from migr_rt.media.tracks import audio_stream, has_cover_art_only, video_stream
from migr_rt.model.saved_tokenizer import SavedTokenizer
from migr_rt.preprocess import crops_to_pixels, fit_audio, float_audio
from migr_rt.rationale import (answer_anchor, check_answer_mode, rationale_prompt, rationale_text, read_closing,
                              resolve_judge)
from migr_rt.runtime.capture import Capture, MediaBuffer, WindowPlan, reads_as_file
from migr_rt.runtime.events import make_event
from migr_rt.runtime.sources import SourceSpec, parse_source
from migr_rt.traces import parse_trace

logger = logging.getLogger(__name__)


#: Window lengths the runtime accepts (seconds): below ~0.25 s a window holds a frame or two and a few ms of
#: audio, above a minute its buffers stop being small; the bundled model's own window is 2 s.
MIN_WINDOW_S, MAX_WINDOW_S = 0.25, 60.0
#: Hops (seconds) accepted: below 10 ms (one audio frame) windows repeat each other; above an hour, a
#: reading is too rare to stream. The highest frame rate accepted.
MIN_HOP_S, MAX_HOP_S, MAX_FPS = 0.01, 3600.0, 1000.0


@dataclass(frozen=True)
class RuntimeConfig:
    """How windows are cut and what is produced per window."""

    window: float | None = None  #: seconds; default: the model's window (``config.audio_seconds``)
    hop: float = 0.5
    fps: float = 25.0
    rationale: bool = True
    max_rationale_tokens: int = 96
    #: the rationale's ``<answer>``: "label" closes it with the window's label (the answer and its explanation
    #: never name two emotions); "model" keeps whatever the model writes there
    rationale_answer: str = "label"
    #: stop writing a rationale when a newer window is waiting (live use); False writes every one in full
    cancel_stale: bool = True
    silence_rms: float = 1e-4
    reconnect_timeout: float = 10.0
    max_pending_windows: int = 2
    face_margin: float = 0.15
    #: follow the face between sampled frames (a full scan every 8 sampled frames or when the face is lost,
    #: ~3x less face time); False: a full cascade scan of every sampled frame, so a box depends on its frame only
    face_tracking: bool = True

    def __post_init__(self) -> None:
        # Checked before any model is loaded: a NaN or an hour-long window would otherwise fail (or allocate
        # petabytes) deep inside capture, after the source was opened. Numbers of any kind (numpy's too) are
        # stored as Python numbers: they end up in JSON events.
        bounds = (("window", MIN_WINDOW_S, MAX_WINDOW_S, " of seconds"), ("hop", MIN_HOP_S, MAX_HOP_S, " of seconds"),
                  ("fps", 0.0, MAX_FPS, " of frames a second"), ("silence_rms", 0.0, 1.0, ""),
                  ("face_margin", 0.0, 1.0, ""), ("reconnect_timeout", 0.0, math.inf, " of seconds"))
        for name, low, high, unit in bounds:
            value = getattr(self, name)
            if value is None and name == "window":
                continue
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
                raise TypeError(f"{name} must be a number, got {value!r}")
            value = float(value)
            open_low = name in ("fps",)  # 0 fps is no video at all, not a slow one
            # a float32 0.01 is 0.0099999998: a bound is met to float32 precision
            if not (low * (1 - 1e-6) <= value <= high and (value > 0 or not open_low)):
                kind = "a number" if high == math.inf else "a finite number"
                raise ValueError(f"{name} must be {kind}{unit} in {'(' if open_low else '['}{low:g}, {high:g}], "
                                 f"got {value:.9g}")
            object.__setattr__(self, name, value)  # frozen: set once, here
        for name in ("max_rationale_tokens", "max_pending_windows"):
            value = getattr(self, name)
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
            object.__setattr__(self, name, int(value))
        check_answer_mode(self.rationale_answer)


@dataclass
class FrameFeature:
    """One sampled frame, processed: its embedding and the face box found in it (None: no face)."""

    embedding: np.ndarray  #: (D,) float32
    box: FaceBox | None


def face_crop(frame: np.ndarray, detector: FaceDetector, size: int, margin: float) -> tuple[np.ndarray, FaceBox | None]:
    """The ``size`` x ``size`` face crop of one frame and the box found in it (None: no face, centre crop)."""
    h, w = frame.shape[:2]
    found = detector.detect(frame)
    box = square_box(max(found, key=lambda b: b.area), h, w, margin) if found else None
    region = box or center_box(h, w)
    crop = frame[region.y : region.y + region.h, region.x : region.x + region.w]
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA), box


class Runtime:
    """Emotion, modality importance and rationale for windows of video + audio, one window or a stream.

    ``model`` is a checkpoint or an artifact folder (default: the bundled
    model, :func:`migr_rt.bundled.default_model`); ``backend`` as in
    :func:`migr_rt.backends.load_backend`.
    Use it as a context manager (or call :meth:`close`) to release it.
    """

    def __init__(
        self,
        model: str | Path | None = None,
        config: RuntimeConfig | None = None,
        *,
        backend: str | Backend = "auto",
        detector: FaceDetector | None = None,
        threads: int | None = None,
        judge=None,
    ) -> None:
        from migr_rt.bundled import default_model

        if config is not None and not isinstance(config, RuntimeConfig):
            raise TypeError(f"config must be a RuntimeConfig, got {type(config).__name__}")
        self.path = Path(model) if model is not None else default_model(backend if isinstance(backend, str) else "auto")
        self.backend = backend if isinstance(backend, Backend) else load_backend(self.path, backend, threads=threads)
        self.model_config = self.backend.config
        self.config = config or RuntimeConfig()
        longest = len(rationale_prompt(self.model_config, self.model_config.modalities[0])[0])
        positions = self.model_config.text_config.max_position_embeddings
        if longest + self.config.max_rationale_tokens > positions:
            raise ValueError(f"max_rationale_tokens={self.config.max_rationale_tokens}: a rationale prompt has "
                             f"{longest} tokens and this model's positions end at {positions}; use at most "
                             f"{positions - longest}")
        self.tokenizer = SavedTokenizer.from_folder(self.path)
        # Tracking: a full cascade scan now and then, the other sampled frames searched near the last face.
        if detector is None:
            detector = TrackingFaceDetector() if self.config.face_tracking else HaarFaceDetector()
        self.detector = detector
        #: reads each rationale's explanation (any ExplanationJudge; default: the cue judge evaluation uses)
        self.judge = resolve_judge(self.model_config, judge, self.path)
        cfg = self.model_config
        window = self.config.window
        if window is not None and not cfg.audio_seconds / 2 <= window <= cfg.audio_seconds * 2:
            logger.warning("window %g s: this model was trained on %g s windows; far from that its answers are "
                           "untested", window, cfg.audio_seconds)
        if window is not None and window != cfg.audio_seconds:  # the encoders' input sizes are the model's
            logger.info("window %g s: its %d sampled frames span all of it; the model hears %s", window,
                        cfg.num_frames, f"its first {cfg.audio_seconds:g} s of audio" if window > cfg.audio_seconds
                        else f"its {window:g} s of audio and {cfg.audio_seconds - window:g} s of silence after it")
        self.plan = WindowPlan(self.config.window or cfg.audio_seconds, self.config.hop, self.config.fps,
                               cfg.sample_rate, cfg.num_frames)
        self._lock = threading.RLock()
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------------------------------------
    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Release the backend (sessions, engines, weights)."""
        with self._lock:
            self._closed = True
            self.backend = None  # type: ignore[assignment]

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this Runtime is closed")

    # -- one window --------------------------------------------------------------------------------------------------
    def analyze(
        self, frames: np.ndarray | None, audio: np.ndarray | None, *, fps: float | None = None,
        window_start: float = 0.0, rationale: bool = False,
    ) -> dict[str, Any]:
        """The ``window`` event for the window starting ``window_start`` seconds into ``frames``/``audio``.

        ``frames`` ``(N, H, W, 3)`` uint8 RGB at ``fps`` (default: the
        runtime's) and mono float32 ``audio`` at the model's sample rate both
        start at time 0; either may be None. With ``rationale`` the event
        also carries ``rationale`` (the full rationale event).
        """
        fps = self.config.fps if fps is None else fps
        if not (fps > 0 and math.isfinite(fps)):
            raise ValueError(f"fps must be a positive number, got {fps!r}")
        if not (window_start >= 0 and math.isfinite(window_start)):
            raise ValueError(f"window_start must be a finite number of seconds >= 0, got {window_start!r}")
        plan = WindowPlan(self.plan.length, self.plan.hop, fps, self.plan.sample_rate, self.plan.frames_per_window)
        with self._lock:
            self._check_open()
            start = time.monotonic()
            detector = self._new_detector()  # each window on its own: the same window gives the same event
            features = None
            face_ms = 0.0
            if frames is not None and len(frames):
                frames = np.asarray(frames)
                if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
                    raise ValueError(f"frames must be (N, H, W, 3) uint8 RGB, got {frames.shape} {frames.dtype}")
                index = [min(k, len(frames) - 1) for k in plan.sample_indices(window_start)]
                unique = sorted(set(index))
                t = time.monotonic()
                cache = dict(zip(unique, self._frame_features([frames[k] for k in unique], detector)))
                face_ms = (time.monotonic() - t) * 1e3
                features = [cache[k] for k in index]
            samples = None
            if audio is not None and len(audio):
                audio = float_audio(audio).reshape(-1)
                first = int(round(window_start * plan.sample_rate))
                samples = audio[first : first + int(round(plan.length * plan.sample_rate))]
            padded = plan.padded_seconds(window_start, len(frames) if features else None,
                                         len(audio) if samples is not None else None)
            event, tokens, visible = self._window_event(0, window_start, features, samples, start, {"face": face_ms},
                                                        padded)
            if rationale and tokens is not None:
                for item in self._rationale(0, event, tokens, visible, stale=None):
                    if item["type"] == "rationale":
                        event["rationale"] = item
            return event

    # -- a stream ----------------------------------------------------------------------------------------------------
    def stream(
        self, source: str | SourceSpec, *, stop: threading.Event | None = None, max_windows: int | None = None,
        frame_tap=None, audio_tap=None,
    ) -> Iterator[dict[str, Any]]:
        """Events for ``source`` (a spec string as in :func:`~migr_rt.runtime.sources.parse_source`, or parsed).

        Yields ``start``, then per window ``window`` and (with rationales)
        ``rationale_token``... ``rationale``, any ``status``, and ``end``.
        Setting ``stop`` ends the run cleanly (``end`` reason
        ``interrupted``); so does closing the generator (no ``end`` then).
        ``frame_tap(index, frame)`` sees every captured frame and
        ``audio_tap(samples)`` every audio chunk (e.g. a video writer); they
        run on the capture threads and must not block.
        """
        self._check_open()
        if not isinstance(source, (str, SourceSpec)):
            raise TypeError(f"source must be a spec string (a file, URL, lavfi:GRAPH, demo, camera:N) or a "
                            f"SourceSpec, got {type(source).__name__}")
        if max_windows is not None and (isinstance(max_windows, bool) or not isinstance(max_windows, int)
                                        or max_windows < 1):
            raise ValueError(f"max_windows must be an integer >= 1 or None, got {max_windows!r}")
        spec = parse_source(source) if isinstance(source, str) else source
        stop = stop or threading.Event()
        opened = [i.open() for i in spec.inputs]  # fail fast, before any thread starts
        has_video = any(inp.video and video_stream(c) is not None for inp, c in zip(spec.inputs, opened))
        has_audio = any(inp.audio and audio_stream(c) is not None for inp, c in zip(spec.inputs, opened))
        cover_art = [inp.name for inp, c in zip(spec.inputs, opened) if inp.video and has_cover_art_only(c)]
        # A live stream cannot wait for analysis (it would fall ever further behind, and a server stops serving a
        # reader that stops reading): only files, and URLs that turn out to be remote files, are read losslessly.
        as_file = [reads_as_file(i, c) for i, c in zip(spec.inputs, opened)]
        realtime = spec.realtime or not all(as_file)
        if realtime and not spec.realtime:
            logger.info("%s: a live stream: read in real time (with drops), not losslessly", spec.description)
        buffer = MediaBuffer(self.plan, has_video, has_audio, realtime=realtime,
                             max_pending_windows=self.config.max_pending_windows)
        if frame_tap is not None:
            buffer.add_tap(frame_tap)
        if audio_tap is not None:
            buffer.add_audio_tap(audio_tap)
        captures = [Capture(inp, buffer, realtime=realtime, loop=spec.loop,
                            reconnect_timeout=self.config.reconnect_timeout, first_container=c, as_file=f)
                    for inp, c, f in zip(spec.inputs, opened, as_file)]
        cache: dict[int, FrameFeature] = {}
        windows = 0
        reason = "end_of_stream"
        yield make_event("start", backend=self.backend.describe(), source=spec.description,
                         window_seconds=self.plan.length, hop_seconds=self.plan.hop, fps=self.plan.fps,
                         sample_rate=self.plan.sample_rate, labels=list(self.model_config.labels),
                         modalities=list(self.model_config.modalities), has_video=has_video, has_audio=has_audio,
                         realtime=realtime)
        for name in cover_art:
            yield make_event("status", level="info", code="cover_art",
                             message=f"{name}: its only video is cover art (one still picture); "
                                     "reading the audio alone")
        with self._lock:
            detector = self._new_detector()  # this stream's: the first sampled frame gets a full scan
        for capture in captures:
            capture.start()
        face_ms = 0.0  # per-frame work since the previous window event: frames arrive over many takes
        try:
            while True:
                if stop.is_set():
                    reason = "interrupted"
                    break
                frames, ticket, status = buffer.take(timeout=0.05)
                for level, code, message in status:
                    yield make_event("status", level=level, code=code, message=message)
                if frames:
                    t = time.monotonic()
                    with self._lock:
                        self._check_open()
                        for (k, _), feature in zip(frames, self._frame_features([f for _, f in frames], detector)):
                            cache[k] = feature
                    face_ms += (time.monotonic() - t) * 1e3
                if ticket is None:
                    if buffer.finished:
                        if buffer.lost:
                            reason = "source_lost"
                            yield make_event("status", level="error", code="source_lost", message=buffer.lost)
                        break
                    continue
                w = ticket.window
                index = self.plan.frame_indices(w)
                features = None
                if has_video and cache:
                    if any(k not in cache and k < buffer.counters.captured_frames for k in index):
                        buffer.counters.dropped_windows += 1  # a sampled frame was dropped: the window cannot be built
                        continue
                    # A window that outlasts the video (audio runs on) holds its last sampled frame.
                    features = [cache[k] if k in cache else cache[max(c for c in cache if c < k)] for k in index]
                samples = None
                padded = buffer.padded_seconds(w)
                if has_audio:
                    samples = buffer.audio(*self.plan.audio_span(w))
                    if samples is None:
                        buffer.counters.dropped_windows += 1
                        continue
                    if padded.get("audio", 0.0) >= self.plan.length:
                        samples = None  # the audio ended before this window began: no audio (as analyze says), not silence
                with self._lock:
                    self._check_open()
                    event, tokens, visible = self._window_event(w, self.plan.start(w), features, samples,
                                                                ticket.closed_at, {"face": face_ms}, padded)
                face_ms = 0.0
                event["drops"] = buffer.counters.as_dict()
                windows += 1
                yield event
                oldest_needed = self.plan.frame_indices(w + 1)[0]
                for old in [k for k in cache if k < oldest_needed]:
                    del cache[old]
                if self.config.rationale and tokens is not None:
                    # Live: a newer window makes this rationale stale. Lossless replays write every one in full.
                    stale = buffer.window_waiting if self.config.cancel_stale and realtime else None
                    yield from self._rationale(w, event, tokens, visible, stale=stale)
                if max_windows is not None and windows >= max_windows:
                    break
        finally:
            buffer.stop()
            for capture in captures:
                capture.join(timeout=2.0)
            cache.clear()
        yield make_event("end", reason=reason, windows=windows, drops=buffer.counters.as_dict())

    # -- shared analysis ---------------------------------------------------------------------------------------------
    def _new_detector(self) -> FaceDetector:
        """The detector of one stream or one ``analyze`` call.

        A tracking detector gives each its own tracker (``fresh``), so streams
        and calls never follow each other's faces; one that can only be
        ``reset`` is reset; any other is used as it is.
        """
        fresh = getattr(self.detector, "fresh", None)
        if callable(fresh):
            return fresh()
        reset = getattr(self.detector, "reset", None)
        if callable(reset):
            reset()
        return self.detector

    def _frame_features(self, frames: list[np.ndarray], detector: FaceDetector) -> list[FrameFeature]:
        """Detect, crop and embed frames in stream order (a tracking detector follows the face across them).

        Each sampled frame is processed once and its feature reused by every
        overlapping window.
        """
        if not frames:
            return []
        crops, boxes = zip(*(face_crop(frame, detector, self.model_config.face_size, self.config.face_margin)
                             for frame in frames))
        embeddings = self.backend.encode_frames(crops_to_pixels(np.stack(crops)))
        return [FrameFeature(e, b) for e, b in zip(embeddings, boxes)]

    def _window_event(
        self, w: int, t_start: float, features: list[FrameFeature] | None, samples: np.ndarray | None,
        closed_at: float, latency: dict[str, float], padded: dict[str, float],
    ) -> tuple[dict[str, Any], ModalityTokens | None, np.ndarray | None]:
        """The ``window`` event, and the tokens and visibility its rationale needs (None: nothing to explain).

        ``padded`` (seconds of the window past the end of the ``video`` / ``audio`` stream) is reported per
        modality that had input: ``t_end`` stays the nominal window end, so a reader learns from
        ``padded_seconds`` that part of the window held the last frame or silence rather than media.
        """
        cfg = self.model_config
        names = list(cfg.modalities)
        missing: dict[str, str] = {}
        t = time.monotonic()
        with_face = sum(f.box is not None for f in features) if features else 0
        visual_present = bool(features) and 2 * with_face >= len(features)
        if not features:
            missing["visual"] = "no_video"
        elif not visual_present:
            missing["visual"] = "no_face"
        audio_values = None
        if samples is None or not len(samples):
            missing["audio"] = "no_audio"
        else:
            if not np.all(np.isfinite(samples)):
                raise ValueError("audio window contains NaN or Inf samples")
            fitted = fit_audio(samples, cfg.audio_samples)
            if float(np.sqrt(np.mean(fitted**2))) < self.config.silence_rms:
                missing["audio"] = "silent"
            else:
                audio_values = fitted[None]
        present = np.array([[visual_present, audio_values is not None]])
        hidden = cfg.text_config.hidden_size
        visual = (self.backend.pool_frames(np.stack([f.embedding for f in features])[None]) if features
                  else np.zeros((1, cfg.num_visual_tokens, hidden), np.float32))
        audio = self.backend.encode_audio(audio_values) if audio_values is not None else np.zeros(
            (1, cfg.num_audio_tokens, hidden), np.float32)
        tokens = ModalityTokens(visual, audio)
        encode_ms = (time.monotonic() - t) * 1e3
        boxes = [f.box for f in features or [] if f.box is not None]
        padded_seconds: dict[str, float] = {}
        if features:
            padded_seconds["visual"] = round(padded.get("video", 0.0), 6)
        if samples is not None and len(samples):
            padded_seconds["audio"] = round(padded.get("audio", 0.0), 6)
        event = make_event(
            "window", window=w, t_start=round(t_start, 6), t_end=round(t_start + self.plan.length, 6),
            label=None, probs={}, mi={}, importance={}, dominant=None,
            present={m: bool(p) for m, p in zip(names, present[0].tolist())}, missing=missing,
            padded_seconds=padded_seconds,
            face={"box": boxes[-1].as_list() if boxes else None, "frames_with_face": with_face,
                  "frames_sampled": len(features or [])},
            latency_ms={}, drops={"frames": 0, "windows": 0, "captured_frames": 0, "windows_seen": 0},
        )
        mi_ms = 0.0
        if present.any():
            t = time.monotonic()
            res = self.backend.score_mi(tokens, present)
            mi_ms = (time.monotonic() - t) * 1e3
            dom = int(res.dominant[0])
            event.update(
                label=cfg.labels[int(res.predicted[0])],
                probs={label: float(p) for label, p in zip(cfg.labels, res.probs[0].tolist())},
                mi={m: float(v) for m, v in zip(names, res.mi[0].tolist())},
                importance={m: float(v) for m, v in zip(names, res.importance[0].tolist())},
                dominant=names[dom] if dom >= 0 else None,
            )
        event["latency_ms"] = {**{k: round(v, 3) for k, v in latency.items()}, "encode": round(encode_ms, 3),
                               "mi": round(mi_ms, 3), "total": round((time.monotonic() - closed_at) * 1e3, 3)}
        if not present.any():
            return event, None, None
        return event, tokens, present

    def _rationale(self, w: int, window_event: dict[str, Any], tokens: ModalityTokens, visible: np.ndarray,
                   stale) -> Iterator[dict[str, Any]]:
        """``rationale_token`` events as tokens are chosen, then the ``rationale`` event (cancelled if ``stale()``)."""
        cfg = self.model_config
        ids, lead = rationale_prompt(cfg, window_event["dominant"])
        started = time.monotonic()
        first_token_ms = None
        generated: list[int] = []
        text = lead
        cancelled = False
        anchor = answer_anchor(cfg, window_event["label"], self.config.rationale_answer)
        with self._lock:
            self._check_open()
            steps = iter_greedy(self.backend, [ids], tokens, visible,
                                max_new_tokens=self.config.max_rationale_tokens, anchor=anchor)
            try:
                for nxt in steps:
                    generated.append(int(nxt[0]))
                    if first_token_ms is None:
                        first_token_ms = (time.monotonic() - started) * 1e3
                    full = rationale_text(self.tokenizer, cfg, generated, lead).removeprefix("<think>")
                    delta, text = full[len(text):], full
                    if delta:
                        yield make_event("rationale_token", window=w, index=len(generated) - 1, text=delta)
                    if stale is not None and stale():
                        cancelled = True
                        break
            finally:
                steps.close()
        final = "<think>" + text
        parsed = parse_trace(final, cfg.labels)
        own, emotion, consistent = read_closing(cfg, self.judge, parsed, anchor, cancelled=cancelled)
        yield make_event(
            "rationale", window=w, text=final, segments=dict(parsed.segments), first_modality=parsed.first_modality,
            answer=parsed.answer, model_answer=own, explanation_emotion=emotion, consistent=consistent,
            tokens=len(generated), cancelled=cancelled,
            latency_ms={"first_token": None if first_token_ms is None else round(first_token_ms, 3),
                        "full": round((time.monotonic() - started) * 1e3, 3)},
        )
