"""Decode any container PyAV reads into frames at a fixed fps and mono audio at a fixed rate.

Readers, the synthetic corpus checks and the file source of the runtime all go
through here, so every clip reaches the model resampled the same way.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np

from migr_rt.media.errors import CorruptMediaError, MediaError, MediaNotFoundError, MissingStreamError
from migr_rt.media.timeline import BACKWARD_JUMP, FORWARD_JUMP, AudioTimeline, Restart
from migr_rt.media.tracks import audio_stream, has_cover_art_only, pixel_aspect, upright, video_stream

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

#: Extra audio decoded beyond ``max_seconds`` before demuxing stops, so that the resampler's
#: look-ahead sees the same input as in a full decode and the kept samples are identical.
_AUDIO_MARGIN = 0.1


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
    clock: Callable[[], float] | None = None,
    audio_gaps_trusted: Callable[[], bool] | None = None,
) -> Iterator[tuple[str, np.ndarray]]:
    """Decode an open container incrementally: ``("video", frame)`` at ``fps`` and ``("audio", samples)``.

    Video items are the output frames in order (frame k covers instant
    ``k / fps``, the most recent source frame), each yielded as soon as the
    next source frame closes its instant; audio items are consecutive mono
    float32 chunks at ``sample_rate``, sample ``n`` at ``n / sample_rate`` on
    the same timeline (see :class:`~migr_rt.media.timeline.AudioTimeline`). :func:`decode_media` collects exactly
    these items, and the streaming runtime consumes them live, so a file
    analysed whole and the same file streamed see identical samples.
    Decoding errors propagate as they are (callers wrap them).

    ``clock`` (seconds, e.g. ``time.monotonic``) times each video frame by when it is decoded instead of by its
    timestamp: for a live stream whose format carries none (:func:`~migr_rt.media.tracks.states_times`), which
    FFmpeg counts at 25 fps; a 10 fps MJPEG camera then ran at 0.4 times real time, each 2 s window holding 5 s.
    ``audio_gaps_trusted`` says when a hole in the audio's timestamps is one in the audio (see
    :class:`~migr_rt.media.timeline.AudioTimeline`).
    """
    vstream = video_stream(container) if video else None
    astream = audio_stream(container) if audio else None
    streams = [s for s in (vstream, astream) if s is not None]
    if not streams:
        return
    source_period = 1.0 / _source_rate(vstream) if vstream is not None else 1.0 / fps
    restart = Restart()

    def video_end() -> float:
        return last_time + source_period if last_frame is not None else 0.0

    def audio_resumes(t: float, end: float) -> float:
        nonlocal offset
        resume, delay_video = restart.place("audio", t, end, video_end())
        offset += delay_video  # later frames come that much later: the last one is held over the difference
        return resume

    sound = AudioTimeline(path, sample_rate, video=vstream is not None,
                          resume=audio_resumes if vstream is not None else None,
                          gaps_trusted=audio_gaps_trusted) if astream is not None else None
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
    # Video past it is still decoded and timed (not handed out) while the audio runs: a video restart there
    # places the audio before the cut (Restart: silence inserted, or where it goes on), as in the full decode.
    video_done = vstream is None
    audio_done = astream is None
    audio_stop = None if max_seconds is None else max_seconds + _AUDIO_MARGIN

    for packet in container.demux(streams):
        for frame in packet.decode():
            if isinstance(frame, av.VideoFrame):
                t = clock() if clock is not None else frame.time if frame.time is not None else next_k / fps
                if first_time is None:
                    first_time = t if sound is None else sound.zero(t)
                    if sound is not None:  # the audio's place on the timeline is known now
                        for chunk in sound.place(first_time):
                            yield "audio", chunk
                t = t - first_time + offset
                if last_frame is not None and not -BACKWARD_JUMP <= t - last_time <= FORWARD_JUMP and not (
                        sound is not None and t > last_time and sound.heard_through(t)):
                    if not warned_jump:
                        logger.warning(
                            "%s: video timestamp jumps from %.3f s to %.3f s; continuing the timeline",
                            path,
                            last_time,
                            t,
                        )
                        warned_jump = True
                    resume = video_end()
                    if sound is not None:  # both go on together (a sender restarted; see Restart)
                        stamped = t - offset + first_time  # the frame's own timestamp, as the audio's are given
                        resume, delay_audio = restart.place("video", stamped, resume, sound.placed / sample_rate)
                        for chunk in sound.delay(delay_audio):
                            if not audio_done:
                                yield "audio", chunk
                    offset += resume - t
                    t = resume
                if max_seconds is not None and t >= max_seconds:
                    video_done = True  # frames leave the decoder in presentation order: none earlier follows
                if video_done:
                    last_time = t  # timed for the audio's sake (video_end, the next jump), not shown
                    continue
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


def _source_rate(stream: av.video.stream.VideoStream) -> float:
    """Frame rate the container states for ``stream`` (25 when it states none)."""
    rate = stream.average_rate or stream.guessed_rate or 25
    rate = float(rate)
    return rate if rate > 0 and math.isfinite(rate) else 25.0
