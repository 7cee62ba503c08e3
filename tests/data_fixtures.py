"""Builders of tiny fake dataset trees with the real datasets' exact names and layouts.

The media are real files written through PyAV (H.264/AAC MP4, FLV, PCM WAV),
64x64 and well under a second, so the readers are exercised end to end without
mocks and the whole data test set stays fast.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Iterable, Mapping, Sequence
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from migr_rt.media import write_media

SIZE = 64
DURATION = 0.6  # seconds of every generated clip unless told otherwise


def frames_for(seed: int, seconds: float = DURATION, fps: float = 25.0) -> np.ndarray:
    """A moving coloured bar pattern, distinct per seed, ``(T, 64, 64, 3)`` uint8."""
    rng = np.random.default_rng(seed)
    base = rng.integers(40, 215, size=3)
    count = max(1, int(round(seconds * fps)))
    out = np.empty((count, SIZE, SIZE, 3), np.uint8)
    cols = np.arange(SIZE)
    for t in range(count):
        bar = ((cols + 3 * t) // 8) % 2  # vertical bars drifting right
        out[t] = (base[None, None, :] * (0.5 + 0.5 * bar[None, :, None])).astype(np.uint8)
    return out


def tone(seconds: float = DURATION, sample_rate: int = 16000, freq: float = 440.0) -> np.ndarray:
    """A sine tone at amplitude 0.3, float32 mono."""
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write_av(
    path: Path,
    *,
    seed: int = 0,
    video: bool = True,
    audio: bool = True,
    seconds: float = DURATION,
    fps: float = 25.0,
    sample_rate: int = 16000,
    video_codec: str = "libx264",
    audio_codec: str = "aac",
) -> Path:
    """Write a clip with the requested streams (at least one)."""
    return write_media(
        path,
        frames_for(seed, seconds, fps) if video else None,
        fps,
        tone(seconds, sample_rate, 300.0 + 50 * seed) if audio else None,
        sample_rate,
        video_codec=video_codec,
        audio_codec=audio_codec,
    )


def write_wav(path: Path, *, seconds: float = DURATION, sample_rate: int = 16000, freq: float = 440.0) -> Path:
    """A PCM s16 mono WAV, as the audio-only datasets ship."""
    return write_media(path, None, 25.0, tone(seconds, sample_rate, freq), sample_rate, audio_codec="pcm_s16le")


def write_with_cover_art(
    path: Path, cover: np.ndarray, audio: np.ndarray, sample_rate: int = 16000, frames: np.ndarray | None = None,
    fps: int = 25,
) -> Path:
    """An MP4 whose audio carries cover art (an MJPEG attached picture), with or without real video too.

    This is how music and podcast files look: FFmpeg lists the picture as a video
    stream with the ``attached_pic`` disposition and one packet.
    """
    with av.open(str(path), "w") as out:
        art = out.add_stream("mjpeg")
        art.height, art.width = cover.shape[:2]
        art.pix_fmt = "yuvj420p"
        art.disposition = av.stream.Disposition.attached_pic
        video = None
        if frames is not None:
            video = out.add_stream("libx264", rate=fps)
            video.height, video.width = frames.shape[1:3]
            video.pix_fmt = "yuv420p"
        sound = out.add_stream("aac", rate=sample_rate, layout="mono")
        picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(cover), format="rgb24").reformat(format="yuvj420p")
        for packet in [*art.encode(picture), *art.encode(None)]:
            out.mux(packet)
        if video is not None:
            for k, image in enumerate(frames):
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
                frame.pts = k
                out.mux(video.encode(frame))
            out.mux(video.encode(None))
        for start in range(0, len(audio), 1024):
            frame = av.AudioFrame.from_ndarray(audio[None, start : start + 1024].astype(np.float32), format="fltp",
                                               layout="mono")
            frame.sample_rate, frame.pts = sample_rate, start
            out.mux(sound.encode(frame))
        out.mux(sound.encode(None))
    return path


def write_rotated(path: Path, upright: np.ndarray, degrees: int, fps: int = 25) -> Path:
    """An MP4 as a phone records it: frames stored turned, with a display matrix saying to turn them
    ``degrees`` counter-clockwise (FFmpeg's convention) to show ``upright``."""
    stored = np.ascontiguousarray(np.rot90(upright, k=-round(degrees / 90), axes=(1, 2)))
    return _write_stored(path, stored, fps, lambda video: video.set_display_rotation(degrees))


def write_anamorphic(path: Path, shown: np.ndarray, pixel_aspect: Fraction, fps: int = 25) -> Path:
    """A video stored with non-square pixels (as HDV, DVD and broadcast video are) that shows as ``shown``:
    frames squeezed to ``width / pixel_aspect`` columns, with the pixel aspect in the stream."""
    height, width = shown.shape[1:3]
    stored_width = round(width / pixel_aspect) // 2 * 2
    stored = np.stack([cv2.resize(f, (stored_width, height), interpolation=cv2.INTER_AREA) for f in shown])

    def set_aspect(video) -> None:
        video.codec_context.sample_aspect_ratio = pixel_aspect

    return _write_stored(path, stored, fps, set_aspect)


def _write_stored(path: Path, stored: np.ndarray, fps: int, prepare) -> Path:
    """H.264 MP4 of ``stored`` frames as they are, after ``prepare(stream)`` sets how they are shown."""
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=fps)
        video.height, video.width = stored.shape[1:3]
        video.pix_fmt = "yuv420p"
        prepare(video)
        for k, image in enumerate(stored):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = k
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
    return path


def truncate(path: Path, keep: float = 0.5) -> Path:
    """Cut a good file to ``keep`` of its bytes, like an interrupted copy."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def make_empty(path: Path) -> Path:
    """A zero-byte file under the given name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


# ---------------------------------------------------------------------- DFEW


def dfew_csv(root: Path, split: str, fold: int) -> Path:
    return root / "EmoLabel_DataSplit" / f"{split}(single-labeled)" / f"set_{fold}.csv"


def dfew_video(root: Path, number: int) -> Path:
    return root / "Clip" / "original" / f"{number}.mp4"


def write_dfew_csv(
    root: Path, split: str, fold: int, rows: Iterable[Sequence[object]], *, bom: bool = False, crlf: bool = False
) -> Path:
    """Write ``video_name,label`` and the rows (any cells; malformed rows on purpose allowed)."""
    path = dfew_csv(root, split, fold)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8-sig" if bom else "utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\r\n" if crlf else "\n")
        writer.writerow(["video_name", "label"])
        for row in rows:
            writer.writerow(list(row))
    return path


def build_dfew(
    root: Path,
    splits: Mapping[tuple[str, int], Sequence[tuple[int, int]]],
    *,
    media: bool = True,
    **av_options: object,
) -> Path:
    """DFEW tree: one CSV per (split, fold) with (video_name, code) rows, and a clip per named number.

    ``media=False`` writes zero-byte placeholders (enough for index-only tests).
    """
    (root / "Clip" / "original").mkdir(parents=True, exist_ok=True)
    numbers: set[int] = set()
    for (split, fold), rows in splits.items():
        write_dfew_csv(root, split, fold, rows)
        numbers.update(n for n, _ in rows)
    for n in sorted(numbers):
        if media:
            write_av(dfew_video(root, n), seed=n, **av_options)  # type: ignore[arg-type]
        else:
            make_empty(dfew_video(root, n))
    return root


# ---------------------------------------------------------------------- MAFW


def mafw_txt(root: Path, split: str, fold: int) -> Path:
    return root / "Train & Test Set" / "single" / "no_caption" / f"set_{fold}" / f"{split}.txt"


def mafw_video(root: Path, number: int) -> Path:
    return root / "data" / "clips" / f"{number:05d}.mp4"


def write_mafw_txt(root: Path, split: str, fold: int, lines: Iterable[str]) -> Path:
    path = mafw_txt(root, split, fold)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def build_mafw(
    root: Path, splits: Mapping[tuple[str, int], Sequence[tuple[int, str]]], *, media: bool = True
) -> Path:
    """MAFW tree: ``{05d}.mp4 label`` lines per (split, fold) and a clip per named number."""
    (root / "data" / "clips").mkdir(parents=True, exist_ok=True)
    numbers: set[int] = set()
    for (split, fold), rows in splits.items():
        write_mafw_txt(root, split, fold, [f"{n:05d}.mp4 {label}" for n, label in rows])
        numbers.update(n for n, _ in rows)
    for n in sorted(numbers):
        if media:
            write_av(mafw_video(root, n), seed=n)
        else:
            make_empty(mafw_video(root, n))
    return root


# ---------------------------------------------------------------------- RAVDESS


def ravdess_name(
    modality: int = 1,
    channel: int = 1,
    emotion: int = 1,
    intensity: int = 1,
    statement: int = 1,
    repetition: int = 1,
    actor: int = 1,
) -> str:
    """``MM-VV-EE-II-SS-RR-AA`` without extension."""
    return "-".join(f"{v:02d}" for v in (modality, channel, emotion, intensity, statement, repetition, actor))


def ravdess_path(root: Path, stem: str, folder_actor: int | None = None) -> Path:
    """Where a RAVDESS file lives: video modalities in ``Actor_XX``, audio-only under ``Audio_Speech_Actors_01-24``."""
    actor = folder_actor if folder_actor is not None else int(stem.split("-")[-1])
    if stem.startswith("03-"):
        return root / "Audio_Speech_Actors_01-24" / f"Actor_{actor:02d}" / f"{stem}.wav"
    return root / f"Actor_{actor:02d}" / f"{stem}.mp4"


def write_ravdess(root: Path, stem: str, *, folder_actor: int | None = None, media: bool = True, seed: int = 0) -> Path:
    """One RAVDESS file like the real ones: 30 fps H.264 + 48 kHz AAC (full-AV), silent mp4 (video-only), wav."""
    path = ravdess_path(root, stem, folder_actor)
    if not media:
        return make_empty(path)
    modality = stem[:2]
    if modality == "03":
        return write_wav(path, sample_rate=48000)
    return write_av(path, seed=seed, audio=(modality == "01"), fps=30.0, sample_rate=48000)


# ---------------------------------------------------------------------- CREMA-D


def cremad_paths(root: Path, stem: str) -> tuple[Path, Path]:
    return root / "VideoFlash" / f"{stem}.flv", root / "AudioWAV" / f"{stem}.wav"


def write_cremad(
    root: Path,
    stem: str,
    *,
    video: bool = True,
    audio: bool = True,
    media: bool = True,
    wav_seconds: float = 0.8,
    seed: int = 0,
) -> tuple[Path, Path]:
    """A CREMA-D pair: 30 fps FLV whose own audio lasts 0.6 s, and a 16 kHz WAV of ``wav_seconds``.

    The two audio lengths differ on purpose, so a test can tell which one the reader used.
    """
    flv, wav = cremad_paths(root, stem)
    if video:
        if media:
            write_av(flv, seed=seed, fps=30.0, sample_rate=44100, video_codec="flv", audio_codec="aac")
        else:
            make_empty(flv)
    if audio:
        if media:
            write_wav(wav, seconds=wav_seconds)
        else:
            make_empty(wav)
    return flv, wav


def synth_dfew_tree(tmp: Path, n: int, seed: int) -> tuple[Path, list[dict]]:
    """A synthetic corpus of ``n`` clips copied into a DFEW fold-1 train tree: ``(root, manifest records)``.

    Clip ``k`` (1-based) is the corpus's ``k``-th record, so a test can write descriptions from the records.
    """
    from migr_rt.training.data import DFEW_CODE_TO_LABEL
    from migr_rt.training.synth.corpus import SynthConfig, generate_corpus

    corpus = tmp / "corpus"
    generate_corpus(SynthConfig(n=n, seed=seed, workers=1), corpus)
    records = [json.loads(line) for line in (corpus / "manifest.jsonl").read_text().splitlines() if line.strip()]
    code = {label: c for c, label in DFEW_CODE_TO_LABEL.items()}
    root = tmp / "DFEW"
    (root / "Clip" / "original").mkdir(parents=True)
    for k, rec in enumerate(records, start=1):
        shutil.copy(corpus / rec["file"], root / "Clip" / "original" / f"{k}.mp4")
    write_dfew_csv(root, "train", 1, [(k, code[rec["label"]]) for k, rec in enumerate(records, start=1)])
    return root, records


def write_marked_av(
    path: Path,
    *,
    video_start: float = 0.0,
    audio_start: float = 0.0,
    mark: float = 1.0,
    seconds: float = 2.0,
    lost: tuple[float, float] | None = None,
    paused: tuple[float, float] | None = None,
    fps: int = 25,
    sample_rate: int = 16000,
) -> Path:
    """H.264 + AAC whose streams start at their own timestamps (``video_start``, ``audio_start`` seconds), with a
    white frame and a loud 1 kHz burst that a player shows and plays together at ``mark`` seconds.

    This is an edited clip, or an MPEG-TS capture, whose audio and video do not start together.
    ``lost`` drops the audio packets that start in that span of seconds, as a lossy network does; ``paused``
    drops the video frames in that span, as a screen recorder does while nothing moves (the sound goes on).
    The other frames are dark grey and the other audio a quiet 200 Hz hum (amplitude 0.01).
    """
    frames = np.full((int(round(seconds * fps)), SIZE, SIZE, 3), 20, np.uint8)
    frames[int(round((mark - video_start) * fps))] = 250
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    audio = 0.01 * np.sin(2 * np.pi * 200 * t)
    burst = (t >= mark - audio_start) & (t < mark - audio_start + 0.1)
    audio[burst] = 0.5 * np.sin(2 * np.pi * 1000 * t[burst])
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=fps)
        video.height = video.width = SIZE
        video.pix_fmt = "yuv420p"
        video.time_base = Fraction(1, 1000 * fps)
        sound = out.add_stream("aac", rate=sample_rate, layout="mono")
        sound.time_base = Fraction(1, sample_rate)
        packets = []
        for k, image in enumerate(frames):
            if paused is not None and paused[0] <= video_start + k / fps < paused[1]:
                continue
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = int(round((video_start * fps + k) * 1000)), video.time_base
            packets += video.encode(frame)
        packets += video.encode(None)
        for first in range(0, len(audio), 1024):
            frame = av.AudioFrame.from_ndarray(audio[None, first : first + 1024].astype(np.float32), format="fltp",
                                               layout="mono")
            frame.sample_rate, frame.time_base = sample_rate, sound.time_base
            frame.pts = int(round(audio_start * sample_rate)) + first
            packets += [p for p in sound.encode(frame)
                        if lost is None or not lost[0] <= float(p.pts * p.time_base) < lost[1]]
        packets += sound.encode(None)
        for packet in sorted(packets, key=lambda p: float(p.dts * p.time_base)):
            out.mux(packet)
    return path


def write_audio_tracks(path: Path, tracks: Sequence[tuple[float, int]], seconds: float = 1.0,
                       sample_rate: int = 16000) -> Path:
    """Video with several AAC tracks, as films and broadcasts carry them: ``(tone Hz, FFmpeg disposition flags)``
    each, in file order (``av.stream.Disposition.default``, ``.comment``, ``.visual_impaired`` ...)."""
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=25)
        video.height = video.width = SIZE
        video.pix_fmt = "yuv420p"
        sounds = []
        for _, disposition in tracks:
            sound = out.add_stream("aac", rate=sample_rate, layout="mono")
            sound.disposition = disposition
            sounds.append(sound)
        for k, image in enumerate(frames_for(0, seconds)):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = k
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        for sound, (freq, _) in zip(sounds, tracks):
            audio = tone(seconds, sample_rate, freq)
            for first in range(0, len(audio), 1024):
                frame = av.AudioFrame.from_ndarray(audio[None, first : first + 1024], format="fltp", layout="mono")
                frame.sample_rate, frame.pts = sample_rate, first
                out.mux(sound.encode(frame))
            out.mux(sound.encode(None))
    return path


def write_stereo(path: Path, left: np.ndarray, right: np.ndarray, *, codec: str = "aac",
                 sample_rate: int = 16000) -> Path:
    """An audio file with the two given channels (float32 mono each), e.g. one voice with one side inverted."""
    data = np.stack([left, right]).astype(np.float32)
    with av.open(str(path), "w") as out:
        sound = out.add_stream(codec, rate=sample_rate, layout="stereo")
        planar = sound.codec_context.format.is_planar
        for first in range(0, data.shape[1], 1024):
            block = data[:, first : first + 1024]
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(block if planar else block.T.reshape(1, -1)),
                                               format="fltp" if planar else "flt", layout="stereo")
            frame.sample_rate, frame.pts = sample_rate, first
            out.mux(sound.encode(frame))
        out.mux(sound.encode(None))
    return path
