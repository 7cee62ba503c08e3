"""Read a generated synthetic corpus back as :class:`migr_rt.media.Clip` records.

Training and evaluation see synthetic clips exactly as they see real ones:
decoded from the written MP4 at the manifest's rates. Code that needs only
metadata (labels, kinds, cue lists) uses :attr:`SynthCorpus.records` and never
decodes video.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from migr_rt.media import Clip, decode_media

#: Keys every manifest record must carry for the reader to use it.
REQUIRED_KEYS: tuple[str, ...] = ("id", "file", "label", "fps", "sample_rate", "visual", "audio")


class ManifestError(ValueError):
    """A manifest that is missing or malformed; the message names the file (and line)."""


def read_manifest(manifest_path: str | Path) -> list[dict[str, Any]]:
    """Parse ``manifest.jsonl`` (one JSON object per line; blank lines are ignored)."""
    path = Path(manifest_path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found (generate one with `migr-rt synth`)")
    records: list[dict[str, Any]] = []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        lineno = path.read_bytes().count(b"\n", 0, exc.start) + 1
        raise ManifestError(f"{path}:{lineno}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ManifestError(f"{path}:{lineno}: not valid JSON ({exc.msg} at column {exc.colno})") from exc
        except RecursionError as exc:
            raise ManifestError(f"{path}:{lineno}: not a manifest record (JSON nested too deeply)") from exc
        if not isinstance(record, dict):
            raise ManifestError(f"{path}:{lineno}: expected a JSON object, got {type(record).__name__}")
        missing = [k for k in REQUIRED_KEYS if k not in record]
        if missing:
            raise ManifestError(f"{path}:{lineno}: record lacks required keys {missing}")
        records.append(record)
    return records


class SynthCorpus:
    """A generated corpus: ``len()``, indexing and iteration yield decoded :class:`Clip` objects.

    Each clip's ``meta`` is its manifest record, ``label`` its label and
    ``source`` the MP4 path.
    """

    def __init__(self, manifest_path: str | Path) -> None:
        self.manifest_path = Path(manifest_path)
        self.root = self.manifest_path.parent
        self.records: list[dict[str, Any]] = read_manifest(self.manifest_path)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Clip:
        record = self.records[index]
        path = self.root / record["file"]
        media = decode_media(
            path, fps=record["fps"], sample_rate=record["sample_rate"], require_video=True, require_audio=True
        )
        return Clip(
            clip_id=record["id"],
            frames=media.frames,
            audio=media.audio,
            fps=media.fps,
            sample_rate=media.sample_rate,
            label=record["label"],
            source=str(path),
            meta=record,
        )

    def __iter__(self) -> Iterator[Clip]:
        for i in range(len(self)):
            yield self[i]
