"""RAVDESS (Ryerson Audio-Visual Database of Emotional Speech and Song) reader.

RAVDESS has no annotation file: the label is the file name. Layout read::

    RAVDESS/
      Actor_01/01-01-03-01-01-01-01.mp4 ...     (as the Video_*_Actor_XX.zip files unpack)
      Audio_Speech_Actors_01-24/Actor_01/03-01-03-01-01-01-01.wav ...

``Actor_XX`` folders are looked for directly under the root and one level
below it (so both a flat tree and the per-zip folders work). A name is seven
two-digit fields ``MM-VV-EE-II-SS-RR-AA``: modality (01 full-AV, 02 video-only,
03 audio-only), vocal channel (01 speech, 02 song), emotion (01 neutral,
02 calm, 03 happy, 04 sad, 05 angry, 06 fearful, 07 disgust, 08 surprised),
intensity (01 normal, 02 strong), statement (01 "Kids are talking by the door",
02 "Dogs are sitting by the door"), repetition (01, 02), actor (01-24, odd male,
even female).

"calm" has no DFEW class. By default calm clips are left out and counted under
``skipped["calm_unmapped"]``; ``calm_as="neutral"`` (or any DFEW label) keeps
them under that label, with ``meta["emotion"] == "calm"`` recording the truth.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from migr_rt.training.data.errors import AnnotationError, DatasetNotFoundError, MalformedNameError, UnknownLabelError
from migr_rt.training.data.reader import Candidate, DatasetReader
from migr_rt.training.data.records import Entry

from migr_rt.labels import DFEW_LABELS

#: RAVDESS emotion code -> (RAVDESS's name, our canonical label; None for calm).
RAVDESS_EMOTIONS: dict[int, tuple[str, str | None]] = {
    1: ("neutral", "neutral"),
    2: ("calm", None),
    3: ("happy", "happy"),
    4: ("sad", "sad"),
    5: ("angry", "angry"),
    6: ("fearful", "fear"),
    7: ("disgust", "disgust"),
    8: ("surprised", "surprise"),
}

#: Modality code -> (our option value, the extension its files carry).
RAVDESS_MODALITIES: dict[int, tuple[str, str]] = {1: ("av", ".mp4"), 2: ("video", ".mp4"), 3: ("audio", ".wav")}
RAVDESS_VOCAL_CHANNELS: dict[int, str] = {1: "speech", 2: "song"}
RAVDESS_INTENSITIES: dict[int, str] = {1: "normal", 2: "strong"}
RAVDESS_STATEMENTS: dict[int, str] = {1: "Kids are talking by the door", 2: "Dogs are sitting by the door"}

_NAME = re.compile(r"^(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})$")
_ACTOR_DIR = re.compile(r"^Actor_(\d{2})$")
_MEDIA_SUFFIXES = (".mp4", ".wav")


class RAVDESSReader(DatasetReader):
    """RAVDESS clips of one modality (``"av"`` full audio-visual by default).

    Options beyond the shared ones:

    ``modality``
        ``"av"`` (01, mp4 with audio), ``"video"`` (02, silent mp4; audio is
        then not required and comes back ``None``) or ``"audio"`` (03, wav;
        video not required). Files of the other modalities are ignored.
    ``vocal_channels``
        Any of ``"speech"``, ``"song"`` (default both).
    ``actors``
        Keep only these actor numbers (1..24), for speaker-independent splits.
    ``calm_as``
        ``None`` (default: calm clips are a counted skip) or a DFEW label.

    Clip ids are ``ravdess/<file stem>``; ``meta`` holds ``modality``,
    ``vocal_channel``, ``emotion`` (RAVDESS's own name), ``emotion_code``,
    ``intensity``, ``statement``, ``statement_text``, ``repetition``, ``actor``
    and ``gender``.
    """

    name = "ravdess"
    labels = DFEW_LABELS

    def __init__(
        self,
        root: str | Path,
        *,
        modality: str = "av",
        vocal_channels: Iterable[str] = ("speech", "song"),
        actors: Iterable[int] | None = None,
        calm_as: str | None = None,
        **options: Any,
    ) -> None:
        modalities = {value for value, _ in RAVDESS_MODALITIES.values()}
        if modality not in modalities:
            raise ValueError(f"ravdess: modality must be one of {sorted(modalities)}, got {modality!r}")
        channels = tuple(vocal_channels)
        bad = [c for c in channels if c not in RAVDESS_VOCAL_CHANNELS.values()]
        if bad or not channels:
            raise ValueError(f"ravdess: vocal_channels must be a non-empty subset of ('speech', 'song'), got {channels!r}")
        if actors is not None:
            actors = tuple(actors)
            if not actors or any(isinstance(a, bool) or not isinstance(a, int) or not 1 <= a <= 24 for a in actors):
                raise ValueError(f"ravdess: actors must be actor numbers 1..24, got {actors!r}")
        if calm_as is not None and calm_as not in DFEW_LABELS:
            raise ValueError(f"ravdess: calm_as must be None or one of {DFEW_LABELS}, got {calm_as!r}")
        self.modality = modality
        self.vocal_channels = channels
        self.actors = None if actors is None else frozenset(actors)
        self.calm_as = calm_as
        # A modality the files do not carry cannot be required of them.
        if modality == "video":
            options["require_audio"] = False
        elif modality == "audio":
            options["require_video"] = False
        self.ignored = 0  # files of other modalities / channels / actors, left out by the options
        super().__init__(root, **options)

    def _options_repr(self) -> str:
        parts = [f"modality={self.modality!r}"]
        if self.calm_as is not None:
            parts.append(f"calm_as={self.calm_as!r}")
        return ", ".join(parts)

    def actor_dirs(self) -> list[Path]:
        """``Actor_XX`` folders directly under the root or one level below, sorted."""
        found: list[Path] = []
        for child in sorted(self.root.iterdir()):
            if not child.is_dir() or child.name.startswith("."):
                continue
            if _ACTOR_DIR.match(child.name):
                found.append(child)
                continue
            found.extend(g for g in sorted(child.iterdir()) if g.is_dir() and _ACTOR_DIR.match(g.name))
        return found

    def _candidates(self) -> Iterator[Candidate]:
        dirs = self.actor_dirs()
        if not dirs:
            raise DatasetNotFoundError(self.root, "no RAVDESS Actor_XX folders under the dataset root (or one level below)")
        for folder in dirs:
            folder_actor = int(_ACTOR_DIR.match(folder.name).group(1))  # type: ignore[union-attr]
            for path in sorted(folder.iterdir()):
                if path.name.startswith(".") or path.suffix.lower() not in _MEDIA_SUFFIXES or not path.is_file():
                    continue
                cand = self._parse_file(path, folder_actor)
                if cand is not None:
                    yield cand

    def _parse_file(self, path: Path, folder_actor: int) -> Candidate | None:
        stem = path.stem
        clip_id = f"ravdess/{stem}"
        m = _NAME.match(stem)
        if m is None:
            self._reject(MalformedNameError(path, "file name does not follow RAVDESS's MM-VV-EE-II-SS-RR-AA"), clip_id)
            return None
        modality, channel, emotion, intensity, statement, repetition, actor = (int(g) for g in m.groups())
        problems = []
        if modality not in RAVDESS_MODALITIES:
            problems.append(f"modality {modality:02d} (valid 01-03)")
        if channel not in RAVDESS_VOCAL_CHANNELS:
            problems.append(f"vocal channel {channel:02d} (valid 01-02)")
        if intensity not in RAVDESS_INTENSITIES:
            problems.append(f"intensity {intensity:02d} (valid 01-02)")
        if statement not in RAVDESS_STATEMENTS:
            problems.append(f"statement {statement:02d} (valid 01-02)")
        if repetition not in (1, 2):
            problems.append(f"repetition {repetition:02d} (valid 01-02)")
        if not 1 <= actor <= 24:
            problems.append(f"actor {actor:02d} (valid 01-24)")
        if problems:
            self._reject(MalformedNameError(path, "file name has invalid " + ", ".join(problems)), clip_id)
            return None
        if emotion not in RAVDESS_EMOTIONS:
            self._reject(UnknownLabelError(path, f"unknown RAVDESS emotion code {emotion:02d} (valid 01-08)"), clip_id)
            return None
        modality_name, suffix = RAVDESS_MODALITIES[modality]
        if path.suffix.lower() != suffix:
            self._reject(
                MalformedNameError(path, f"modality {modality:02d} ({modality_name}) files are {suffix}, not {path.suffix}"),
                clip_id,
            )
            return None
        if actor != folder_actor:
            self._reject(
                AnnotationError(
                    path,
                    f"actor field {actor:02d} disagrees with its folder Actor_{folder_actor:02d}",
                    kind="actor_mismatch",
                ),
                clip_id,
            )
            return None
        channel_name = RAVDESS_VOCAL_CHANNELS[channel]
        if (
            modality_name != self.modality
            or channel_name not in self.vocal_channels
            or (self.actors is not None and actor not in self.actors)
        ):
            self.ignored += 1
            return None
        emotion_name, label = RAVDESS_EMOTIONS[emotion]
        if label is None:
            if self.calm_as is None:
                self._skip_by_policy(
                    "calm_unmapped", clip_id, f"{path}: 'calm' has no DFEW class (pass calm_as=... to keep calm clips)"
                )
                return None
            label = self.calm_as
        meta = {
            "modality": modality_name,
            "vocal_channel": channel_name,
            "emotion": emotion_name,
            "emotion_code": emotion,
            "intensity": RAVDESS_INTENSITIES[intensity],
            "statement": statement,
            "statement_text": RAVDESS_STATEMENTS[statement],
            "repetition": repetition,
            "actor": actor,
            "gender": "male" if actor % 2 else "female",
        }
        video = path if modality_name in ("av", "video") else None
        audio = path if modality_name in ("av", "audio") else None
        return Candidate(Entry(clip_id, label, video, audio, meta), path)
