"""MAFW (Multimodal Affective Facial expressions in the Wild) reader, single-expression protocol.

Layout read (as distributed)::

    MAFW/
      data/clips/00001.mp4 ... 10045.mp4     (video with audio)
      Train & Test Set/single/no_caption/set_1/train.txt, test.txt ... set_5/...

Each annotation line is ``<file name> <label>``, e.g. ``00025.mp4 anger``. A
name written without extension (``00025 anger``) means the ``.mp4`` file.
Labels are MAFW's English names; the seven shared with DFEW are renamed to
DFEW's spelling (anger -> angry, happiness -> happy, sadness -> sad) so a
checkpoint's label tokens agree across datasets.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from migr_rt.training.data.errors import AnnotationError, UnknownLabelError
from migr_rt.training.data.reader import Candidate, FoldSplitReader
from migr_rt.training.data.records import Entry

from migr_rt.labels import MAFW_LABELS

#: MAFW's annotation names -> our canonical names (matched case-insensitively).
MAFW_NAME_TO_LABEL: dict[str, str] = {
    "anger": "angry",
    "disgust": "disgust",
    "fear": "fear",
    "happiness": "happy",
    "neutral": "neutral",
    "sadness": "sad",
    "surprise": "surprise",
    "contempt": "contempt",
    "anxiety": "anxiety",
    "helplessness": "helplessness",
    "disappointment": "disappointment",
}

_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class MAFWReader(FoldSplitReader):
    """MAFW clips of one fold (1..5) and split ("train"/"test"), eleven classes.

    Clip ids are ``mafw/<file stem>`` (``mafw/00025``); ``meta`` holds
    ``file_name``, ``mafw_label`` (the name as annotated), ``fold`` and ``split``.
    See :class:`~migr_rt.training.data.reader.DatasetReader` for the shared options.
    """

    name = "mafw"
    labels = MAFW_LABELS


    @property
    def annotation_path(self) -> Path:
        return self.root / "Train & Test Set" / "single" / "no_caption" / f"set_{self.fold}" / f"{self.split}.txt"

    @property
    def clip_dir(self) -> Path:
        return self.root / "data" / "clips"

    def _candidates(self) -> Iterator[Candidate]:
        self._require_layout()
        txt = self.annotation_path
        with open(txt, encoding="utf-8-sig") as fh:
            try:
                for line_no, raw in enumerate(fh, start=1):
                    text = raw.strip()
                    if not text:
                        continue
                    cand = self._parse_line(txt, line_no, text)
                    if cand is not None:
                        yield cand
            except UnicodeDecodeError as exc:  # the whole file is unreadable: not a per-line skip
                raise AnnotationError(txt, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from exc

    def _parse_line(self, txt: Path, line_no: int, text: str) -> Candidate | None:
        fields = text.split()
        if len(fields) != 2:
            self._reject(
                AnnotationError(txt, f"malformed line {text!r}: expected '<file name> <label>'", line=line_no)
            )
            return None
        file_name, raw_label = fields
        if not _SAFE_NAME.match(file_name) or file_name in (".", ".."):
            self._reject(
                AnnotationError(txt, f"malformed line {text!r}: {file_name!r} is not a plain clip file name", line=line_no)
            )
            return None
        if "." not in file_name:
            file_name += ".mp4"
        stem = file_name.rsplit(".", 1)[0]
        clip_id = f"mafw/{stem}"
        label = MAFW_NAME_TO_LABEL.get(raw_label.lower())
        if label is None:
            known = ", ".join(MAFW_NAME_TO_LABEL)
            self._reject(
                UnknownLabelError(txt, f"unknown MAFW label {raw_label!r} for {file_name} (known: {known})", line=line_no),
                clip_id,
            )
            return None
        video = self.clip_dir / file_name
        meta = {"file_name": file_name, "mafw_label": raw_label, "fold": self.fold, "split": self.split}
        return Candidate(Entry(clip_id, label, video, video, meta), txt, line_no)
