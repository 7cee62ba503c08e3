"""Decode any container PyAV reads into frames at a fixed fps and mono audio at a fixed rate.

Readers, the synthetic corpus checks and the file source of the runtime all go
through here, so every clip reaches the model resampled the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from migr_rt.media.errors import CorruptMediaError, MediaNotFoundError, MissingStreamError


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
    float32 at ``sample_rate`` with ffmpeg's resampler.

    Raises :class:`MediaNotFoundError`, :class:`CorruptMediaError` (empty,
    truncated or undecodable files) or :class:`MissingStreamError` when a
    ``require_*`` stream is absent. A stream that is merely absent (and not
    required) comes back as ``None``.
    """
    if fps <= 0 or not math.isfinite(fps):
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate!r}")
    path = Path(path)
    if not path.exists():
        raise MediaNotFoundError(path, "file does not exist")
    if path.is_dir():
        raise CorruptMediaError(path, "is a directory, not a media file")
    if path.stat().st_size == 0:
        raise CorruptMediaError(path, "file is empty (0 bytes)")
    try:
        container = av.open(str(path), mode="r")
    except (av.error.FFmpegError, UnicodeDecodeError) as exc:
        raise CorruptMediaError(path, f"cannot be opened as media ({exc.__class__.__name__}: {exc})") from exc

    with container:
        vstream = container.streams.video[0] if (video and container.streams.video) else None
        astream = container.streams.audio[0] if (audio and container.streams.audio) else None
        if require_video and vstream is None:
            raise MissingStreamError(path, "video")
        if require_audio and astream is None:
            raise MissingStreamError(path, "audio")
        streams = [s for s in (vstream, astream) if s is not None]
        if not streams:
            return DecodedMedia(None, None, fps, sample_rate)

        frames: list[np.ndarray] = []
        chunks: list[np.ndarray] = []
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate) if astream else None
        next_k = 0  # index of the next output frame instant
        last_frame: np.ndarray | None = None
        first_time: float | None = None
        last_time = 0.0
        try:
            for packet in container.demux(streams):
                for frame in packet.decode():
                    if isinstance(frame, av.VideoFrame):
                        t = frame.time if frame.time is not None else len(frames) / fps
                        if first_time is None:
                            first_time = t
                        t -= first_time
                        if max_seconds is not None and t >= max_seconds:
                            continue
                        # Emit every output instant that this frame's arrival closes.
                        while last_frame is not None and next_k / fps < t - 1e-6:
                            frames.append(last_frame)
                            next_k += 1
                        last_frame = frame.to_ndarray(format="rgb24")
                        last_time = t
                    elif isinstance(frame, av.AudioFrame) and resampler is not None:
                        for out in resampler.resample(frame):
                            chunks.append(out.to_ndarray().reshape(-1))
            if resampler is not None:
                for out in resampler.resample(None):
                    chunks.append(out.to_ndarray().reshape(-1))
        except av.error.FFmpegError as exc:
            raise CorruptMediaError(path, f"decoding failed ({exc.__class__.__name__}: {exc})") from exc

        out_frames: np.ndarray | None = None
        if vstream is not None:
            if last_frame is None:
                if require_video:
                    raise CorruptMediaError(path, "video stream holds no decodable frames")
            else:
                # The last source frame covers the instants up to the end of the stream.
                end = _video_end_seconds(vstream, last_time)
                if max_seconds is not None:
                    end = min(end, max_seconds)
                while next_k == 0 or next_k / fps < end - 1e-6:
                    frames.append(last_frame)
                    next_k += 1
                out_frames = np.stack(frames)
        out_audio: np.ndarray | None = None
        if astream is not None:
            out_audio = np.concatenate(chunks).astype(np.float32, copy=False) if chunks else np.zeros(0, np.float32)
            if max_seconds is not None:
                out_audio = out_audio[: int(round(max_seconds * sample_rate))]
            if require_audio and out_audio.size == 0:
                raise CorruptMediaError(path, "audio stream holds no decodable samples")
        return DecodedMedia(out_frames, out_audio, fps, sample_rate)


def _video_end_seconds(stream: av.video.stream.VideoStream, last_time: float) -> float:
    """End of the video: the last frame's start plus one source frame duration.

    Container durations are unreliable (absent in FLV, rounded in AVI), so the
    decoded timeline decides.
    """
    rate = float(stream.average_rate or stream.guessed_rate or 25)
    return last_time + 1.0 / rate
