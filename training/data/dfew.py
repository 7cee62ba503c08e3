"""DFEW (Dynamic Facial Expressions in the Wild) reader.

Layout read (as distributed)::

    DFEW/
      EmoLabel_DataSplit/
        train(single-labeled)/set_1.csv ... set_5.csv
        test(single-labeled)/set_1.csv ... set_5.csv
      Clip/original/1.mp4 ... 16372.mp4      (video with audio)

Each CSV has the header ``video_name,label``; ``video_name`` is the clip number
(unpadded, e.g. ``16``) and ``label`` a code 1..7. Files named ``00016.mp4``
are accepted too, since re-packed copies of the dataset often pad the names.

The face-aligned frame folders (``Clip/clip_224x224/...``) are not read: they
carry no audio, and MIGR needs both modalities.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from pathlib import Path

from migr_rt.training.data.errors import AnnotationError, UnknownLabelError
from migr_rt.training.data.reader import Candidate, FoldSplitReader
from migr_rt.training.data.records import Entry

from migr_rt.labels import DFEW_LABELS

#: DFEW's label codes (from the dataset's README) -> our canonical names.
DFEW_CODE_TO_LABEL: dict[int, str] = {
    1: "happy",
    2: "sad",
    3: "neutral",
    4: "angry",
    5: "surprise",
    6: "disgust",
    7: "fear",
}


class DFEWReader(FoldSplitReader):
    """DFEW clips of one fold (1..5) and split ("train"/"test") of the single-labeled protocol.

    Clip ids are ``dfew/<5-digit number>`` (``dfew/00016``); ``meta`` holds
    ``video_name`` (int), ``label_code``, ``fold`` and ``split``. See
    :class:`~migr_rt.training.data.reader.DatasetReader` for the shared options.
    """

    name = "dfew"
    labels = DFEW_LABELS


    @property
    def annotation_path(self) -> Path:
        return self.root / "EmoLabel_DataSplit" / f"{self.split}(single-labeled)" / f"set_{self.fold}.csv"

    @property
    def clip_dir(self) -> Path:
        return self.root / "Clip" / "original"

    def _candidates(self) -> Iterator[Candidate]:
        self._require_layout()
        csv_path = self.annotation_path
        available = set(os.listdir(self.clip_dir))
        # utf-8-sig: the CSVs are often saved by spreadsheet tools that prepend a BOM.
        with open(csv_path, encoding="utf-8-sig", newline="") as fh:
            rows = csv.reader(fh)
            header: list[str] | None = None
            # An unreadable file (not UTF-8, a runaway quoted field) is unreadable as a whole: not a per-row skip.
            try:
                for row in rows:
                    line = rows.line_num
                    if not any(cell.strip() for cell in row):
                        continue
                    if header is None:
                        header = [cell.strip().lower() for cell in row]
                        if "video_name" not in header or "label" not in header:
                            # A wrong header makes every row unreadable: not a per-row skip.
                            raise AnnotationError(
                                csv_path, f"header must name columns 'video_name' and 'label', got {row!r}", line=line
                            )
                        name_col, label_col = header.index("video_name"), header.index("label")
                        continue
                    cand = self._parse_row(csv_path, line, row, name_col, label_col, available)
                    if cand is not None:
                        yield cand
            except UnicodeDecodeError as exc:
                raise AnnotationError(csv_path, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
            except csv.Error as exc:
                raise AnnotationError(csv_path, f"not a readable CSV file ({exc})", line=rows.line_num) from exc
            if header is None:
                raise AnnotationError(csv_path, "annotation file is empty (no header 'video_name,label')")

    def _parse_row(
        self, csv_path: Path, line: int, row: list[str], name_col: int, label_col: int, available: set[str]
    ) -> Candidate | None:
        cells = [cell.strip() for cell in row]
        if len(cells) <= max(name_col, label_col):
            self._reject(AnnotationError(csv_path, f"malformed row {row!r}: expected video_name,label", line=line))
            return None
        raw_name, raw_label = cells[name_col], cells[label_col]
        # isdecimal, not isdigit ("²" is a digit int() refuses); a bounded length (int() refuses 4300+ digits)
        number = int(raw_name) if raw_name.isdecimal() and len(raw_name) <= 18 else 0
        if number <= 0:
            self._reject(
                AnnotationError(csv_path, f"malformed row {row!r}: video_name {raw_name!r} is not a clip number", line=line)
            )
            return None
        clip_id = f"dfew/{number:05d}"
        try:
            code = int(raw_label)
        except ValueError:
            self._reject(
                AnnotationError(csv_path, f"malformed row {row!r}: label {raw_label!r} is not an integer code", line=line),
                clip_id,
            )
            return None
        if code not in DFEW_CODE_TO_LABEL:
            self._reject(
                UnknownLabelError(csv_path, f"unknown DFEW label code {code} for clip {number} (valid: 1..7)", line=line),
                clip_id,
            )
            return None
        video = self._video_path(number, available)
        meta = {"video_name": number, "label_code": code, "fold": self.fold, "split": self.split}
        return Candidate(Entry(clip_id, DFEW_CODE_TO_LABEL[code], video, video, meta), csv_path, line)

    def _video_path(self, number: int, available: set[str]) -> Path:
        """``Clip/original/<n>.mp4``, or its zero-padded spelling if only that exists."""
        plain, padded = f"{number}.mp4", f"{number:05d}.mp4"
        if plain not in available and padded in available:
            return self.clip_dir / padded
        return self.clip_dir / plain
