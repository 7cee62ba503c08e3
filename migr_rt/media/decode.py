"""Decode any container PyAV reads into frames at a fixed fps and mono audio at a fixed rate.

Readers, the synthetic corpus checks and the file source of the runtime all go
through here, so every clip reaches the model resampled the same way.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np

from migr_rt.media.errors import CorruptMediaError, MediaError, MediaNotFoundError, MissingStreamError

logger = logging.getLogger(__name__)

#: Failures of demuxing, decoding or pixel/sample conversion that mean "this file is unusable".
#: Anything else (AttributeError, NameError, KeyError, AssertionError ...) is a bug here and propagates.
_DECODE_FAILURES: tuple[type[BaseException], ...] = (
    av.error.FFmpegError,
    cv2.error,
    ValueError,
    TypeError,
    IndexError,
    ArithmeticError,
    RuntimeError,
    UnicodeError,
    OSError,
)

#: A video timestamp that jumps back by more than ``_BACKWARD_JUMP`` or ahead by more than
#: ``_FORWARD_JUMP`` seconds is a discontinuity (concatenated MPEG-TS segments, a corrupt timestamp): the
#: timeline then goes on one source frame later instead of rewinding, or of filling the gap with hours of
#: copies of one frame. These are the thresholds ffmpeg applies to such jumps (0.1 s, ``dts_delta_threshold``).
_BACKWARD_JUMP = 0.1
_FORWARD_JUMP = 10.0

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

#: Highest audio sample rate taken as real (768 kHz PCM exists); anything above is a corrupt header.
_MAX_SAMPLE_RATE = 768_000

#: Extra audio decoded beyond ``max_seconds`` before demuxing stops, so that the resampler's
#: look-ahead sees the same input as in a full decode and the kept samples are identical.
_AUDIO_MARGIN = 0.1

#: FFmpeg's ``AV_DISPOSITION_ATTACHED_PIC``: a "video" stream that is one still picture (album or
#: podcast cover art in an MP3, M4A or MKV), not footage of the speaker.
_ATTACHED_PIC = 0x0400

#: FFmpeg's ``AV_DISPOSITION_DEFAULT``: the track a player plays unless told otherwise.
_DEFAULT = 0x0001

#: Audio tracks that are not the voices of the people on screen: a commentary (``COMMENT``), an audio
#: description for blind viewers (``VISUAL_IMPAIRED``, ``DESCRIPTIONS``: a narrator describing the scene) and a
#: music-and-effects track without dialogue (``CLEAN_EFFECTS``).
_NOT_ON_SCREEN = 0x0008 | 0x0100 | 0x20000 | 0x0200


def video_stream(container: av.container.InputContainer) -> av.video.stream.VideoStream | None:
    """The container's first moving-picture video stream, or ``None``.

    Cover art is skipped: an audio file with an album photo is an audio file,
    and a face on its cover is not the speaker's. Read as video, that one
    picture would stand for the speaker's face in every window.
    """
    for stream in container.streams.video:
        if not int(getattr(stream, "disposition", 0)) & _ATTACHED_PIC:
            return stream
    return None


def has_cover_art_only(container: av.container.InputContainer) -> bool:
    """Whether the container's only video streams are cover art (so it is read as audio alone)."""
    return bool(container.streams.video) and video_stream(container) is None


def audio_stream(container: av.container.InputContainer) -> av.audio.stream.AudioStream | None:
    """The audio track of the voices on screen that a player plays, or ``None``.

    A film or a broadcast recording carries several: languages, a director's
    commentary, an audio description; the first is not always the one heard.
    The rule: tracks marked as commentary, audio description or music and
    effects only come last (their voice is not the speaker's, or there is
    none); then the track marked default; then the first in the file.
    """
    def rank(stream: av.audio.stream.AudioStream) -> tuple[bool, bool, int]:
        flags = int(getattr(stream, "disposition", 0))
        return bool(flags & _NOT_ON_SCREEN), not flags & _DEFAULT, stream.index

    return min(container.streams.audio, key=rank, default=None)


@dataclass
class DecodedMedia:
    """Frames (``(T, H, W, 3)`` uint8 RGB) and audio (``(S,)`` float32); ``None`` where the stream is absent."""

    frames: np.ndarray | None
    audio: np.ndarray | None
    fps: float
    sample_rate: int


def decode_media(
    path: str | Path,
    *,
    fps: float = 25.0,
    sample_rate: int = 16000,
    video: bool = True,
    audio: bool = True,
    require_video: bool = False,
    require_audio: bool = False,
    max_seconds: float | None = None,
) -> DecodedMedia:
    """Decode ``path`` to fixed-rate frames and audio.

    Frames are resampled by taking, for each output instant ``k / fps``, the
    most recent source frame (so a 30 fps source gives evenly spaced 25 fps
    output without interpolation artefacts). Audio is resampled to mono
    float32 at ``sample_rate`` with ffmpeg's resampler. Both start at the first
    video frame (without video, or when the audio ran on for over 10 s before
    it, at the first audio sample, the first frame held until its time): audio that starts
    later is led by silence, audio from before it is skipped, and holes in the
    audio timestamps are silence, so that sample ``n / sample_rate`` is heard
    with frame ``k / fps`` as a player plays them.

    ``max_seconds`` keeps the first ``max_seconds`` of each stream; demuxing
    stops as soon as every requested stream is past it, so cutting a long file
    costs only the part kept (the result is identical to decoding all of it
    and cutting).

    Streams that change mid-way (concatenated recordings) still decode: later
    frames are resized to the first frame's size, audio of a new sample rate
    or layout is resampled like the rest (one warning per file and kind), and
    video timestamps that jump backwards (or implausibly far ahead) are
    continued rather than followed.

    Raises :class:`MediaNotFoundError`, :class:`CorruptMediaError` (empty,
    truncated or undecodable files; every failure of demuxing, decoding or
    conversion arrives as this) or :class:`MissingStreamError` when a
    ``require_*`` stream is absent. A stream that is merely absent (and not
    required) comes back as ``None``. Invalid arguments raise ``ValueError``.
    """
    if fps <= 0 or not math.isfinite(fps):
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate!r}")
    if max_seconds is not None and not (max_seconds > 0 and math.isfinite(max_seconds)):
        raise ValueError(f"max_seconds must be a positive number or None, got {max_seconds!r}")
    path = Path(path)
    if not path.exists():
        raise MediaNotFoundError(path, "file does not exist")
    if path.is_dir():
        raise CorruptMediaError(path, "is a directory, not a media file")
    if path.stat().st_size == 0:
        raise CorruptMediaError(path, "file is empty (0 bytes)")
    try:
        container = av.open(str(path), mode="r")
    except _DECODE_FAILURES as exc:
        raise CorruptMediaError(path, f"cannot be opened as media ({exc.__class__.__name__}: {exc})") from exc

    try:
        with container:
            return _decode_open(
                container,
                path,
                fps=fps,
                sample_rate=sample_rate,
                video=video,
                audio=audio,
                require_video=require_video,
                require_audio=require_audio,
                max_seconds=max_seconds,
            )
    except MediaError:
        raise
    except _DECODE_FAILURES as exc:
        raise CorruptMediaError(path, f"decoding failed ({exc.__class__.__name__}: {exc})") from exc


def _decode_open(
    container: av.container.InputContainer,
    path: Path,
    *,
    fps: float,
    sample_rate: int,
    video: bool,
    audio: bool,
    require_video: bool,
    require_audio: bool,
    max_seconds: float | None,
) -> DecodedMedia:
    vstream = video_stream(container) if video else None
    astream = audio_stream(container) if audio else None
    if video and has_cover_art_only(container):
        logger.info("%s: its only video is cover art (an attached picture); reading the audio alone", path)
    if require_video and vstream is None:
        raise MissingStreamError(path, "video", cover_art=has_cover_art_only(container))
    if require_audio and astream is None:
        raise MissingStreamError(path, "audio")
    frames: list[np.ndarray] = []
    chunks: list[np.ndarray] = []
    for kind, data in iter_decoded(container, path, fps=fps, sample_rate=sample_rate, video=video, audio=audio,
                                   max_seconds=max_seconds):
        (frames if kind == "video" else chunks).append(data)
    out_frames: np.ndarray | None = None
    if vstream is not None:
        if not frames:
            if require_video:
                raise CorruptMediaError(path, "video stream holds no decodable frames")
        else:
            out_frames = np.stack(frames)
    out_audio: np.ndarray | None = None
    if astream is not None:
        out_audio = np.concatenate(chunks).astype(np.float32, copy=False) if chunks else np.zeros(0, np.float32)
        if max_seconds is not None:
            out_audio = out_audio[: int(round(max_seconds * sample_rate))]
        if require_audio and out_audio.size == 0:
            raise CorruptMediaError(path, "audio stream holds no decodable samples")
    return DecodedMedia(out_frames, out_audio, fps, sample_rate)


def iter_decoded(
    container: av.container.InputContainer,
    path: str | Path,
    *,
    fps: float,
    sample_rate: int,
    video: bool = True,
    audio: bool = True,
    max_seconds: float | None = None,
) -> Iterator[tuple[str, np.ndarray]]:
    """Decode an open container incrementally: ``("video", frame)`` at ``fps`` and ``("audio", samples)``.

    Video items are the output frames in order (frame k covers instant
    ``k / fps``, the most recent source frame), each yielded as soon as the
    next source frame closes its instant; audio items are consecutive mono
    float32 chunks at ``sample_rate``, sample ``n`` at ``n / sample_rate`` on
    the same timeline (see :class:`_AudioTimeline`). :func:`decode_media` collects exactly
    these items, and the streaming runtime consumes them live, so a file
    analysed whole and the same file streamed see identical samples.
    Decoding errors propagate as they are (callers wrap them).
    """
    vstream = video_stream(container) if video else None
    astream = audio_stream(container) if audio else None
    streams = [s for s in (vstream, astream) if s is not None]
    if not streams:
        return
    sound = _AudioTimeline(path, sample_rate, video=vstream is not None) if astream is not None else None
    source_period = 1.0 / _source_rate(vstream) if vstream is not None else 1.0 / fps
    aspect = pixel_aspect(vstream) if vstream is not None else 1.0
    next_k = 0  # index of the next output frame instant
    last_frame: np.ndarray | None = None
    first_time: float | None = None
    offset = 0.0  # added to video times after a backward timestamp jump
    last_time = 0.0
    size: tuple[int, int] | None = None  # (height, width) of the first frame: the output size
    warned_resize = warned_jump = False
    # With max_seconds, demuxing stops once every requested stream is past it. Audio past it is still decoded
    # (not handed out) while the video runs: whether a later video leap is a pause depends on it (heard_through).
    video_done = vstream is None
    audio_done = astream is None
    audio_stop = None if max_seconds is None else max_seconds + _AUDIO_MARGIN

    for packet in container.demux(streams):
        is_video = vstream is not None and packet.stream.index == vstream.index
        if is_video and video_done and max_seconds is not None:
            continue  # the video is already past max_seconds: skip the decoding work
        for frame in packet.decode():
            if isinstance(frame, av.VideoFrame):
                t = frame.time if frame.time is not None else next_k / fps
                if first_time is None:
                    first_time = t if sound is None else sound.zero(t)
                    if sound is not None:  # the audio's place on the timeline is known now
                        for chunk in sound.place(first_time):
                            yield "audio", chunk
                t = t - first_time + offset
                if last_frame is not None and not -_BACKWARD_JUMP <= t - last_time <= _FORWARD_JUMP and not (
                        sound is not None and t > last_time and sound.heard_through(t)):
                    if not warned_jump:
                        logger.warning(
                            "%s: video timestamp jumps from %.3f s to %.3f s; continuing the timeline",
                            path,
                            last_time,
                            t,
                        )
                        warned_jump = True
                    offset += last_time + source_period - t
                    t = last_time + source_period
                if max_seconds is not None and t >= max_seconds:
                    video_done = True  # frames leave the decoder in presentation order: none earlier follows
                    break
                # Emit every output instant that this frame's arrival closes.
                while last_frame is not None and next_k / fps < t - 1e-6:
                    yield "video", last_frame
                    next_k += 1
                image = upright(frame, aspect)
                if size is None:
                    size = image.shape[:2]
                elif image.shape[:2] != size:
                    if not warned_resize:
                        logger.warning(
                            "%s: video resolution changes from %dx%d to %dx%d at %.3f s; "
                            "resizing later frames to %dx%d",
                            path,
                            size[1],
                            size[0],
                            image.shape[1],
                            image.shape[0],
                            t,
                            size[1],
                            size[0],
                        )
                        warned_resize = True
                    image = cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_AREA)
                last_frame = image
                last_time = t
            elif isinstance(frame, av.AudioFrame) and sound is not None:
                for chunk in sound.push(frame):
                    if not audio_done:
                        yield "audio", chunk
                if audio_stop is not None and sound.placed / sample_rate >= audio_stop:
                    audio_done = True
        if max_seconds is not None and video_done and audio_done:
            break
    if sound is not None and not audio_done:
        for chunk in sound.finish(first_time):
            yield "audio", chunk
    if last_frame is not None:
        # The last source frame covers the instants up to the end of the stream: its start plus one
        # source frame (container durations are unreliable: absent in FLV, rounded in AVI).
        end = last_time + source_period
        if max_seconds is not None:
            # A frame at or past max_seconds was seen (or would be, decoding on): cover up to the cut.
            end = max_seconds if video_done else min(end, max_seconds)
        while next_k == 0 or next_k / fps < end - 1e-6:
            yield "video", last_frame
            next_k += 1


class _AudioTimeline:
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
    audio is held; at most ``_FORWARD_JUMP`` seconds of it, then it is placed as it
    comes, like a timestamp jump (unless it runs on to the first frame: see :meth:`zero`).
    """

    def __init__(self, path: str | Path, sample_rate: int, *, video: bool) -> None:
        self.path, self.sample_rate = path, sample_rate
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
        elif t is not None and self._end is not None:
            chunks += self._bridge(t - self._end)
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

        A video stream that skips ahead by more than ``_FORWARD_JUMP`` is a discontinuity when the audio
        skipped with it, but a pause in the picture (a screen recorder sends no frames while nothing moves)
        when the audio went on through it: then the last frame is held, as a player holds it.
        """
        return self.placed / self.sample_rate >= t - _PAUSE_SLACK

    def zero(self, first_frame: float) -> float:
        """The timeline's zero for a first video frame at ``first_frame`` seconds: that frame's time, or the audio's
        start when the audio, handed out from its start (held ``_FORWARD_JUMP`` s without a frame), ran on to it.

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
        if abs(lead) > _FORWARD_JUMP:
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

    def _bridge(self, gap: float) -> list[np.ndarray]:
        """Silence for a hole of ``gap`` seconds before the next frame; jumps like the video's are continued."""
        if -_AUDIO_GAP <= gap <= _AUDIO_GAP:
            return []
        if not _AUDIO_GAP < gap <= _FORWARD_JUMP:
            if not self._warned_jump:
                logger.warning("%s: audio timestamp jumps by %.3f s at %.3f s of audio; continuing the timeline",
                               self.path, gap, self._fed)
                self._warned_jump = True
            return []
        if not self._warned_gap:
            logger.warning("%s: audio timestamps skip %.3f s at %.3f s of audio (lost packets); filled with silence",
                           self.path, gap, self._fed)
            self._warned_gap = True
        return [*self._drain(), np.zeros(int(round(gap * self.sample_rate)), np.float32)]

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
            if sum(len(c) for c in self._held) > _FORWARD_JUMP * self.sample_rate:
                logger.warning("%s: %.0f s of audio before any video frame; the audio starts with the video",
                               self.path, _FORWARD_JUMP)
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


def upright(frame: av.VideoFrame, pixel_aspect: float = 1.0) -> np.ndarray:
    """The frame as RGB, shaped and turned the way a player shows it.

    Phones store portrait video as landscape frames plus a rotation to apply
    on display; read as stored, the face lies on its side and the face
    detector (upright faces only) finds none. Broadcast and DVD video store
    non-square pixels (``pixel_aspect``: HDV's 1440x1080 is shown 1920 wide);
    read as stored, faces are squeezed, found less often, and cropped
    distorted. So the frame is rescaled to square pixels (shrinking one side)
    and turned as its display matrix says. Mirroring in the matrix is ignored
    (a mirrored face shows the same emotion), and so is a rotation that is
    not a multiple of 90.
    """
    image = frame.to_ndarray(format="rgb24")
    height, width = image.shape[:2]
    shown = (width, max(1, round(height / pixel_aspect))) if pixel_aspect > 1 else \
        (max(1, round(width * pixel_aspect)), height)
    if shown != (width, height):  # bilinear: ~2 ms for HDV's 1440x1080, a third of what swscale takes
        image = cv2.resize(image, shown, interpolation=cv2.INTER_LINEAR)
    degrees = getattr(frame, "rotation", 0) or 0  # counter-clockwise; an older PyAV without it reads none
    turns = round(degrees / 90)
    if turns % 4 == 0 or abs(degrees - 90 * turns) > 1:
        return image
    return np.ascontiguousarray(np.rot90(image, k=turns % 4))


def pixel_aspect(stream: av.video.stream.VideoStream) -> float:
    """Width of one stored pixel over its height as shown: the container's word first, then the codec's.

    1 when neither says (or says something implausible, beyond 1:10 either way).
    """
    codec = stream.codec_context  # None for a stream FFmpeg has no decoder for (a corrupt header)
    for ratio in (stream.sample_aspect_ratio, codec.sample_aspect_ratio if codec is not None else None):
        if ratio and 0.1 <= float(ratio) <= 10:
            return float(ratio)
    return 1.0


def _source_rate(stream: av.video.stream.VideoStream) -> float:
    """Frame rate the container states for ``stream`` (25 when it states none)."""
    rate = stream.average_rate or stream.guessed_rate or 25
    rate = float(rate)
    return rate if rate > 0 and math.isfinite(rate) else 25.0
