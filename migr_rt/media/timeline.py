"""Where decoded media sit in time: the thresholds of a timestamp discontinuity, and audio placed by its timestamps.

A player plays each stream from its own timestamps. :class:`AudioTimeline`
puts decoded audio on the video's timeline the same way (leading silence,
skipped lead-in, holes filled), so a window pairs each face with the voice
heard while it is shown; :func:`migr_rt.media.decode.iter_decoded` drives it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np

from migr_rt.media.errors import CorruptMediaError

logger = logging.getLogger(__name__)

#: A video timestamp that jumps back by more than ``BACKWARD_JUMP`` or ahead by more than
#: ``FORWARD_JUMP`` seconds is a discontinuity (concatenated MPEG-TS segments, a corrupt timestamp): the
#: timeline then goes on one source frame later instead of rewinding, or of filling the gap with hours of
#: copies of one frame. These are the thresholds ffmpeg applies to such jumps (0.1 s, ``dts_delta_threshold``).
BACKWARD_JUMP = 0.1
FORWARD_JUMP = 10.0

#: Audio whose timestamps leave a hole longer than this (seconds) between two frames has lost packets (a
#: dropped network packet, a cut in an edit): the hole is filled with silence so that later speech stays with
#: the faces shown while it is heard. Shorter differences are timestamp rounding (Matroska keeps milliseconds)
#: and are left alone, as ffmpeg's ``aresample=async`` leaves them (its ``min_hard_comp`` is 0.1 s too).
_AUDIO_GAP = 0.1

#: A stereo frame whose mono mix keeps less than this share of its two channels' energy (-10 dB) holds one
#: signal in opposite phase on its two sides; ordinary stereo keeps about all of it (uncorrelated sides) or more.
_CANCELLED = 0.1

#: Once turned, the right channel stays turned until the mix keeps more than this share again (-3 dB): the share is
#: taken over the last ``_PHASE_MEMORY`` seconds, weighted by energy, so quiet syllables and pauses between words
#: (where the room's uncorrelated noise dominates) do not switch the mix back and forth within one recording.
_UNCANCELLED = 0.5
_PHASE_MEMORY = 0.5

#: How far (seconds) demuxed audio may trail a video frame that leaps ahead for that leap to count as a pause
#: in the picture rather than a discontinuity (containers interleave the streams within about half a second).
_PAUSE_SLACK = 1.0

#: How far apart (seconds, in their own timestamps) the video and the audio may start again after a discontinuity
#: for the two to be one restart (a sender started over): the muxer interleaves them within about a second.
_RESTART_SPAN = 2.0

#: Highest audio sample rate taken as real (768 kHz PCM exists); anything above is a corrupt header.
_MAX_SAMPLE_RATE = 768_000


class Restart:
    """Where the video and the audio go on after a timestamp discontinuity, so that they go on together.

    A sender restarted on the same UDP port (or MPEG-TS segments joined) starts its timestamps over in mid-stream,
    and the stream cut off before it seldom ends its two streams together: killed, ``ffmpeg`` loses the second of
    audio its muxer held. Each going on from its own end, every later voice was heard that second before its face.
    So the first stream to jump goes on from its own end, and the other, finding its own jump at a nearby
    timestamp, is placed relative to it by their new timestamps; where that is before its own end (the first had
    ended short), it goes on from its end and the first is delayed by the difference from where it has got to
    (silence or the last frame held: the first moments after the restart are that much early, the rest together).
    A jump in one stream alone (a corrupt timestamp, or an edit) goes on from its own end, as it did before:
    the other stream, demuxed up to ~10 s ahead of it by the muxer's interleaving, is no guide to where it ends.
    Except when the other restarted on its own before, its timestamps starting where this one's now do (a sender
    restarted without its camera, then with it): the stream that sat out that restart goes on from the later of
    the two ends, where the other has got to.
    """

    def __init__(self) -> None:
        self._anchor: tuple[str, float, float] | None = None  # (stream, new timestamp, its place on the timeline)

    def place(self, stream: str, raw: float, end: float, other_end: float) -> tuple[float, float]:
        """``(where stream's first frame after its jump goes, how far to delay the other stream from where it has
        got to)``; ``raw``: that frame's timestamp; ``end``, ``other_end``: where the two streams end on the
        timeline."""
        anchor = self._anchor
        # The other stream's last jump, to timestamps near this one's: the two started over together, or (below)
        # the other restarted on its own before and this one sat that restart out.
        near = anchor is not None and anchor[0] != stream and abs(raw - anchor[1]) <= _RESTART_SPAN
        if near:
            placed = anchor[2] + raw - anchor[1]
            # One restart's two jumps come near each other on the timeline too. A jump far behind is an older one
            # that the other stream had no part in (senders start their timestamps at the same value each time):
            # paired with it, this one went back there.
            if placed >= max(end, other_end) - _RESTART_SPAN:
                self._anchor = None
                return (placed, 0.0) if placed >= end else (end, end - placed)
        # Near but far behind on the timeline: the other restarted on its own since this one's last jump (senders
        # start their timestamps at the same value each time), and this one goes on where the other has got to. A
        # jump of the other elsewhere (a corrupt timestamp and the jump back) says nothing of this one.
        resume = max(end, other_end) if near else end
        self._anchor = (stream, raw, resume)
        return resume, 0.0


class AudioTimeline:
    """Decoded audio frames as mono chunks at one rate, placed on the video's timeline by their timestamps.

    A player starts each stream at its own timestamps: audio that an editor
    started 0.5 s after the picture is heard 0.5 s after it, and the AAC priming
    an MPEG-TS keeps (no edit list trims it) is heard before the first frame. Sample
    ``n`` of the output belongs at ``n / sample_rate`` from the first video frame,
    as frame ``k`` at ``k / fps``: audio that starts later is led by silence,
    audio from before the first frame is skipped, and a hole in the timestamps
    (lost packets) is filled with silence, so that a window pairs each face with
    the voice heard while it is shown. Without video the audio's own start is zero.
    Until the first video frame is decoded (its decoder may lag the audio's), the
    audio is held; at most ``FORWARD_JUMP`` seconds of it, then it is placed as it
    comes, like a timestamp jump (unless it runs on to the first frame: see :meth:`zero`).
    """

    def __init__(self, path: str | Path, sample_rate: int, *, video: bool,
                 resume: Callable[[float, float], float] | None = None,
                 gaps_trusted: Callable[[], bool] | None = None) -> None:
        #: ``resume(timestamp, end)``: where (timeline seconds) audio stamped ``timestamp`` goes on after a jump, the
        #: audio ending at ``end`` (see :class:`Restart`); None: from where it ended
        self.path, self.sample_rate, self.resume = path, sample_rate, resume
        #: ``gaps_trusted()``: False while a hole or jump in the timestamps says nothing of the audio (a sound card's
        #: timestamps follow the wall clock, which NTP may have just stepped: see ``runtime/clock_steps.py``); the
        #: frames then follow on from each other. None: always trusted
        self.gaps_trusted = gaps_trusted
        self.placed = 0  #: samples handed out (on the timeline, from its zero)
        self._resampler: av.AudioResampler | None = None
        self._layout: tuple[str, str, int] | None = None  # (format, layout, rate) the resampler was built for
        self._fed = 0.0  # seconds of source audio fed to the resampler
        self._first = True
        self._start: float | None = None  # timestamp of the first audio frame
        self._end: float | None = None  # where the previous frame's timestamps say it ended
        self._held: list[np.ndarray] | None = [] if video else None  # None once the audio's place is known
        self._early = False  # the held audio was handed out from its own start before any video frame
        self._origin: float | None = None  # the timeline's zero (None: the audio's own start)
        self._skip = 0  # samples still to skip (audio before the first video frame)
        self._warned_format = self._warned_gap = self._warned_jump = self._warned_phase = False
        self._mixed = self._sides = 0.0  # energy of the mono mix / of the two channels, fading over _PHASE_MEMORY
        self._turned = False  # the right channel is being turned

    def push(self, frame: av.AudioFrame) -> list[np.ndarray]:
        """The chunks ``frame`` completes, led by silence where its timestamp leaves a hole."""
        if not 0 < frame.sample_rate <= _MAX_SAMPLE_RATE:
            # A corrupt header; resampling from e.g. 738 MHz would take seconds to give nothing.
            raise CorruptMediaError(self.path, f"audio sample rate {frame.sample_rate} Hz is not plausible")
        chunks: list[np.ndarray] = []
        t, seconds = frame.time, frame.samples / frame.sample_rate
        if self._first:
            self._first, self._start = False, t
            chunks += self._lead()
        elif t is not None and self._end is not None and (self.gaps_trusted is None or self.gaps_trusted()):
            chunks += self._bridge(t - self._end, t)
        if t is not None:
            self._end = t + seconds
        elif self._end is not None:
            self._end += seconds
        layout = (frame.format.name, frame.layout.name, frame.sample_rate)
        if self._layout is not None and layout != self._layout:
            # A resampler is bound to one input format: finish this one and start another.
            if not self._warned_format:
                logger.warning("%s: audio changes from %s %s %d Hz to %s %s %d Hz at %.3f s of audio; resampling both",
                               self.path, *self._layout, *layout, self._fed)
                self._warned_format = True
            chunks += self._drain()
        self._layout = layout
        if self._resampler is None:
            self._resampler = av.AudioResampler(format="flt", layout="mono", rate=self.sample_rate)
        chunks += [out.to_ndarray().reshape(-1) for out in self._resampler.resample(self._in_phase(frame))]
        self._fed += seconds
        return self._release(chunks)

    def heard_through(self, t: float) -> bool:
        """Whether the audio placed so far runs on to about ``t`` seconds of the timeline.

        A video stream that skips ahead by more than ``FORWARD_JUMP`` is a discontinuity when the audio
        skipped with it, but a pause in the picture (a screen recorder sends no frames while nothing moves)
        when the audio went on through it: then the last frame is held, as a player holds it.
        """
        return self.placed / self.sample_rate >= t - _PAUSE_SLACK

    def zero(self, first_frame: float) -> float:
        """The timeline's zero for a first video frame at ``first_frame`` seconds: that frame's time, or the audio's
        start when the audio, handed out from its start (held ``FORWARD_JUMP`` s without a frame), ran on to it.

        A live stream's first keyframe may come long after its sound (a camera's keyframe every 12 s): that audio
        is not a timestamp jump but was heard while the picture was still to come, and laid from the frame on it
        would stay that far from the faces for the whole stream. The frame is then held from the audio's start.
        """
        start = self._start
        if not self._early or start is None or first_frame <= start or not self.heard_through(first_frame - start):
            return first_frame
        logger.info("%s: the first video frame comes %.3f s into the audio; it is shown from the audio's start",
                    self.path, first_frame - start)
        return start

    def place(self, origin: float | None) -> list[np.ndarray]:
        """Put the audio on the timeline whose zero is ``origin`` (the first video frame's time; None: the audio's
        own start), and hand out what was held meanwhile."""
        if self._held is None:
            return []
        held, self._held = self._held, None
        self._origin = origin
        return self._release(held if self._first else [*self._lead(), *held])

    def _lead(self) -> list[np.ndarray]:
        """Silence before the audio when it starts after the timeline's zero (or the number of samples to skip
        when it starts before), once the first audio frame and the zero are both known."""
        if self._held is not None or self._origin is None or self._start is None:
            return []
        lead = self._start - self._origin
        if abs(lead) > FORWARD_JUMP:
            logger.warning("%s: audio starts %.3f s from the first video frame; taken as a timestamp jump, "
                           "the audio starts with the video", self.path, lead)
            return []
        samples = int(round(lead * self.sample_rate))
        if samples > 0:
            logger.info("%s: audio starts %.3f s after the first video frame; silence until then", self.path, lead)
            return [np.zeros(samples, np.float32)]
        if samples < 0:
            logger.info("%s: audio starts %.3f s before the first video frame; that audio is skipped",
                        self.path, -lead)
            self._skip = -samples
        return []

    def finish(self, origin: float | None) -> list[np.ndarray]:
        """The rest, once the input is over (placed from ``origin`` if no video frame placed it)."""
        return self.place(origin) + self._release(self._drain())

    def _in_phase(self, frame: av.AudioFrame) -> av.AudioFrame:
        """``frame`` with its right channel's polarity turned where its two channels cancel in a mono mix.

        A voice recorded with one side inverted (a balanced cable's pins swapped, a microphone's "wide" mode)
        sounds normal on headphones or speakers, but summed to mono it cancels to near silence, and every
        window would be "silent". Turning one side makes the mix the voice again, as loud as in phase. The
        polarity is the recording's, so it is judged over the last half second, not frame by frame: a quiet
        syllable under the room's noise keeps its side turned, instead of cancelling and clicking in and out.
        """
        if len(frame.layout.channels) != 2:
            return frame
        data = frame.to_ndarray()
        if data.dtype.kind not in "fi":  # unsigned 8-bit PCM: not worth the offset arithmetic
            return frame
        left, right = (data[0], data[1]) if frame.format.is_planar else (data[0, 0::2], data[0, 1::2])
        # Energies as three dot products (a fifth of the time of squaring float64 copies, for every stereo frame),
        # integers scaled to [-1, 1] so that a change of sample format mid-way does not outweigh the other.
        scale = 1.0 / float(np.iinfo(data.dtype).max) ** 2 if data.dtype.kind == "i" else 1.0
        left32, right32 = left.astype(np.float32, copy=False), right.astype(np.float32, copy=False)
        sides = (float(np.dot(left32, left32)) + float(np.dot(right32, right32))) * scale
        mixed = sides + 2 * float(np.dot(left32, right32)) * scale
        fade = math.exp(-frame.samples / (_PHASE_MEMORY * frame.sample_rate))
        self._mixed, self._sides = self._mixed * fade + mixed, self._sides * fade + sides
        if self._sides > 0:
            share = self._mixed / self._sides
            self._turned = share < _CANCELLED or (self._turned and share < _UNCANCELLED)
        if not self._turned:
            return frame
        if not self._warned_phase:
            logger.warning("%s: the two audio channels are in opposite phase (%.3f s of audio in); one is turned so "
                           "that the mono mix does not cancel", self.path, self._fed)
            self._warned_phase = True
        np.negative(right, out=right)
        turned = av.AudioFrame.from_ndarray(data, format=frame.format.name, layout=frame.layout)
        turned.sample_rate, turned.pts, turned.time_base = frame.sample_rate, frame.pts, frame.time_base
        return turned

    def _bridge(self, gap: float, t: float) -> list[np.ndarray]:
        """Silence for a hole of ``gap`` seconds before the next frame (stamped ``t``); jumps like the video's are
        continued, from where :attr:`resume` says once the audio is on the video's timeline."""
        if -_AUDIO_GAP <= gap <= _AUDIO_GAP:
            return []
        if not _AUDIO_GAP < gap <= FORWARD_JUMP:
            if not self._warned_jump:
                logger.warning("%s: audio timestamp jumps by %.3f s at %.3f s of audio; continuing the timeline",
                               self.path, gap, self._fed)
                self._warned_jump = True
            if self.resume is None or self._held is not None:
                return []
            drained = self._drain()
            end = (self.placed + self._pending(drained)) / self.sample_rate
            lead = max(self.resume(t, end) - end, 0.0)  # never before its own end (see Restart)
            return [*drained, np.zeros(int(round(lead * self.sample_rate)), np.float32)]
        if not self._warned_gap:
            logger.warning("%s: audio timestamps skip %.3f s at %.3f s of audio (lost packets); filled with silence",
                           self.path, gap, self._fed)
            self._warned_gap = True
        return [*self._drain(), np.zeros(int(round(gap * self.sample_rate)), np.float32)]

    def delay(self, seconds: float) -> list[np.ndarray]:
        """Silence of ``seconds`` from where the audio has got to: the video's restart came after the audio's (see
        :class:`Restart`)."""
        if self._held is not None or seconds <= 0:
            return []
        return self._release([*self._drain(), np.zeros(int(round(seconds * self.sample_rate)), np.float32)])

    def _pending(self, chunks: list[np.ndarray]) -> int:
        """Samples of ``chunks`` that :meth:`_release` will hand out (less those still to skip)."""
        return max(sum(len(c) for c in chunks) - self._skip, 0)

    def _drain(self) -> list[np.ndarray]:
        """What the resampler still holds; the next frame gets a new one."""
        if self._resampler is None:
            return []
        chunks = [out.to_ndarray().reshape(-1) for out in self._resampler.resample(None)]
        self._resampler = None
        return chunks

    def _release(self, chunks: list[np.ndarray]) -> list[np.ndarray]:
        """Hand out ``chunks`` (less what is skipped), or hold them while the first video frame is still to come."""
        if self._held is not None:
            self._held += chunks
            if sum(len(c) for c in self._held) > FORWARD_JUMP * self.sample_rate:
                logger.warning("%s: %.0f s of audio before any video frame; the audio starts with the video",
                               self.path, FORWARD_JUMP)
                chunks, self._held, self._early = self._held, None, True
            else:
                return []
        out = []
        for chunk in chunks:
            if self._skip:
                cut = min(self._skip, len(chunk))
                chunk, self._skip = chunk[cut:], self._skip - cut
            if len(chunk):
                out.append(chunk)
                self.placed += len(chunk)
        return out
