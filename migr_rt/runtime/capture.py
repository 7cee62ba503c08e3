"""Capture threads and the bounded buffer between them and analysis.

Capture never waits for inference on a live source: each input has its own
thread that decodes into :class:`MediaBuffer`, which keeps only what analysis
still needs (the frames windows will sample, the last seconds of audio) in
fixed-size structures, and closes a window every hop. When analysis falls
behind, the oldest unprocessed sampled frame and the oldest pending window are
dropped, and counted. Files and the demo replay either at their own rate
(``realtime``: like a camera, with drops) or losslessly (no drop: every
window of the file is analysed). A lossless replay waits for analysis only
where analysis is sure to catch up (sampled frames, closed windows); the
audio it decodes ahead instead grows the audio ring, which never overwrites
a window analysis has not read yet, because capture cannot wait for a window
that still needs video this same thread has yet to decode.

A live input that fails or ends is reopened with exponential backoff until
``reconnect_timeout``; then the buffer is marked lost and the run ends. A URL
whose media state a duration (a remote file, a VOD playlist) is read like a
file: its end is the end of the run, and a replay of it is paced to its own
rate; a live stream (RTSP, an HLS live playlist) states none.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from migr_rt.media.decode import iter_decoded
from migr_rt.media.tracks import states_times
from migr_rt.runtime.clock_steps import ClockSteps
from migr_rt.runtime.sources import InputSpec, SourceError, read_problem

logger = logging.getLogger(__name__)


#: The most audio (seconds) a live buffer keeps beyond one window for analysis that lags.
LIVE_AUDIO_SLACK_S = 120.0
#: FFmpeg's inputs that stamp a sound card's audio with the wall clock (see clock_steps.py).
WALL_CLOCK_AUDIO = ("alsa", "pulse", "oss", "jack")


@dataclass(frozen=True)
class WindowPlan:
    """Window ``w`` covers media time ``[w * hop, w * hop + length)`` and samples ``frames_per_window`` frames."""

    length: float
    hop: float
    fps: float
    sample_rate: int
    frames_per_window: int

    def start(self, w: int) -> float:
        return w * self.hop

    def frame_indices(self, w: int) -> list[int]:
        """The output-frame indices window ``w`` samples."""
        return self.sample_indices(self.start(w))

    def sample_indices(self, start: float) -> list[int]:
        """Frame indices a window starting at ``start`` seconds samples: evenly spaced, one per length / T."""
        step = self.length / self.frames_per_window
        return [max(int(round((start + j * step) * self.fps)), 0) for j in range(self.frames_per_window)]

    def audio_span(self, w: int) -> tuple[int, int]:
        first = int(round(self.start(w) * self.sample_rate))
        return first, first + int(round(self.length * self.sample_rate))

    def padded_seconds(self, start: float, frames: int | None, samples: int | None) -> dict[str, float]:
        """Seconds of the window starting at ``start`` past the end of ``frames`` video frames / ``samples``
        audio samples from the media's start (None: no such stream, no entry), at most the window length.

        The stream and ``analyze`` both report this, so the same window says the same."""
        padded = {}
        if frames is not None:
            padded["video"] = min(max(start + self.length - frames / self.fps, 0.0), self.length)
        if samples is not None:
            last = int(round(start * self.sample_rate)) + int(round(self.length * self.sample_rate))
            padded["audio"] = min(max(last - samples, 0) / self.sample_rate, self.length)
        return padded

    def frames_needed(self, w: int) -> int:
        """Output frames that must have arrived before window ``w`` closes."""
        return int(round((self.start(w) + self.length) * self.fps))


@dataclass
class Ticket:
    """A closed window waiting for analysis; ``closed_at`` (monotonic) starts its latency clock."""

    window: int
    closed_at: float


@dataclass
class Counters:
    captured_frames: int = 0
    dropped_frames: int = 0
    dropped_windows: int = 0
    windows_seen: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"frames": self.dropped_frames, "windows": self.dropped_windows,
                "captured_frames": self.captured_frames, "windows_seen": self.windows_seen}


@dataclass
class MediaBuffer:
    """Thread-safe, bounded hand-over between capture threads and the analysis loop."""

    plan: WindowPlan
    has_video: bool
    has_audio: bool
    realtime: bool
    max_pending_windows: int = 2
    audio_seconds_kept: float = 0.0  #: default: window length + 4 hops (2 minutes at most)
    #: lossless replays grow the audio ring up to this many seconds to keep unread windows' samples
    max_audio_seconds: float = 600.0
    counters: Counters = field(default_factory=Counters)

    def __post_init__(self) -> None:
        self._cond = threading.Condition()
        self._frames: deque[tuple[int, np.ndarray]] = deque()  # sampled frames not yet taken by analysis
        self._frame_limit = self.plan.frames_per_window * 2
        self._wanted: set[int] = set()
        self._wanted_upto = -1  # windows whose sampled frames are in _wanted
        self._video_count = 0
        self._audio_count = 0
        # Live: ~4 hops of slack for analysis to read a closed window (a queued one may be max_pending hops old),
        # but no more than 2 minutes: an hour's hop would otherwise keep an hour of audio (~1 GB).
        keep = self.audio_seconds_kept or (self.plan.length + min(4 * self.plan.hop, LIVE_AUDIO_SLACK_S))
        self._audio = np.zeros(int(keep * self.plan.sample_rate), np.float32)  # sample i lives at i % len
        self._reading: int | None = None  # the window analysis took last (it reads its audio before taking again)
        self._ring_full_logged = False
        self._tickets: deque[Ticket] = deque()
        self._next_window = 0
        self._video_ended = not self.has_video
        self._audio_ended = not self.has_audio
        self._lost: str | None = None
        self._closing = 0  # capture threads closing windows now (a lossless close may be waiting for room)
        self._stopped = False
        self._status: deque[tuple[str, str, str]] = deque(maxlen=64)
        self._taps: list[Callable[[int, np.ndarray], None]] = []
        self._audio_taps: list[Callable[[np.ndarray], None]] = []

    # -- capture side ------------------------------------------------------------------------------------------------
    def add_tap(self, tap: Callable[[int, np.ndarray], None]) -> None:
        """Also hand every captured frame to ``tap(index, frame)`` (e.g. a video writer's own bounded queue)."""
        self._taps.append(tap)

    def add_audio_tap(self, tap: Callable[[np.ndarray], None]) -> None:
        """Also hand every captured audio chunk (mono float32 at the plan's rate) to ``tap``."""
        self._audio_taps.append(tap)

    def push_frame(self, image: np.ndarray) -> None:
        for tap in self._taps:
            tap(self._video_count, image)
        with self._cond:
            k = self._video_count
            self._extend_wanted(k)
            self._video_count += 1
            self.counters.captured_frames += 1
            if k in self._wanted:
                self._wanted.discard(k)
                if not self.realtime:
                    self._cond.wait_for(lambda: len(self._frames) < self._frame_limit or self._stopped)
                elif len(self._frames) >= self._frame_limit:
                    self._frames.popleft()
                    self.counters.dropped_frames += 1
                self._frames.append((k, image))
            self._close_windows()
            self._cond.notify_all()

    def push_audio(self, samples: np.ndarray) -> None:
        samples = np.asarray(samples, np.float32).reshape(-1)
        for tap in self._audio_taps:
            tap(samples)
        with self._cond:
            n = len(samples)
            if not self.realtime:
                self._keep_unread_audio(self._audio_count + n)
            size = len(self._audio)
            if n > size:
                samples, skipped = samples[-size:], n - size
            else:
                skipped = 0
            self._audio[np.arange(self._audio_count + skipped, self._audio_count + n) % size] = samples
            self._audio_count += n
            self._close_windows()
            self._cond.notify_all()

    def end(self, kind: str) -> None:
        """A stream ended (files); windows it would have held are closed with what arrived."""
        with self._cond:
            if kind == "video":
                self._video_ended = True
            else:
                self._audio_ended = True
            self._close_windows()
            self._cond.notify_all()

    def lose(self, reason: str) -> None:
        with self._cond:
            self._lost = reason
            self._cond.notify_all()

    def status(self, level: str, code: str, message: str) -> None:
        with self._cond:
            self._status.append((level, code, message))
            self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    @property
    def stopped(self) -> bool:
        return self._stopped

    def _keep_unread_audio(self, count: int) -> None:
        """Grow the audio ring so that holding ``count`` samples keeps every window analysis has yet to read."""
        oldest = self._reading if self._reading is not None else (
            self._tickets[0].window if self._tickets else self._next_window)
        needed = count - self.plan.audio_span(oldest)[0]
        size = len(self._audio)
        if needed <= size:
            return
        limit = max(size, int(self.max_audio_seconds * self.plan.sample_rate))
        grown = min(max(needed, size + size // 2), limit)
        if grown <= size:
            if not self._ring_full_logged:
                self._ring_full_logged = True
                logger.warning("audio ran %.0f s ahead of the oldest unread window; its samples are overwritten "
                               "and windows dropped", needed / self.plan.sample_rate)
            return
        first = max(self._audio_count - size, 0)
        kept = self._audio[np.arange(first, self._audio_count) % size]
        self._audio = np.zeros(grown, np.float32)
        self._audio[np.arange(first, self._audio_count) % grown] = kept

    def _extend_wanted(self, k: int) -> None:
        # Windows starting up to frame k (plus one) register the frames they sample that are still to come.
        horizon = int(k / self.plan.fps / self.plan.hop) + 1
        while self._wanted_upto < horizon:
            self._wanted_upto += 1
            self._wanted.update(i for i in self.plan.frame_indices(self._wanted_upto) if i >= k)

    def _ready(self, w: int) -> bool:
        video_ok = self._video_ended or self._video_count >= self.plan.frames_needed(w)
        audio_ok = self._audio_ended or self._audio_count >= self.plan.audio_span(w)[1]
        return video_ok and audio_ok

    def _media_end(self) -> float:
        ends = []
        if self.has_video:
            ends.append(self._video_count / self.plan.fps)
        if self.has_audio:
            ends.append(self._audio_count / self.plan.sample_rate)
        return max(ends, default=0.0)

    def _close_windows(self) -> None:
        # While a lossless close waits for room (releasing the lock), more windows are still to come: the buffer
        # must not look finished to analysis that empties the queue meanwhile.
        self._closing += 1  # a count: two inputs (a file and a microphone) have a capture thread each
        try:
            self._close_ready_windows()
        finally:
            self._closing -= 1

    def _close_ready_windows(self) -> None:
        while self._ready(self._next_window):
            w = self._next_window
            finished = self._video_ended and self._audio_ended
            if finished and w > 0 and self.plan.start(w) + self.plan.length > self._media_end() + 1e-6:
                return  # the streams ended: no partial window after the last full one
            if finished and w == 0 and self._media_end() <= 0:
                return  # nothing arrived at all
            if self.realtime:
                if len(self._tickets) >= self.max_pending_windows:
                    self._tickets.popleft()
                    self.counters.dropped_windows += 1
            else:
                self._cond.wait_for(lambda: len(self._tickets) < self.max_pending_windows or self._stopped)
            self._tickets.append(Ticket(w, time.monotonic()))
            self.counters.windows_seen += 1
            self._next_window += 1
            if finished and self.plan.start(self._next_window) + self.plan.length > self._media_end() + 1e-6:
                return

    # -- analysis side -----------------------------------------------------------------------------------------------
    def take(self, timeout: float) -> tuple[list[tuple[int, np.ndarray]], Ticket | None, list[tuple[str, str, str]]]:
        """Sampled frames to process (before the window), the next closed window, and status; waits up to ``timeout``."""
        with self._cond:
            if not (self._frames or self._tickets or self._status or self.finished):
                self._cond.wait(timeout)
            frames = list(self._frames)
            self._frames.clear()
            ticket = self._tickets.popleft() if self._tickets else None
            if ticket is not None:
                self._reading = ticket.window
            status = list(self._status)
            self._status.clear()
            self._cond.notify_all()
            return frames, ticket, status

    def window_waiting(self) -> bool:
        """A newer window closed (the rationale being written is stale)."""
        with self._cond:
            return bool(self._tickets)

    def audio(self, first: int, last: int) -> np.ndarray | None:
        """Samples ``[first, last)`` of the stream, zero-padded past its end; None if already overwritten."""
        with self._cond:
            oldest = self._audio_count - len(self._audio)
            if first < oldest:
                return None
            out = np.zeros(last - first, np.float32)
            lo, hi = first, min(last, self._audio_count)
            if hi > lo:
                out[: hi - lo] = self._audio[np.arange(lo, hi) % len(self._audio)]
            return out

    def padded_seconds(self, w: int) -> dict[str, float]:
        """Seconds of window ``w`` past the end of each stream (``video``, ``audio``) that went into it.

        A stream that ended before the window did (a clip shorter than the window, audio outlasting the video)
        is padded: its last sampled frame held, its audio zero-filled. The window keeps its nominal span, so the
        event says how much of it no media covered. A stream still running covers every window that closed
        (0; frames_needed rounds, so counting frames against it would see half a frame missing now and then).
        """
        with self._cond:
            padded = self.plan.padded_seconds(self.plan.start(w), self._video_count if self.has_video else None,
                                              self._audio_count if self.has_audio else None)
            ended = {"video": self._video_ended, "audio": self._audio_ended}
            return {kind: seconds if ended[kind] else 0.0 for kind, seconds in padded.items()}

    @property
    def finished(self) -> bool:
        """Nothing more will come: streams ended (or the source was lost) and every closed window was taken."""
        ended = self._video_ended and self._audio_ended and not self._closing
        done = ended or self._lost is not None or self._stopped
        return done and not self._tickets and not self._frames

    @property
    def lost(self) -> str | None:
        return self._lost


def reads_as_file(spec: InputSpec, container) -> bool:
    """Whether an opened input is read like a file (it ends the run where it ends, and can wait for analysis):
    anything not live, and a URL whose media state a duration (a remote file; a live stream states none)."""
    if not spec.live:
        return True
    duration = container.duration
    return "://" in spec.target and duration is not None and duration > 0


class Capture(threading.Thread):
    """Reads one input into the buffer until it ends, the run stops, or (live) it cannot be reopened."""

    def __init__(self, spec: InputSpec, buffer: MediaBuffer, *, realtime: bool, loop: bool = False,
                 reconnect_timeout: float = 10.0, first_container=None, as_file: bool | None = None) -> None:
        super().__init__(name=f"capture {spec.name}", daemon=True)
        self.spec, self.buffer, self.realtime, self.loop = spec, buffer, realtime, loop
        self.reconnect_timeout = reconnect_timeout
        self._container = first_container
        self.error: BaseException | None = None
        self._said_untimed = False
        #: Read like a file (:func:`reads_as_file`, decided on the first container) rather than as a live stream
        #: that may come back.
        self.as_file = not spec.live if as_file is None else as_file
        if self.as_file and spec.live:
            logger.info("%s: states a duration: read as a remote file, ending where it ends", spec.name)

    @property
    def live(self) -> bool:
        """A device or live stream: it paces itself, and when it ends or fails it is reopened."""
        return not self.as_file

    def run(self) -> None:
        kinds = [k for k, on in (("video", self.spec.video), ("audio", self.spec.audio)) if on]
        t0 = time.monotonic()
        media = {"video": 0, "audio": 0}  # output frames / samples pushed (pacing clock for replays)
        plan = self.buffer.plan
        failing_since: float | None = None  # live: when reads began to fail (or end) without handing over media
        delay = 0.25
        last_frame = None  # the newest frame pushed, held to pad the video (across passes: one may bring no video)
        # a sound card's timestamps follow the wall clock, so its holes mean nothing just after NTP steps it
        steps = ClockSteps(self.spec.name) if self.spec.format in WALL_CLOCK_AUDIO else None
        try:
            while not self.buffer.stopped:
                container = self._container or self._reopen()
                self._container = None
                if container is None:
                    return
                pushed = media["video"] + media["audio"]
                clock = self._arrival_clock(container)
                try:
                    with container:
                        for kind, data in iter_decoded(container, self.spec.name, fps=plan.fps,
                                                       sample_rate=plan.sample_rate, video=self.spec.video,
                                                       audio=self.spec.audio, clock=clock,
                                                       audio_gaps_trusted=steps.settled if steps else None):
                            if self.buffer.stopped:
                                return
                            if kind == "video":
                                media["video"] += 1
                                ahead = media["video"] / plan.fps
                                last_frame = data
                            else:
                                media["audio"] += len(data)
                                ahead = media["audio"] / plan.sample_rate
                            if self.realtime and not self.live:
                                pause = t0 + ahead - time.monotonic()
                                if pause > 0:
                                    time.sleep(pause)
                            (self.buffer.push_frame if kind == "video" else self.buffer.push_audio)(data)
                    why = "stream ended"
                except Exception as exc:  # noqa: BLE001 - a live device failing mid-read (unplugged) is reopened
                    if not self.live:
                        raise
                    why, failure = read_problem(exc), exc
                else:
                    failure = None
                if self.live and not self.spec.reopen:  # a pipe: what ended or failed cannot be opened again
                    if failure is not None:
                        raise SourceError(f"{why}{self.spec.hint}") from failure
                    break
                if not self.live:
                    if not self.loop:
                        break
                    self._align_streams(media, last_frame)
                    continue
                # A camera unplugged mid-read fails (ENODEV) rather than ending: both are reopened. Reads that keep
                # failing or ending without media are retried with the same backoff and deadline as opening.
                # A sender stopped mid-stream leaves its two streams cut at different places (its muxer's last
                # second of audio is lost): the reopened stream starts both at one instant, so they are evened first.
                self._align_streams(media, last_frame)
                now = time.monotonic()
                progressed = media["video"] + media["audio"] > pushed
                if progressed or failing_since is None:
                    failing_since, delay = now, 0.25
                elif now + delay - failing_since > self.reconnect_timeout:
                    raise failure or SourceError(f"{why} without media, again and again for "
                                                 f"{self.reconnect_timeout:g} s")
                self.buffer.status("warning", "source_lost", f"{self.spec.name}: {why}; reconnecting")
                if failure is not None or not progressed:
                    self._sleep(delay)
                    delay = min(delay * 2, 4.0)
        except Exception as exc:  # a decoding failure of the input: report it, end the run cleanly
            self.error, why = exc, read_problem(exc)
            logger.warning("%s: capture failed: %s", self.spec.name, why)
            self.buffer.lose(f"{self.spec.name}: {why}")
            return
        for kind in kinds:
            self.buffer.end(kind)

    def _arrival_clock(self, container) -> Callable[[], float] | None:
        """``time.monotonic`` for a live stream whose format carries no timestamps (its frames are then timed by
        their arrival, as sent), else None (timed by their timestamps).

        FFmpeg counts such frames at 25 fps: an ESP32-CAM's 10 fps MJPEG over HTTP ran at 0.4 times real time (the
        first window after 5 s, then one every 1.25 s, each "2 s" window holding 5 s), a 30 fps one 1.2 times.
        A file in such a format (a ``.mjpeg``, a raw ``.h264``) has no arrival times: it keeps FFmpeg's count.
        """
        if not self.live or states_times(container):
            return None
        if not self._said_untimed:
            self._said_untimed = True
            logger.info("%s: its format (%s) carries no timestamps: frames are timed by their arrival",
                        self.spec.name, container.format.name)
        return time.monotonic

    def _sleep(self, seconds: float) -> None:
        """Sleep, but wake within 50 ms when the run stops (a backoff must not hold up Ctrl-C)."""
        deadline = time.monotonic() + seconds
        while not self.buffer.stopped and time.monotonic() < deadline:
            time.sleep(min(0.05, max(deadline - time.monotonic(), 0.0)))

    def _align_streams(self, media: dict[str, int], last_frame: np.ndarray | None) -> None:
        """Before a looped file plays again or a live input is reopened, pad the shorter stream (last frame held /
        silence) to the longer one.

        A file's audio and video seldom end at the same instant (AAC padding alone adds ~24 ms to the demo
        clip); left alone, the difference adds up pass after pass until the audio a window needs has left
        the buffer, and from then on every window is dropped. A live stream cut off mid-way (its sender
        stopped: ``ffmpeg`` killed loses the second of audio its muxer held) ends with its audio a second
        short of its video; reopened without padding, every later voice was heard a second before its face.
        """
        plan = self.buffer.plan
        if last_frame is None or media["audio"] == 0:
            return  # one stream only: nothing to align
        lead = media["audio"] / plan.sample_rate - media["video"] / plan.fps  # seconds of audio ahead
        for _ in range(int(round(lead * plan.fps))):  # whole frames; the remainder carries over to the next pass
            media["video"] += 1
            self.buffer.push_frame(last_frame)
        if lead < 0:
            samples = int(round(-lead * plan.sample_rate))
            media["audio"] += samples
            self.buffer.push_audio(np.zeros(samples, np.float32))

    def _reopen(self):
        """Open the input; a live one is retried with backoff (0.25 s doubling to 4 s) until the timeout.

        An error waiting cannot fix (``SourceError.retryable`` False: an invalid graph, an unknown host, data that
        is not media) ends the run at once instead of after ``reconnect_timeout``. A live stream that now states a
        duration is over and serves a recording of itself: a live HLS playlist whose sender stopped is closed with
        ``#EXT-X-ENDLIST`` and then reads as a file of its last segments. Read, it was replayed as fast as it could
        be downloaded, reopened at its end and replayed again (minutes of old media a second, forever); it is waited
        on like a stream that is not there, until it goes live again (the sender restarted) or the timeout.
        """
        deadline = time.monotonic() + self.reconnect_timeout
        delay, attempt = 0.25, 0
        while not self.buffer.stopped:
            try:
                container = self.spec.open()
                if self.live and reads_as_file(self.spec, container):
                    container.close()
                    raise SourceError(f"{self.spec.name}: the live stream has ended: it now states a duration (a "
                                      "recording of what was streamed, e.g. an HLS playlist closed with "
                                      "#EXT-X-ENDLIST), which is not played again")
                if attempt:
                    self.buffer.status("info", "reconnected", f"{self.spec.name}: reconnected")
                return container
            except SourceError as exc:
                attempt += 1
                if not self.spec.live or not exc.retryable or time.monotonic() + delay > deadline:
                    self.buffer.lose(str(exc) + (f" (gave up after {self.reconnect_timeout:.0f} s)" if attempt > 1 else ""))
                    return None
                self.buffer.status("warning", "reconnecting", f"{exc}; retry {attempt} in {delay:.2f} s")
                self._sleep(delay)
                delay = min(delay * 2, 4.0)
        return None
