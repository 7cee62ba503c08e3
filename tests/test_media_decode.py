"""decode_media on awkward real files: streams that change mid-way, early stop with max_seconds, error typing."""

from __future__ import annotations

import logging
import struct
import time
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from data_fixtures import (
    frames_for,
    tone,
    write_anamorphic,
    write_audio_tracks,
    write_marked_av,
    write_rotated,
    write_stereo,
    write_with_cover_art,
)

from migr_rt.media import CorruptMediaError, MediaError, MissingStreamError, decode_media, write_media
from migr_rt.media.decode import iter_decoded
from migr_rt.media.timeline import Restart


def solid(colour: tuple[int, int, int], height: int, width: int, seconds: float, fps: float = 25.0) -> np.ndarray:
    """``(T, H, W, 3)`` frames of one colour, with a drifting white bar so the encoder sees motion."""
    count = int(round(seconds * fps))
    out = np.empty((count, height, width, 3), np.uint8)
    out[:] = np.array(colour, np.uint8)
    for t in range(count):
        x = (4 * t) % max(1, width - 8)
        out[t, :, x : x + 8] = 255
    return out


def concatenated_ts(tmp_path: Path, name: str, *segments: tuple[np.ndarray, np.ndarray, int]) -> Path:
    """MPEG-TS segments (frames, audio, sample rate) joined byte for byte, like ``cat a.ts b.ts > ab.ts``."""
    parts = []
    for i, (frames, audio, rate) in enumerate(segments):
        part = write_media(tmp_path / f"{name}-part{i}.ts", frames, 25.0, audio, rate, video_codec="libx264")
        parts.append(part.read_bytes())
    path = tmp_path / f"{name}.ts"
    path.write_bytes(b"".join(parts))
    return path


RED, BLUE = (200, 30, 30), (30, 30, 200)


@pytest.fixture(scope="module")
def resolution_change(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1 s of red 160x120 video, then 1 s of blue 320x240, in one MPEG-TS stream."""
    tmp = tmp_path_factory.mktemp("resolution")
    return concatenated_ts(
        tmp,
        "ab",
        (solid(RED, 120, 160, 1.0), tone(1.0, 16000, 300.0), 16000),
        (solid(BLUE, 240, 320, 1.0), tone(1.0, 16000, 600.0), 16000),
    )


def _resolution_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "resolution changes" in r.getMessage()]


def test_resolution_change_mid_stream_is_resized_to_the_first_size(
    resolution_change: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="migr_rt.media"):
        media = decode_media(resolution_change)
    frames = media.frames
    assert frames is not None and frames.shape[1:] == (120, 160, 3)
    # Both segments are there, in order (the second one's timestamps restart at zero in the file). The second starts
    # where the first one's audio ends (AAC pads it past the video) with its voice ahead of its picture as stamped
    # (AAC's priming): the last frame of the first is held a frame or three, so that voice and face stay together.
    assert 48 <= len(frames) <= 54
    mean = frames[:, :, :40].reshape(len(frames), -1, 3).mean(1)  # left strip: mostly the background colour
    assert mean[5, 0] > 150 and mean[5, 2] < 80, "first segment is red"
    assert mean[-5, 2] > 150 and mean[-5, 0] < 80, "second segment is blue (resized)"
    assert media.audio is not None and abs(len(media.audio) / 16000 - 2.0) < 0.2
    warnings = _resolution_warnings(caplog)
    assert len(warnings) == 1, warnings  # once per file, not once per frame
    assert "160x120" in warnings[0] and "320x240" in warnings[0]


def test_resolution_change_with_max_seconds_matches_the_full_decode(resolution_change: Path) -> None:
    full = decode_media(resolution_change)
    for seconds in (0.5, 1.5):
        cut = decode_media(resolution_change, max_seconds=seconds)
        n = int(np.ceil(seconds * 25))
        assert np.array_equal(cut.frames, full.frames[:n])
        assert np.array_equal(cut.audio, full.audio[: int(round(seconds * 16000))])


def test_audio_format_change_mid_stream_decodes(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """44.1 kHz audio followed by 16 kHz audio (PyAV's resampler alone refuses the second part)."""
    path = concatenated_ts(
        tmp_path,
        "rates",
        (frames_for(1, 1.0), tone(1.0, 44100, 500.0), 44100),
        (frames_for(2, 1.0), tone(1.0, 16000, 500.0), 16000),
    )
    with caplog.at_level(logging.WARNING, logger="migr_rt.media"):
        media = decode_media(path)
    assert media.frames is not None and media.frames.shape[1:] == (64, 64, 3)
    assert -2 <= len(media.frames) - 50 <= 4  # the joint holds the first part's last frame while its audio ends
    assert media.audio is not None and abs(len(media.audio) / 16000 - 2.0) < 0.2
    # the tone is there on both sides of the switch (AAC padding leaves a short gap at the joint)
    rms = np.sqrt((media.audio[: 32000 // 400 * 400].reshape(-1, 400) ** 2).mean(1))  # 25 ms blocks
    assert (rms[8:32] > 0.15).all() and (rms[48:72] > 0.15).all()
    assert np.abs(media.audio).max() < 1.0
    assert sum("audio changes" in r.getMessage() for r in caplog.records) == 1


def test_timestamp_leap_ahead_is_not_filled_with_copies(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Frames 15.. stamped 1000 s later (a corrupt or spliced timestamp) would otherwise become 25,000 copies."""
    path = tmp_path / "leap.ts"
    frames = solid(RED, 48, 64, 1.2)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.height, stream.width, stream.pix_fmt = 48, 64, "yuv420p"
        for i, img in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(img, format="rgb24")
            vf.pts = i if i < 15 else i + 25_000
            container.mux(stream.encode(vf))
        container.mux(stream.encode(None))
    with caplog.at_level(logging.WARNING, logger="migr_rt.media"):
        media = decode_media(path)
    assert media.frames.shape == (30, 48, 64, 3)
    assert sum("timestamp jumps" in r.getMessage() for r in caplog.records) == 1


def _flash_and_beep(seconds: float, audio_seconds: float, marked: bool,
                    at: float = 0.0) -> tuple[np.ndarray, np.ndarray, int]:
    """A segment of black frames and silence, its audio ``audio_seconds`` long; ``marked``: 0.1 s of white frames
    and of a 1 kHz beep at ``at`` seconds into it."""
    frames = np.zeros((int(seconds * 25), 64, 64, 3), np.uint8)
    audio = np.zeros(int(audio_seconds * 16000), np.float32)
    if marked:
        frame, sample = int(round(at * 25)), int(round(at * 16000))
        frames[frame:frame + 3] = 255
        audio[sample:sample + 1600] = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(1600) / 16000)
    return frames, audio, 16000


def _first_marks(media) -> tuple[float, float]:
    """Seconds of the first white frame and of the first loud sample."""
    bright = media.frames.reshape(len(media.frames), -1).mean(1) > 128
    return int(np.flatnonzero(bright)[0]) / 25, int(np.flatnonzero(np.abs(media.audio) > 0.2)[0]) / 16000


def test_after_a_timestamp_jump_voice_and_face_go_on_together(tmp_path: Path) -> None:
    """A sender restarted on the same UDP port (a robot's `ffmpeg ... -f mpegts udp://`): its timestamps start over
    mid-stream, and the stream cut off before it has its audio a second short of its video (the muxer's held audio
    is lost when ffmpeg is killed). Each stream went on from its own end, so every later voice was heard a second
    before its face (measured with the real ffmpeg). Now the audio, which jumped first, is delayed by that second
    once the video's jump shows where the restart is: what it gave before then (here under 0.1 s) is early."""
    path = concatenated_ts(tmp_path, "restart", _flash_and_beep(3.0, 2.0, False),
                           _flash_and_beep(2.0, 2.0, True, at=0.5))
    flash, beep = _first_marks(decode_media(path))
    assert flash == pytest.approx(3.5, abs=0.1)
    assert beep == pytest.approx(flash, abs=0.05)


def test_a_restart_cut_by_max_seconds_matches_the_full_decode(tmp_path: Path) -> None:
    """The video's jump at a restart delays the audio, which jumped first and ended short, from where it has got
    to. Cut before the video's jump, the video was no longer decoded, so the jump never came: the audio after its
    own jump was the new segment's at once, not the full decode's silence (cut at 2.7 s: from 2.6 s on)."""
    path = concatenated_ts(tmp_path, "restart", _flash_and_beep(3.0, 2.0, False),
                           _flash_and_beep(2.0, 2.0, True, at=0.5))
    full = decode_media(path)
    for seconds in (2.3, 2.7, 3.2):
        cut = decode_media(path, max_seconds=seconds)
        assert np.array_equal(cut.frames, full.frames[: int(np.ceil(seconds * 25 - 1e-6))]), seconds
        assert np.array_equal(cut.audio, full.audio[: int(round(seconds * 16000))]), seconds


@pytest.mark.parametrize("stream", ["video", "audio"])
def test_a_timestamp_jump_in_one_stream_alone_keeps_voice_and_face_together(tmp_path: Path, stream: str) -> None:
    """A corrupt or edited timestamp in one stream: the other stream, demuxed up to ~10 s ahead of it by the
    muxer's interleaving, is no guide to where the jumping one ends (going on from the later of the two ends
    put every later face up to 10 s after its voice); it goes on from its own end."""
    path = concatenated_ts(tmp_path, "plain", _flash_and_beep(14.0, 14.0, True, at=12.0))
    jumped = tmp_path / "jumped.ts"
    with av.open(str(path)) as src, av.open(str(jumped), mode="w", format="mpegts") as out:
        streams = {s.index: out.add_stream_from_template(s) for s in src.streams}
        for packet in src.demux():
            if packet.dts is None:
                continue
            if packet.stream.type == stream and packet.pts * packet.time_base >= 7.0:  # +100 s from 7 s on, there only
                shift = int(round(100 / packet.time_base))
                packet.pts, packet.dts = packet.pts + shift, packet.dts + shift
            packet.stream = streams[packet.stream.index]
            out.mux(packet)
    flash, beep = _first_marks(decode_media(jumped))
    assert flash == pytest.approx(12.0, abs=0.1)
    assert beep == pytest.approx(flash, abs=0.05)


def _audio_only_ts(path: Path, seconds: float) -> Path:
    """Silence alone in MPEG-TS, on the PID that the audio of :func:`concatenated_ts`'s segments has (0x101)."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("aac", rate=16000)
        stream.layout, stream.id = "mono", 0x101
        for start in range(0, int(seconds * 16000), 1024):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def _audio_later(source: Path, path: Path, seconds: float) -> Path:
    """``source`` (MPEG-TS) with its audio stamped ``seconds`` later, the streams keeping their PIDs."""
    with av.open(str(source)) as src, av.open(str(path), mode="w", format="mpegts") as out:
        streams = {}
        for stream in src.streams:
            streams[stream.index] = out.add_stream_from_template(stream)
            streams[stream.index].id = stream.id
        for packet in src.demux():
            if packet.dts is None:
                continue
            if packet.stream.type == "audio":
                shift = int(round(seconds / packet.time_base))
                packet.pts, packet.dts = packet.pts + shift, packet.dts + shift
            packet.stream = streams[packet.stream.index]
            out.mux(packet)
    return path


def test_restarts_are_not_paired_with_an_older_one_stream_jump(tmp_path: Path) -> None:
    """A sender restarted without its camera (sound alone, timestamps starting over), then again with it, its voice
    stamped 0.5 s after its picture: the first restart's audio jump had no video jump to pair with, and the video's
    jump at the second restart was placed by that stale one, 3 s back where the picture had stopped (every later
    face 3 s before its voice). It goes on from the later of the two ends, as at any restart."""
    first = concatenated_ts(tmp_path, "first", _flash_and_beep(3.0, 3.0, False))
    last = _audio_later(concatenated_ts(tmp_path, "last", _flash_and_beep(2.0, 2.0, True)), tmp_path / "late.ts", 0.5)
    path = tmp_path / "camera-off.ts"
    path.write_bytes(first.read_bytes() + _audio_only_ts(tmp_path / "sound.ts", 3.0).read_bytes() + last.read_bytes())
    media = decode_media(path)
    bright = media.frames.reshape(len(media.frames), -1).mean(1) > 128
    flash = int(np.flatnonzero(bright)[0]) / 25
    beep = int(np.flatnonzero(np.abs(media.audio) > 0.2)[0]) / 16000
    assert flash == pytest.approx(6.0, abs=0.25)
    assert beep - flash == pytest.approx(0.5, abs=0.1)


def test_a_restart_pairs_only_with_a_jump_near_it_on_the_timeline() -> None:
    restart = Restart()
    assert restart.place("audio", 1.4, 8.0, 8.0) == (8.0, 0.0)  # the camera was off: no video jump follows this one
    # 8 s later: another restart, not the same one; the video sat out the audio's restart, so it goes on from the
    # later end, where the audio has got to
    assert restart.place("video", 1.42, 8.0, 16.02) == (16.02, 0.0)
    assert restart.place("audio", 1.4, 16.3, 16.2) == pytest.approx((16.3, 0.3))  # pairs; the video waits 0.3 s
    assert restart.place("video", 50.0, 20.0, 26.0) == (20.0, 0.0)  # a jump in the video alone: from its own end
    restart = Restart()
    assert restart.place("audio", 130.0, 5.0, 5.2) == (5.0, 0.0)  # a corrupt audio timestamp...
    assert restart.place("audio", 5.02, 5.02, 5.3) == (5.02, 0.0)  # ...and the jump back
    assert restart.place("video", 90.0, 60.0, 68.0) == (60.0, 0.0)  # much later, a lone video jump: its own end

class _FailingResampler:
    """Stands in for av.AudioResampler when ffmpeg rejects a conversion (PyAV raises a plain ValueError)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    def resample(self, frame: object) -> list:
        raise ValueError("Frame does not match AudioResampler setup.")


@pytest.mark.parametrize("with_video", [False, True], ids=["audio-and-cover", "video-audio-and-cover"])
def test_cover_art_is_not_read_as_video(tmp_path: Path, with_video: bool, caplog: pytest.LogCaptureFixture) -> None:
    """An album cover is one still picture, not footage of the speaker: the file is its audio (and real video)."""
    frames = solid(BLUE, 64, 64, 2.0) if with_video else None
    path = write_with_cover_art(tmp_path / "song.mp4", np.full((64, 64, 3), 220, np.uint8), tone(2.0), 16000, frames)
    with av.open(str(path)) as container:  # the file is what the test means: the cover is a video stream to FFmpeg
        assert any(s.disposition & av.stream.Disposition.attached_pic for s in container.streams.video)
    with caplog.at_level(logging.INFO, logger="migr_rt.media"):
        media = decode_media(path)
    assert media.audio is not None and abs(media.audio.size - 32000) < 2048
    if with_video:
        assert media.frames is not None and media.frames.shape == (50, 64, 64, 3)
        colour = np.median(media.frames.reshape(-1, 3), axis=0)
        assert np.abs(colour - BLUE).max() < 20  # the footage, not the grey cover
        assert not any("cover art" in r.message for r in caplog.records)
    else:
        assert media.frames is None
        assert any("only video is cover art" in r.message for r in caplog.records)
        with pytest.raises(MissingStreamError, match="has no video stream .*cover art"):
            decode_media(path, require_video=True)



def _marks(path: Path, **kwargs: object) -> tuple[float, float]:
    """Seconds from the start of the decoded frames / audio to the white frame / the loud burst."""
    media = decode_media(path, **kwargs)  # type: ignore[arg-type]
    assert media.frames is not None and media.audio is not None
    flash = int(np.argmax(media.frames.reshape(len(media.frames), -1).mean(1)))
    return flash / media.fps, int(np.argmax(np.abs(media.audio) > 0.2)) / media.sample_rate


@pytest.mark.parametrize(("suffix", "video_start", "audio_start"), [
    ("mkv", 0.0, 0.5),  # an edited clip whose sound begins after the picture
    ("mp4", 0.5, 0.0),  # ... or before it
    ("ts", 0.0, 0.0),  # MPEG-TS keeps the AAC priming (1024 samples) before the first frame
    ("ts", 36000.0, 36000.5),  # a capture whose clock read 10 h when it began
])
def test_audio_stays_with_the_picture_when_the_streams_start_apart(
    tmp_path: Path, suffix: str, video_start: float, audio_start: float, caplog: pytest.LogCaptureFixture
) -> None:
    """A player plays each stream from its timestamps: a voice is heard with the face shown at the same instant.

    The audio was laid from the first video frame as if both started there, so every window paired the faces
    with the voice of half a second earlier or later."""
    mark = min(video_start, audio_start) + 1.0
    path = write_marked_av(tmp_path / f"apart.{suffix}", video_start=video_start, audio_start=audio_start, mark=mark)
    with caplog.at_level(logging.INFO, logger="migr_rt.media"):
        flash, burst = _marks(path)
    assert abs(flash - (mark - video_start)) < 0.05  # the video still starts at its first frame
    assert abs(burst - flash) < 0.01
    if audio_start > video_start:
        assert any(f"{path}: audio starts 0." in r.getMessage() and "after" in r.getMessage() for r in caplog.records)
    assert _marks(path, max_seconds=1.5) == (flash, burst)  # an early stop places the audio the same way


def test_lost_audio_packets_leave_silence_and_the_rest_in_place(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Audio packets lost in transit leave a hole in the timestamps: what follows is still heard at its time.

    Closing the hole moved all later speech 0.5 s ahead of the faces it goes with."""
    path = write_marked_av(tmp_path / "lost.mkv", mark=1.0, lost=(0.3, 0.8))
    with caplog.at_level(logging.WARNING, logger="migr_rt.media"):
        flash, burst = _marks(path)
    assert abs(flash - 1.0) < 0.05 and abs(burst - flash) < 0.01
    assert sum("audio timestamps skip" in r.getMessage() for r in caplog.records) == 1
    audio = decode_media(path).audio
    assert audio is not None and abs(len(audio) / 16000 - 2.0) < 0.1
    assert np.abs(audio[int(0.4 * 16000) : int(0.75 * 16000)]).max() == 0  # the hole is silence


def test_a_long_pause_in_the_picture_is_held_while_the_sound_goes_on(tmp_path: Path) -> None:
    """A screen recording sends no frames while nothing moves: 12 s without a frame, the voice on throughout.

    Taken for a timestamp jump (over 10 s), the pause was closed up and every later face came 12 s before its
    voice; the audio, running on through the pause, says it is a pause."""
    path = write_marked_av(tmp_path / "screen.mkv", mark=13.0, seconds=14.0, paused=(0.2, 12.0))
    flash, burst = _marks(path)
    assert abs(flash - 13.0) < 0.05 and abs(burst - flash) < 0.01
    media = decode_media(path)
    assert media.frames is not None and abs(len(media.frames) / 25 - 14.0) < 0.1
    assert np.array_equal(media.frames[100], media.frames[4])  # the last frame before the pause is held


def test_a_first_keyframe_long_after_the_sound_stays_with_it(tmp_path: Path) -> None:
    """A live stream whose first video frame decodes 12 s into its sound (a camera's keyframe every 12 s): over
    10 s, the audio was handed out from its start as a timestamp jump, and every face came 12 s before its voice.
    The audio ran on to the frame, so the frame is held from the audio's start and the two stay together."""
    path = write_marked_av(tmp_path / "late.ts", video_start=12.0, audio_start=0.0, mark=13.0, seconds=15.0)
    flash, burst = _marks(path)  # both 64 ms later: the timeline starts at the AAC priming MPEG-TS keeps
    assert abs(flash - 13.064) < 0.04 and abs(burst - flash) < 0.04  # to the output frame (40 ms)
    assert _marks(path, max_seconds=14.0) == (flash, burst)


def test_a_long_pause_cut_by_max_seconds_matches_the_full_decode(tmp_path: Path) -> None:
    """Whether a leap is a pause depends on the audio demuxed through it: cut at 5 s, the audio past 5.1 s was no
    longer decoded, so the 12 s pause was taken for a splice and closed up (2.2 s of video instead of 5 s)."""
    path = write_marked_av(tmp_path / "screen.mkv", mark=13.0, seconds=14.0, paused=(0.2, 12.0))
    full = decode_media(path)
    assert full.frames is not None and full.audio is not None
    cut = decode_media(path, max_seconds=5.0)
    assert cut.frames is not None and np.array_equal(cut.frames, full.frames[:125])
    assert cut.audio is not None and np.array_equal(cut.audio, full.audio[:80000])


def test_a_leap_in_both_streams_is_still_closed_up(tmp_path: Path) -> None:
    """Both clocks leap 1000 s (a spliced capture): no time passed, so neither stream is filled; they go on together."""
    path = tmp_path / "leap.mkv"
    leap, sample_rate = 1000, 16000
    frames, audio = solid(RED, 48, 64, 2.0), tone(2.0, sample_rate, 300.0)
    with av.open(str(path), mode="w") as out:
        video = out.add_stream("libx264", rate=25)
        video.height, video.width, video.pix_fmt = 48, 64, "yuv420p"
        sound = out.add_stream("aac", rate=sample_rate, layout="mono")
        packets = []
        for k, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = k if k < 25 else k + leap * 25
            packets += video.encode(frame)
        packets += video.encode(None)
        for first in range(0, len(audio), 1024):
            frame = av.AudioFrame.from_ndarray(audio[None, first : first + 1024], format="fltp", layout="mono")
            frame.sample_rate = sample_rate
            frame.pts = first if first < sample_rate else first + leap * sample_rate
            packets += sound.encode(frame)
        packets += sound.encode(None)
        for packet in sorted(packets, key=lambda p: float(p.dts * p.time_base)):
            out.mux(packet)
    media = decode_media(path)
    assert media.frames is not None and abs(len(media.frames) / 25 - 2.0) < 0.1
    assert media.audio is not None and abs(len(media.audio) / sample_rate - 2.0) < 0.1


_D = av.stream.Disposition


@pytest.mark.parametrize("suffix", ["mkv", "mp4"])
@pytest.mark.parametrize(("tracks", "heard"), [
    ([(300, 0), (600, _D.default)], 600),  # a French dub first, the default (original) track second
    ([(300, _D.default | _D.comment), (600, 0)], 600),  # a director's commentary (mp4 marks the first default)
    ([(300, _D.visual_impaired | _D.descriptions), (600, 0)], 600),  # an audio description: a narrator
    ([(300, 0), (600, 0)], 300),  # nothing said: the first, as before
], ids=["default", "commentary", "audio-description", "unmarked"])
def test_the_audio_track_is_the_one_a_viewer_hears(tmp_path: Path, suffix: str, tracks: list, heard: int) -> None:
    """Of several audio tracks, the default one of the voices on screen is taken, not merely the first: a
    commentary or a narrator describing the scene is not the voice of the face in the picture."""
    path = write_audio_tracks(tmp_path / f"film.{suffix}", tracks)
    with av.open(str(path)) as container:  # the file is what the test means (Matroska has no 'descriptions')
        said = [int(s.disposition) & ~_D.descriptions for s in container.streams.audio]
    assert all(flags & ~_D.descriptions == flags & got for (_, flags), got in zip(tracks, said)), said
    audio = decode_media(path).audio
    assert audio is not None
    spectrum = np.abs(np.fft.rfft(audio[:16000]))
    assert abs(np.argmax(spectrum) * 16000 / 16000 - heard) < 5



@pytest.mark.parametrize(("suffix", "codec"), [("wav", "pcm_s16le"), ("m4a", "aac"), ("mkv", "pcm_f32le")])
def test_stereo_in_opposite_phase_is_not_mixed_to_silence(
    tmp_path: Path, suffix: str, codec: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A voice recorded with one side's polarity inverted sounds normal in stereo; summed to mono it cancelled
    to silence and every window said "silent". It now comes out as loud as the same voice in phase."""
    voice = tone(1.0, 16000, 300.0)
    loudness = {}
    for name, right in (("inverted", -voice), ("same", voice), ("left-only", np.zeros_like(voice))):
        with caplog.at_level(logging.WARNING, logger="migr_rt.media"):
            audio = decode_media(write_stereo(tmp_path / f"{name}.{suffix}", voice, right, codec=codec)).audio
        assert audio is not None
        loudness[name] = float(np.sqrt(np.mean(audio[1600:-1600] ** 2)))
    assert abs(loudness["same"] - 0.3) < 0.02  # 0.3 amplitude in both channels, mixed at -3 dB each
    assert abs(loudness["inverted"] - loudness["same"]) < 0.02
    assert abs(loudness["left-only"] - 0.15) < 0.02  # ordinary stereo is mixed as before
    assert [r.getMessage() for r in caplog.records if "opposite phase" in r.getMessage()] == [
        f"{tmp_path / f'inverted.{suffix}'}: the two audio channels are in opposite phase (0.000 s of audio in); "
        "one is turned so that the mono mix does not cancel"]


def test_stereo_in_opposite_phase_under_room_noise_is_turned_throughout(tmp_path: Path) -> None:
    """Syllables (3 a second) in opposite phase over uncorrelated noise at 3 %, as a room gives it. Judged frame by
    frame, the quiet starts and ends of syllables (noise kept most of their mix) were not turned: the voice switched
    between heard and cancelled 23 times in 4 s, a third of the voiced frames were cancelled, with a click at each
    switch. The polarity is the recording's: every frame comes out as the same voice with that side turned."""
    rate = 16000
    t = np.arange(4 * rate) / rate
    rng = np.random.default_rng(1)
    voice = np.clip(np.sin(2 * np.pi * 3 * t), 0, None) ** 2 * 0.3 * sum(
        np.sin(2 * np.pi * f * t) / k for k, f in enumerate((150, 300, 450, 600), 1))
    left, noise = voice + 0.03 * rng.standard_normal(t.size), 0.03 * rng.standard_normal(t.size)
    inverted = decode_media(write_stereo(tmp_path / "inverted.wav", left, noise - voice, codec="pcm_s16le")).audio
    turned = decode_media(write_stereo(tmp_path / "turned.wav", left, voice - noise, codec="pcm_s16le")).audio
    assert inverted is not None and turned is not None
    assert np.array_equal(inverted, turned)


@pytest.mark.parametrize("degrees", [-90, 90, 180])
def test_phone_video_is_turned_upright(tmp_path: Path, degrees: int) -> None:
    """Phones store portrait video turned, with a display rotation: frames reach the model as they are shown."""
    shown = np.zeros((25, 96, 64, 3), np.uint8)  # portrait: a red top half, a blue bottom-left quarter
    shown[:, :48] = RED
    shown[:, 48:, :32] = BLUE
    path = write_rotated(tmp_path / "phone.mp4", shown, degrees)
    with av.open(str(path)) as container:  # the file is what the test means: stored turned, shown upright
        stored = next(container.decode(video=0))
        assert stored.rotation % 360 == degrees % 360
        assert (stored.height, stored.width) == ((96, 64) if degrees == 180 else (64, 96))
    frames = decode_media(path).frames
    assert frames is not None and frames.shape == shown.shape
    assert np.abs(frames.astype(int) - shown.astype(int)).mean() < 8  # codec noise, not a turned picture
    with av.open(str(path)) as container:  # the runtime's incremental decode turns them the same way
        streamed = [data for _, data in iter_decoded(container, path, fps=25, sample_rate=16000)]
    assert np.array_equal(np.stack(streamed), frames)


@pytest.mark.parametrize("aspect", [Fraction(4, 3), Fraction(64, 45), Fraction(8, 9)], ids=["hdv", "dvd-wide", "ntsc"])
def test_non_square_pixels_are_shown_square(tmp_path: Path, aspect: Fraction) -> None:
    """Broadcast and DVD video store squeezed pixels: a circle stored as an ellipse reaches the model round."""
    shown = np.zeros((10, 96, 128, 3), np.uint8)
    cv2.circle(shown[0], (64, 48), 36, (255, 255, 255), -1)
    shown[1:] = shown[0]
    path = write_anamorphic(tmp_path / "tv.mp4", shown, aspect)
    with av.open(str(path)) as container:  # stored squeezed, as the test means
        assert container.streams.video[0].sample_aspect_ratio == aspect
        assert container.streams.video[0].width != 128
    frames = decode_media(path).frames
    assert frames is not None
    mask = frames[0, ..., 0] > 127
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    tall, wide = rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1
    assert abs(tall / wide - 1) < 0.06, (tall, wide, frames.shape)  # round again, at most a few pixels off


def test_unexpected_decode_failures_arrive_as_corrupt_media_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_media(tmp_path / "ok.mp4", frames_for(0, 0.4), 25.0, tone(0.4), 16000)
    monkeypatch.setattr(av, "AudioResampler", _FailingResampler)
    with pytest.raises(CorruptMediaError) as info:
        decode_media(path)
    assert str(path) in str(info.value) and "AudioResampler" in str(info.value)
    assert isinstance(info.value.__cause__, ValueError)
    # video alone does not touch the resampler
    assert decode_media(path, audio=False).frames is not None


def test_corrupted_bytes_never_raise_anything_but_media_errors(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    sources = [
        write_media(tmp_path / "src.mp4", frames_for(0, 0.6), 25.0, tone(0.6), 16000),
        write_media(tmp_path / "src.ts", frames_for(1, 0.6), 25.0, tone(0.6), 16000),
        write_media(tmp_path / "src.avi", frames_for(2, 0.6), 25.0, tone(0.6), 16000, video_codec="mpeg4",
                    audio_codec="pcm_s16le"),
    ]
    for src in sources:
        data = src.read_bytes()
        for trial in range(12):
            broken = bytearray(data)
            for _ in range(int(rng.integers(1, 40))):
                broken[int(rng.integers(len(broken)))] = int(rng.integers(256))
            if trial % 2:
                broken = broken[: int(rng.integers(len(broken) // 4, len(broken)))]
            path = tmp_path / f"broken{src.suffix}"
            path.write_bytes(bytes(broken))
            for options in ({}, {"max_seconds": 0.3}):
                try:
                    decode_media(path, **options)
                except MediaError:
                    pass


def test_absurd_audio_sample_rate_is_corrupt_and_fails_fast(tmp_path: Path) -> None:
    """An AVI whose audio header claims 738 MHz (seen while fuzzing): resampling that took ~7 s to give nothing."""
    path = write_media(tmp_path / "ok.avi", frames_for(0, 0.6), 25.0, tone(0.6), 16000, video_codec="mpeg4",
                       audio_codec="pcm_s16le")
    data = bytearray(path.read_bytes())
    strf = data.find(b"strf", data.find(b"auds"))  # WAVEFORMATEX: tag (2), channels (2), samples/s (4)
    assert struct.unpack_from("<I", data, strf + 12) == (16000,)
    struct.pack_into("<I", data, strf + 12, 738_213_504)
    path.write_bytes(bytes(data))
    start = time.perf_counter()
    with pytest.raises(CorruptMediaError, match="sample rate 738213504"):
        decode_media(path)
    assert time.perf_counter() - start < 1.0
    assert decode_media(path, audio=False).frames.shape == (15, 64, 64, 3)  # the video is fine


def test_arguments_are_validated_before_any_decoding(tmp_path: Path) -> None:
    path = write_media(tmp_path / "ok.mp4", frames_for(0, 0.4), 25.0, tone(0.4), 16000)
    for bad in (0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="max_seconds"):
            decode_media(path, max_seconds=bad)


# --- max_seconds stops demuxing --------------------------------------------------------------------


@pytest.fixture(scope="module")
def long_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 s of 64x64 H.264 at 25 fps with 48 kHz AAC (noise, so every sample differs)."""
    tmp = tmp_path_factory.mktemp("long")
    rng = np.random.default_rng(5)
    frames = frames_for(3, 20.0)
    frames = (frames.astype(np.int16) + rng.integers(-12, 12, frames.shape)).clip(0, 255).astype(np.uint8)
    audio = tone(20.0, 48000, 330.0) + 0.02 * rng.standard_normal(20 * 48000).astype(np.float32)
    return write_media(tmp / "long.mp4", frames, 25.0, audio, 48000)


def test_max_seconds_stops_decoding_early_and_matches_a_full_decode(long_file: Path) -> None:
    full = decode_media(long_file)
    assert len(full.frames) == 500 and abs(len(full.audio) - 320000) < 2048
    cut = decode_media(long_file, max_seconds=2.0)
    assert cut.frames.shape == (50, 64, 64, 3) and cut.audio.shape == (32000,)
    assert np.array_equal(cut.frames, full.frames[:50])
    assert np.array_equal(cut.audio, full.audio[:32000])

    # Demuxing stopped near the cut: the container's next video packet is a little past 2 s of the 20 s
    # (a timing comparison here failed on a loaded CI host; where the demuxer stands does not depend on load).
    with av.open(str(long_file)) as container:
        items = sum(1 for _ in iter_decoded(container, str(long_file), fps=25, sample_rate=16000, max_seconds=2.0))
        following = next(container.demux(container.streams.video[0]))
    assert items > 0 and following.pts is not None
    assert 2.0 <= float(following.pts * following.time_base) < 5.0


@pytest.mark.parametrize(
    ("suffix", "options"),
    [
        (".mp4", {}),
        (".ts", {}),
        (".avi", {"video_codec": "mpeg4", "audio_codec": "pcm_s16le"}),
        (".mkv", {}),
    ],
)
@pytest.mark.parametrize("streams", [{"video": True, "audio": True}, {"audio": False}, {"video": False}])
def test_cut_equals_full_decode_then_cut(tmp_path: Path, suffix: str, options: dict, streams: dict) -> None:
    path = write_media(tmp_path / f"clip{suffix}", frames_for(4, 3.0, 30.0), 30.0, tone(3.0, 44100, 410.0), 44100,
                       **options)
    full = decode_media(path, **streams)
    for seconds in (0.37, 1.0, 2.5, 10.0):
        cut = decode_media(path, max_seconds=seconds, **streams)
        if full.frames is None:
            assert cut.frames is None
        else:
            n = min(len(full.frames), int(np.ceil(seconds * 25 - 1e-6)))
            assert np.array_equal(cut.frames, full.frames[:n]), seconds
        if full.audio is None:
            assert cut.audio is None
        else:
            assert np.array_equal(cut.audio, full.audio[: int(round(seconds * 16000))]), seconds


def _x264_setting(path: Path, name: str) -> str:
    """A setting from the options string x264 writes into the stream (an SEI message)."""
    options = path.read_bytes().split(b"x264 - core", 1)[1].split(b"\x00", 1)[0].decode("ascii", "replace")
    return next(word.split("=", 1)[1] for word in options.split() if word.startswith(name + "="))


@pytest.mark.parametrize(("codec", "options", "mbtree"), [
    ("libx264", None, "0"),
    ("libx264", {"crf": "30"}, "0"),
    ("libx264", {"x264-params": "bframes=2"}, "0"),  # unrelated x264-params keep the default
    ("h264", None, "0"),  # PyAV resolves the format name to libx264
    ("libx264", {"mbtree": "1"}, "1"),  # a caller may still ask for the tree
])
def test_libx264_gets_reproducible_defaults_under_the_callers_options(tmp_path: Path, codec, options, mbtree) -> None:
    """x264's macroblock tree makes its output depend on uninitialised memory (X264_DEFAULTS)."""
    path = write_media(tmp_path / "clip.mp4", frames_for(0, 0.4), 25.0, tone(0.4), 16000, video_codec=codec,
                       video_options=options)
    assert _x264_setting(path, "mbtree") == mbtree
    if options and "crf" in options:
        assert float(_x264_setting(path, "crf")) == 30.0
    if options and "x264-params" in options:
        assert _x264_setting(path, "bframes") == "2"
