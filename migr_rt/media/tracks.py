"""Which streams of a container a player uses, and how it shows their frames.

Cover art is not video, the audio track heard is not always the first, and a
frame is shown turned (a phone's display rotation) and with square pixels.
Decoding (:mod:`migr_rt.media.decode`) and the streaming runtime both choose
and shape through here, so a file streamed and a file analysed whole agree.
"""

from __future__ import annotations

import av
import cv2
import numpy as np

#: FFmpeg's ``AV_DISPOSITION_ATTACHED_PIC``: a "video" stream that is one still picture (album or
#: podcast cover art in an MP3, M4A or MKV), not footage of the speaker.
_ATTACHED_PIC = 0x0400

#: FFmpeg's ``AVFMT_NOTIMESTAMPS``: a format whose frames carry no time (MJPEG over HTTP, a raw H.264 stream);
#: FFmpeg counts them at a rate it assumes (25 fps), whatever rate they were sent at.
_NO_TIMESTAMPS = 0x0080

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


def states_times(container: av.container.InputContainer) -> bool:
    """Whether the container's format times its frames, rather than leaving FFmpeg to count them at 25 fps.

    ``multipart/x-mixed-replace`` MJPEG (what an ESP32-CAM, an IP camera's ``/video`` or mjpg-streamer serve over
    HTTP) and raw H.264 or HEVC (a Raspberry Pi's ``rpicam-vid --listen -o tcp://...``) carry no time at all.
    """
    return not int(container.format.flags) & _NO_TIMESTAMPS


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
