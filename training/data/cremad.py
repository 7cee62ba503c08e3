"""CREMA-D (Crowd-sourced Emotional Multimodal Actors Dataset) reader.

Layout read (as distributed)::

    CREMA-D/
      VideoFlash/1001_DFA_ANG_XX.flv ...   (video; its own audio track is not used)
      AudioWAV/1001_DFA_ANG_XX.wav ...     (16 kHz mono PCM, the dataset's clean audio)

The name is the annotation: ``{actor}_{sentence}_{emotion}_{level}``, actor
1001-1091, sentence one of twelve codes, emotion ANG/DIS/FEA/HAP/NEU/SAD,
level LO/MD/HI/XX (XX: unspecified). Frames come from the FLV and audio from
the WAV of the same stem; a stem present in only one folder is a missing file
for the other (an error when that modality is required).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from migr_rt.training.data.errors import DatasetNotFoundError, MalformedNameError, UnknownLabelError
from migr_rt.training.data.reader import Candidate, DatasetReader
from migr_rt.training.data.records import Entry

from migr_rt.labels import DFEW_LABELS

#: CREMA-D emotion codes -> our canonical names.
CREMAD_EMOTIONS: dict[str, str] = {
    "ANG": "angry",
    "DIS": "disgust",
    "FEA": "fear",
    "HAP": "happy",
    "NEU": "neutral",
    "SAD": "sad",
}
CREMAD_LEVELS: dict[str, str] = {"LO": "low", "MD": "medium", "HI": "high", "XX": "unspecified"}
CREMAD_SENTENCES: dict[str, str] = {
    "IEO": "It's eleven o'clock",
    "TIE": "That is exactly what happened",
    "IOM": "I'm on my way to the meeting",
    "IWW": "I wonder what this is about",
    "TAI": "The airplane is almost full",
    "MTI": "Maybe tomorrow it will be cold",
    "IWL": "I would like a new alarm clock",
    "ITH": "I think I have a doctor's appointment",
    "DFA": "Don't forget a jacket",
    "ITS": "I think I've seen this before",
    "TSI": "The surface is slick",
    "WSI": "We'll stop in a couple of minutes",
}
CREMAD_ACTORS = range(1001, 1092)

_NAME = re.compile(r"^(\d{4})_([A-Za-z]{3})_([A-Za-z]{3})_([A-Za-z]{2})$")


class CREMADReader(DatasetReader):
    """CREMA-D clips: FLV video plus the separate WAV audio, six classes.

    ``actors`` keeps only those actor ids (1001..1091), for speaker-independent
    splits. Clip ids are ``cremad/<stem>``; ``meta`` holds ``actor``,
    ``sentence``, ``sentence_text``, ``emotion_code``, ``level`` and
    ``level_code``. CREMA-D has no surprise class, so that DFEW label never occurs.
    """

    name = "cremad"
    labels = DFEW_LABELS

    def __init__(self, root: str | Path, *, actors: Iterable[int] | None = None, **options: Any) -> None:
        if actors is not None:
            actors = tuple(actors)
            if not actors or any(isinstance(a, bool) or not isinstance(a, int) or a not in CREMAD_ACTORS for a in actors):
                raise ValueError(f"cremad: actors must be actor ids 1001..1091, got {actors!r}")
        self.actors = None if actors is None else frozenset(actors)
        self.ignored = 0  # clips of actors not selected
        super().__init__(root, **options)

    @property
    def video_dir(self) -> Path:
        return self.root / "VideoFlash"

    @property
    def audio_dir(self) -> Path:
        return self.root / "AudioWAV"

    def _options_repr(self) -> str:
        return "" if self.actors is None else f"actors={sorted(self.actors)}"

    def _candidates(self) -> Iterator[Candidate]:
        folders = ((self.video_dir, ".flv", self.require_video), (self.audio_dir, ".wav", self.require_audio))
        stems: dict[str, Path] = {}  # stem -> the first file that named it
        for folder, suffix, required in folders:
            if not folder.is_dir():
                if required:
                    raise DatasetNotFoundError(folder, f"CREMA-D folder {folder.name} does not exist")
                continue
            for path in sorted(folder.iterdir()):
                if path.suffix.lower() == suffix and not path.name.startswith(".") and path.is_file():
                    stems.setdefault(path.stem, path)
        if not stems:
            raise DatasetNotFoundError(self.root, "no CREMA-D .flv files in VideoFlash nor .wav files in AudioWAV")
        for stem in sorted(stems):
            cand = self._parse_stem(stem, stems[stem])
            if cand is not None:
                yield cand

    def _parse_stem(self, stem: str, path: Path) -> Candidate | None:
        clip_id = f"cremad/{stem}"
        m = _NAME.match(stem)
        if m is None:
            self._reject(
                MalformedNameError(path, "file name does not follow CREMA-D's {actor}_{sentence}_{emotion}_{level}"),
                clip_id,
            )
            return None
        actor_s, sentence, emotion, level = m.groups()
        problems = []
        actor = int(actor_s)
        if actor not in CREMAD_ACTORS:
            problems.append(f"actor {actor_s} (valid 1001-1091)")
        if sentence not in CREMAD_SENTENCES:
            problems.append(f"sentence code {sentence!r}")
        if level not in CREMAD_LEVELS:
            problems.append(f"level {level!r} (valid LO, MD, HI, XX)")
        if problems:
            self._reject(MalformedNameError(path, "file name has invalid " + ", ".join(problems)), clip_id)
            return None
        label = CREMAD_EMOTIONS.get(emotion)
        if label is None:
            known = ", ".join(CREMAD_EMOTIONS)
            self._reject(UnknownLabelError(path, f"unknown CREMA-D emotion code {emotion!r} (known: {known})"), clip_id)
            return None
        if self.actors is not None and actor not in self.actors:
            self.ignored += 1
            return None
        meta = {
            "actor": actor,
            "sentence": sentence,
            "sentence_text": CREMAD_SENTENCES[sentence],
            "emotion_code": emotion,
            "level": CREMAD_LEVELS[level],
            "level_code": level,
        }
        entry = Entry(clip_id, label, self.video_dir / f"{stem}.flv", self.audio_dir / f"{stem}.wav", meta)
        return Candidate(entry, path)
