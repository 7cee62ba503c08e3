"""Per-clip cue descriptions for a real dataset, read from a JSON-lines sidecar file.

The baseline and MIGR recipes train on reasoning traces built from one
description of each modality's evidence per clip. The synthetic corpus writes
them itself; DFEW, MAFW, RAVDESS and CREMA-D ship labels only, so a user who
has descriptions (written by annotators, or by a captioning teacher as in the
MIGR paper) names the file in the dataset spec::

    dfew:/data/DFEW?fold=1&descriptions=/data/dfew_descriptions.jsonl

One JSON object per line::

    {"clip_id": "dfew/00016", "visual": "slightly lowered brows", "audio": "clearly loud voice"}

* ``clip_id``: the reader's clip id (``dfew/00016``, ``mafw/00023``,
  ``ravdess/01-01-05-01-01-01-12``, ``cremad/1001_DFA_ANG_XX``) or the same id
  without the ``<dataset>/`` prefix; a clip number may be padded or not
  (``00016`` and ``16`` both name ``dfew/00016``, see :class:`ClipKeys`).
* ``visual`` / ``audio``: the description of that modality's evidence;
  ``""`` means nothing notable is shown, ``null`` or an absent key means unknown
  (a window with an unknown description trains the answer only).

One file may cover every fold and split: lines naming clips outside the
opened fold are ignored (a line that cannot be read at all is still reported,
since it cannot be told apart). Identical lines for one clip count once; two
different descriptions of one clip are both dropped, since neither is more
trustworthy. A file that names none of the indexed clips is an error, since
it almost always means the ids are spelled differently; clips it leaves out
are logged as a warning and train their answer only.

Paths in a dataset spec are URL query values: write ``+``, ``&``, ``#`` or
``%`` in a path as ``%2B``, ``%26``, ``%23``, ``%25`` (or pass
``descriptions=`` as a keyword to :func:`~migr_rt.training.data.open_dataset`).

Descriptions become ``visual_text`` / ``audio_text`` in each clip's ``meta``,
the same keys the synthetic corpus uses, so everything downstream (window
cache, trace SFT, reward contexts, evaluation) treats both alike.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from migr_rt.training.data.errors import AnnotationError, DatasetNotFoundError

from migr_rt.labels import MODALITIES
from migr_rt.model.tokenizer import STRUCTURAL_TOKENS

#: Keys a description line may hold.
DESCRIPTION_KEYS: tuple[str, ...] = ("clip_id", *MODALITIES)
#: Longest description accepted per modality, in characters (the synthetic corpus writes under ~250).
MAX_DESCRIPTION_CHARS = 2000

# Any MIGR structural token (<think>, </visual>, <eos>, <v> ...): inside a description it would be
# encoded as that token and break the trace it is written into.
_STRUCTURAL = re.compile("|".join(re.escape(t) for t in sorted(STRUCTURAL_TOKENS.values(), key=len, reverse=True)))


class DescriptionError(AnnotationError):
    """A malformed line of a descriptions file (bad JSON, unknown key, a text that would break a trace)."""

    kind = "malformed_description"


class DuplicateDescriptionError(DescriptionError):
    """Two lines give the same clip different descriptions (identical repeats are not an error)."""

    kind = "duplicate_description"


@dataclass(frozen=True)
class Description:
    """One line of a descriptions file: a clip id and the text per modality (None = unknown)."""

    clip_id: str
    texts: dict[str, str | None]
    line: int


def parse_description(path: Path, line: int, text: str) -> Description:
    """Parse one non-blank line; raises :class:`DescriptionError` naming ``path:line`` and the problem."""
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DescriptionError(path, f"not valid JSON ({exc.msg} at column {exc.colno})", line=line) from exc
    except RecursionError as exc:
        raise DescriptionError(path, "not a description record (JSON nested too deeply)", line=line) from exc
    if not isinstance(record, dict):
        raise DescriptionError(path, f"expected a JSON object, got {type(record).__name__}", line=line)
    unknown = sorted(set(record) - set(DESCRIPTION_KEYS))
    if unknown:
        raise DescriptionError(path, f"unknown key(s) {unknown}; a line holds {list(DESCRIPTION_KEYS)}", line=line)
    clip_id = record.get("clip_id")
    if not isinstance(clip_id, str) or not clip_id.strip():
        raise DescriptionError(path, f"'clip_id' must be a non-empty string, got {clip_id!r}", line=line)
    if not any(m in record for m in MODALITIES):
        raise DescriptionError(path, f"{clip_id} describes no modality (keys {list(MODALITIES)})", line=line)
    texts: dict[str, str | None] = {}
    for m in MODALITIES:
        value = record.get(m)
        if value is None:
            texts[m] = None
            continue
        if not isinstance(value, str):
            raise DescriptionError(path, f"{clip_id}: '{m}' must be a string or null, got {type(value).__name__}",
                                   line=line)
        value = " ".join(value.split())  # one line of text: newlines and runs of spaces collapse
        if len(value) > MAX_DESCRIPTION_CHARS:
            raise DescriptionError(
                path, f"{clip_id}: '{m}' is {len(value)} characters, longer than {MAX_DESCRIPTION_CHARS}", line=line
            )
        token = _STRUCTURAL.search(value)
        if token is not None:
            raise DescriptionError(
                path, f"{clip_id}: '{m}' contains the reserved token {token.group(0)!r}, which would break the trace",
                line=line,
            )
        texts[m] = value
    return Description(clip_id.strip(), texts, line)


def iter_description_lines(path: Path) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of every non-blank line; raises if the file is absent or not UTF-8."""
    if not path.is_file():
        what = "is not a file" if path.exists() else "does not exist"
        raise DatasetNotFoundError(path, f"descriptions file {what}")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        lineno = raw.count(b"\n", 0, exc.start) + 1
        raise DescriptionError(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})", line=lineno) from exc
    for lineno, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            yield lineno, line


def _strip_prefix(clip_id: str, dataset: str) -> str:
    prefix = f"{dataset}/"
    return clip_id[len(prefix):] if clip_id.startswith(prefix) else clip_id


def _unpadded(key: str) -> str:
    return str(int(key)) if key.isdecimal() and key.isascii() and len(key) <= 18 else key


class ClipKeys:
    """How description lines find their clips: ``dfew/00016``, ``00016`` and ``16`` all name ``dfew/00016``.

    Annotation files often write clip numbers unpadded while file names are
    padded, so a number matches however it is padded: unless two indexed clips
    differ only by padding (``mafw/00025`` and ``mafw/25``), in which case
    those two match their exact spelling only, never each other's line.
    """

    def __init__(self, clip_ids: list[str], dataset: str) -> None:
        self.dataset = dataset
        counts = Counter(_unpadded(_strip_prefix(clip_id, dataset)) for clip_id in clip_ids)
        self._ambiguous = {key for key, n in counts.items() if n > 1}
        self.keys = [self.key(clip_id) for clip_id in clip_ids]  #: the key of each indexed clip, in order

    def key(self, clip_id: str) -> str:
        """The match key of an indexed clip id or of a description line's ``clip_id``."""
        raw = _strip_prefix(clip_id, self.dataset)
        unpadded = _unpadded(raw)
        return raw if unpadded in self._ambiguous else unpadded


def write_template(clips: list[tuple[str, dict[str, str | None]]], path: str | Path) -> Path:
    """A descriptions file with a line per ``(clip id, known texts)``, ``null`` where unknown, to fill in.

    It spells every id exactly as the reader does, so the file matches by
    construction, and keeps what is already known. An existing file is never
    overwritten: it may hold hours of annotation (the final link fails if one
    appeared meanwhile, instead of replacing it).
    """
    path = Path(path).expanduser()
    if path.exists():
        raise FileExistsError(f"{path}: already exists; the template never overwrites a descriptions file")
    lines = [json.dumps({"clip_id": clip_id, **{m: texts.get(m) for m in MODALITIES}}) for clip_id, texts in clips]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        os.link(tmp, path)  # fails with FileExistsError rather than replacing a file created meanwhile
    finally:
        tmp.unlink(missing_ok=True)
    return path
