"""Records shared by the dataset readers: the index entry and the skip ledger."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Entry:
    """One indexed clip, known from annotations and file names alone (nothing decoded yet).

    ``video_path`` and ``audio_path`` may be the same file (DFEW, MAFW, RAVDESS)
    or two files (CREMA-D keeps its clean audio in a separate WAV); either is
    ``None`` when the reader was told that modality is optional and the file is
    absent. ``meta`` holds the dataset's own fields (fold, actor, intensity ...)
    and is copied into every :class:`~migr_rt.media.Clip` decoded from the entry.
    """

    clip_id: str
    label: str
    video_path: Path | None
    audio_path: Path | None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def source(self) -> str:
        """The file a user would open to inspect this clip (the video if there is one)."""
        path = self.video_path if self.video_path is not None else self.audio_path
        return str(path) if path is not None else ""


class SkipLog:
    """Counts skipped clips by reason, with a few examples of each.

    Counts are of distinct items, so decoding the same broken file in every
    epoch does not inflate them. The first ``max_examples`` items of each reason
    keep their error message for the summary.
    """

    def __init__(self, max_examples: int = 5) -> None:
        self.max_examples = max_examples
        self._items: dict[str, set[str]] = {}
        self._examples: dict[str, list[tuple[str, str]]] = {}

    def add(self, kind: str, item: str, message: str) -> bool:
        """Record that ``item`` was skipped for ``kind``; return ``False`` if it was already recorded."""
        items = self._items.setdefault(kind, set())
        if item in items:
            return False
        items.add(item)
        examples = self._examples.setdefault(kind, [])
        if len(examples) < self.max_examples:
            examples.append((item, message))
        return True

    @property
    def counts(self) -> dict[str, int]:
        """Reason -> number of distinct skipped items, reasons sorted by name."""
        return {kind: len(items) for kind, items in sorted(self._items.items())}

    @property
    def examples(self) -> dict[str, list[str]]:
        """Reason -> up to ``max_examples`` skipped item ids."""
        return {kind: [item for item, _ in ex] for kind, ex in sorted(self._examples.items())}

    @property
    def messages(self) -> dict[str, list[str]]:
        """Reason -> the error messages of the example items."""
        return {kind: [msg for _, msg in ex] for kind, ex in sorted(self._examples.items())}

    @property
    def total(self) -> int:
        return sum(len(items) for items in self._items.values())

    def __bool__(self) -> bool:
        return self.total > 0

    def summary(self) -> str:
        """One line for the log: total, then each reason with its count and first example."""
        parts = []
        for kind, count in self.counts.items():
            _, first_msg = self._examples[kind][0]
            parts.append(f"{kind}={count} (e.g. {first_msg})")
        return f"{self.total} skipped: " + "; ".join(parts)
