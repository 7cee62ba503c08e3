"""The behaviour every dataset reader shares: options, indexing policy, lazy decoding, skips.

A reader is built in two phases so that a broken dataset fails fast and cheap:

1. Construction indexes the dataset from its annotations and file names alone
   (no media is opened). Each annotation problem is a typed
   :class:`~migr_rt.training.data.errors.DatasetError`; ``on_error="raise"``
   raises the first, ``on_error="skip"`` counts it and goes on. Duplicates are
   resolved and referenced files checked for existence here, once for every
   dataset, so the per-dataset modules only parse their own layout.
2. Iteration decodes each entry with :func:`migr_rt.media.decode_media`. A
   missing, corrupt or incomplete file raises its
   :class:`~migr_rt.media.MediaError` (``"raise"``) or becomes a counted skip
   (``"skip"``): an epoch never dies on the 9,000th clip in skip mode, and a
   clip is never yielded with a label it does not have.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar, Literal, NamedTuple

from migr_rt.training.data.descriptions import (
    ClipKeys,
    Description,
    DescriptionError,
    DuplicateDescriptionError,
    iter_description_lines,
    parse_description,
)
from migr_rt.training.data.errors import DatasetError, DatasetNotFoundError, DuplicateEntryError, MissingMediaError
from migr_rt.training.data.records import Entry, SkipLog

from migr_rt.media import (
    Clip,
    CorruptMediaError,
    DecodedMedia,
    MediaError,
    MediaNotFoundError,
    MissingStreamError,
    decode_media,
)

logger = logging.getLogger(__name__)

OnError = Literal["skip", "raise"]
ON_ERROR_CHOICES: tuple[str, ...] = ("skip", "raise")


class Candidate(NamedTuple):
    """An entry as parsed, with where it came from (for duplicate and missing-file messages)."""

    entry: Entry
    origin: Path
    line: int | None = None

    @property
    def where(self) -> str:
        return f"{self.origin}:{self.line}" if self.line is not None else str(self.origin)


class DatasetReader:
    """Base class of the real-dataset readers.

    Subclasses set :attr:`name` and :attr:`labels`, store their own options and
    then call ``super().__init__``, which validates the shared options and
    builds the index through :meth:`_candidates`.

    Shared options:

    ``fps``, ``sample_rate``, ``max_seconds``
        Passed to :func:`~migr_rt.media.decode_media`: every clip comes out at
        the same frame rate and audio rate, optionally cut to ``max_seconds``.
    ``on_error``
        ``"skip"`` (default: a training epoch survives a few broken files out
        of thousands; every skip is counted in :attr:`skipped` and logged) or
        ``"raise"`` (the first problem raises a typed error naming the file).
    ``require_video``, ``require_audio``
        When ``True`` (default) a clip lacking that modality (file absent,
        stream absent or empty) is an error. When ``False`` the clip is yielded
        with that modality ``None`` and listed in ``clip.meta["missing"]``; the
        model handles an absent modality through its modality mask.
    ``descriptions``
        A JSON-lines file of per-clip cue descriptions (see
        :mod:`.descriptions`), which the baseline and MIGR recipes need to
        build reasoning traces. Described clips carry ``visual_text`` /
        ``audio_text`` in their ``meta``; a bad line follows ``on_error``.
    """

    name: ClassVar[str] = ""
    labels: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        root: str | Path,
        *,
        fps: float = 25.0,
        sample_rate: int = 16000,
        max_seconds: float | None = None,
        on_error: OnError = "skip",
        require_video: bool = True,
        require_audio: bool = True,
        descriptions: str | Path | None = None,
    ) -> None:
        if on_error not in ON_ERROR_CHOICES:
            raise ValueError(f"on_error must be one of {ON_ERROR_CHOICES}, got {on_error!r}")
        if not (isinstance(fps, (int, float)) and fps > 0):
            raise ValueError(f"fps must be a positive number, got {fps!r}")
        if not (isinstance(sample_rate, int) and sample_rate > 0):
            raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")
        if max_seconds is not None and not (isinstance(max_seconds, (int, float)) and max_seconds > 0):
            raise ValueError(f"max_seconds must be a positive number or None, got {max_seconds!r}")
        self.root = Path(root).expanduser()
        self.fps = float(fps)
        self.sample_rate = sample_rate
        self.max_seconds = None if max_seconds is None else float(max_seconds)
        self.on_error: OnError = on_error
        self.require_video = bool(require_video)
        self.require_audio = bool(require_audio)
        if descriptions is not None and not isinstance(descriptions, (str, os.PathLike)):
            raise ValueError(f"descriptions must be a file path or None, got {descriptions!r}")
        self.descriptions = Path(descriptions).expanduser() if descriptions is not None else None
        self._skips = SkipLog()
        if not self.root.is_dir():
            what = "is not a directory" if self.root.exists() else "does not exist"
            raise DatasetNotFoundError(self.root, f"{self.name} dataset root {what}")
        self._entries: tuple[Entry, ...] = tuple(self._index())
        if self.descriptions is not None:
            self._entries = self._describe_entries(self.descriptions, self._entries)
        if self._skips:
            logger.warning("%s: indexed %d clips; %s", self._describe(), len(self._entries), self._skips.summary())
        if not self._entries:
            logger.warning("%s: no clips indexed", self._describe())

    # ------------------------------------------------------------------ indexing

    def _candidates(self) -> Iterable[Candidate]:
        """Parse the dataset's annotations and file names into candidate entries.

        Implementations report every problem through :meth:`_reject` and must
        not touch media content; existence of the referenced files is checked
        afterwards by the base class.
        """
        raise NotImplementedError

    def _reject(self, error: DatasetError, item: str | None = None) -> None:
        """Apply the error policy to an indexing problem: raise it, or count it under ``error.kind``."""
        if self.on_error == "raise":
            raise error
        key = item or (f"{error.path}:{error.line}" if error.line is not None else error.path)
        self._skips.add(error.kind, key, str(error))
        logger.debug("%s: skipping %s: %s", self.name, key, error)

    def _skip_by_policy(self, kind: str, item: str, message: str) -> None:
        """Count a clip left out by a documented choice (not an error); never raises."""
        self._skips.add(kind, item, message)
        logger.debug("%s: skipping %s: %s", self.name, item, message)

    def _index(self) -> Iterator[Entry]:
        """Resolve duplicates, then keep the candidates whose required files exist."""
        groups: dict[str, list[Candidate]] = {}
        for cand in self._candidates():
            groups.setdefault(cand.entry.clip_id, []).append(cand)
        for clip_id, cands in groups.items():
            first = cands[0]
            if len({c.entry.label for c in cands}) > 1:
                listing = ", ".join(f"{c.entry.label} ({c.where})" for c in cands)
                for c in cands:
                    # A clip with two different labels has no trustworthy label: drop every copy.
                    self._reject(
                        DuplicateEntryError(c.origin, f"{clip_id} has conflicting labels: {listing}", line=c.line),
                        clip_id,
                    )
                continue
            for c in cands[1:]:
                self._reject(
                    DuplicateEntryError(c.origin, f"{clip_id} listed again (first at {first.where})", line=c.line),
                    f"{clip_id}@{c.where}",
                )
            entry = self._check_files(first)
            if entry is not None:
                yield entry

    def _check_files(self, cand: Candidate) -> Entry | None:
        """Drop an entry whose required file is absent; clear the path of an optional absent one."""
        entry = cand.entry
        video, audio = entry.video_path, entry.audio_path
        single_file = video is not None and video == audio
        for stream, path, required in (
            ("video", entry.video_path, self.require_video),
            ("audio", entry.audio_path, self.require_audio),
        ):
            if path is None or _is_file(path):
                continue
            if required or single_file:
                stream = "media" if single_file else stream
                named_by = "" if cand.origin == path else f" (named by {cand.where})"
                self._reject(
                    MissingMediaError(path, f"{stream} file of {entry.clip_id} does not exist{named_by}"),
                    entry.clip_id,
                )
                return None
            if stream == "video":
                video = None
            else:
                audio = None
        if video is None and audio is None:
            missing = entry.video_path or entry.audio_path or cand.origin
            self._reject(MissingMediaError(missing, f"no media file of {entry.clip_id} exists"), entry.clip_id)
            return None
        if (video, audio) == (entry.video_path, entry.audio_path):
            return entry
        return Entry(entry.clip_id, entry.label, video, audio, dict(entry.meta))

    def _describe_entries(self, path: Path, entries: tuple[Entry, ...]) -> tuple[Entry, ...]:
        """Copy each described clip's texts into its meta as ``<modality>_text`` (see :mod:`.descriptions`)."""
        keys = ClipKeys([e.clip_id for e in entries], self.name)
        wanted = set(keys.keys)
        groups: dict[str, list[Description]] = {}
        elsewhere: list[str] = []  # ids of lines for clips not indexed here (other folds), for the error message
        for line, text in iter_description_lines(path):
            try:
                found = parse_description(path, line, text)
            except DescriptionError as exc:
                self._reject(exc)
                continue
            key = keys.key(found.clip_id)
            if key in wanted:
                groups.setdefault(key, []).append(found)
            elif len(elsewhere) < 3:
                elsewhere.append(found.clip_id)
        chosen: dict[str, Description] = {}
        for key, copies in groups.items():
            if all(d.texts == copies[0].texts for d in copies):
                chosen[key] = copies[0]  # the same line repeated (e.g. per-fold files joined)
                continue
            lines = ", ".join(str(d.line) for d in copies)
            for d in copies:
                self._reject(
                    DuplicateDescriptionError(
                        path, f"{d.clip_id} has different descriptions on lines {lines}; it keeps none", line=d.line
                    ),
                    f"{path}:{d.line}",
                )
        out: list[Entry] = []
        undescribed: list[str] = []
        for entry, key in zip(entries, keys.keys):
            d = chosen.get(key)
            if d is None:
                out.append(entry)
                undescribed.append(entry.clip_id)
                continue
            texts = dict(d.texts)
            # A modality whose file the reader already knows is absent shows nothing, whatever the line says.
            for modality, absent in (("visual", entry.video_path is None), ("audio", entry.audio_path is None)):
                if absent and texts.get(modality) is None:
                    texts[modality] = ""
            meta = {**entry.meta, **{f"{m}_text": text for m, text in texts.items()}}
            out.append(Entry(entry.clip_id, entry.label, entry.video_path, entry.audio_path, meta))
        if entries and not chosen:
            listed = ", ".join(repr(c) for c in elsewhere) or "no line naming a clip"
            problems = f"; {self._skips.summary()}" if self._skips else ""
            raise DescriptionError(
                path,
                f"describes none of the {len(entries)} indexed {self.name} clips (ids like {entries[0].clip_id!r}; "
                f"the file has {listed}){problems}",
            )
        if undescribed:
            logger.warning(
                "%s: %d of %d clips have no description in %s (e.g. %s); they train their answer only",
                self._describe(), len(undescribed), len(entries), path, undescribed[0],
            )
        else:
            logger.info("%s: all %d clips described by %s", self._describe(), len(entries), path)
        return tuple(out)

    # ------------------------------------------------------------------ access

    @property
    def entries(self) -> tuple[Entry, ...]:
        """The indexed clips, in annotation order; nothing decoded."""
        return self._entries

    @property
    def skipped(self) -> dict[str, int]:
        """Reason -> number of distinct clips (or annotation rows, or descriptions-file lines) skipped so far.

        Counts cover indexing and decoding. A skipped description line never drops its clip: the clip
        trains its answer only.
        """
        return self._skips.counts

    @property
    def skip_examples(self) -> dict[str, list[str]]:
        """Reason -> a few skipped ids (clip ids, or ``file:line`` for rows without one)."""
        return self._skips.examples

    @property
    def skip_log(self) -> SkipLog:
        """The full ledger, including the error message of each example."""
        return self._skips

    @property
    def label_counts(self) -> dict[str, int]:
        """Label -> number of indexed clips, over :attr:`labels` in order (zeros included)."""
        counts = Counter(e.label for e in self._entries)
        return {label: counts.get(label, 0) for label in self.labels}

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[Clip]:
        return self.iter_clips()

    def iter_clips(self, indices: Iterable[int] | None = None) -> Iterator[Clip]:
        """Decode entries lazily (all, or ``indices`` in the given order, e.g. a shuffled epoch).

        In skip mode a clip that cannot be decoded is counted, logged once, and
        passed over; in raise mode its :class:`~migr_rt.media.MediaError` propagates.
        """
        order = range(len(self._entries)) if indices is None else indices
        new_skips = 0
        for i in order:
            entry = self._entries[i]
            try:
                clip = self.load(entry)
            except MediaError as exc:
                if self.on_error == "raise":
                    raise
                if self._skips.add(media_error_kind(exc), entry.clip_id, str(exc)):
                    new_skips += 1
                    logger.warning("%s: skipping %s: %s", self.name, entry.clip_id, exc)
                continue
            yield clip
        if new_skips:
            logger.warning(
                "%s: %d clip(s) newly skipped while decoding; %s", self._describe(), new_skips, self._skips.summary()
            )

    def load(self, item: int | Entry) -> Clip:
        """Decode one entry (by index or :class:`Entry`) into a :class:`~migr_rt.media.Clip`.

        Always raises on a bad file, whatever ``on_error`` says: a caller asking
        for one specific clip must hear why it cannot have it.
        """
        entry = self._entries[item] if isinstance(item, int) else item
        frames = audio = None
        try:
            if entry.video_path is not None and entry.video_path == entry.audio_path:
                media = self._decode(entry.video_path, video=True, audio=True)
                frames, audio = media.frames, media.audio
            else:
                if entry.video_path is not None:
                    frames = self._decode(entry.video_path, video=True, audio=False).frames
                if entry.audio_path is not None:
                    audio = self._decode(entry.audio_path, video=False, audio=True).audio
        except MediaError:
            raise  # already typed and naming the file (MediaNotFoundError is also an OSError)
        except OSError as exc:  # permission denied, I/O error: a file we cannot use, not a reader bug
            path = entry.video_path or entry.audio_path or entry.source
            raise CorruptMediaError(path, f"cannot be read ({exc.__class__.__name__}: {exc})") from exc
        if frames is not None and len(frames) == 0:
            frames = None
        if audio is not None and audio.size == 0:
            audio = None
        if frames is None and audio is None:
            raise MissingStreamError(entry.source, "audio or video")
        missing = [m for m, data in (("video", frames), ("audio", audio)) if data is None]
        meta = {"dataset": self.name, **entry.meta, "missing": missing}
        return Clip(
            clip_id=entry.clip_id,
            frames=frames,
            audio=audio,
            fps=self.fps,
            sample_rate=self.sample_rate,
            label=entry.label,
            source=entry.source,
            meta=meta,
        )

    def _decode(self, path: Path, *, video: bool, audio: bool) -> DecodedMedia:
        return decode_media(
            path,
            fps=self.fps,
            sample_rate=self.sample_rate,
            video=video,
            audio=audio,
            require_video=video and self.require_video,
            require_audio=audio and self.require_audio,
            max_seconds=self.max_seconds,
        )

    # ------------------------------------------------------------------ display

    def _options_repr(self) -> str:
        """Dataset-specific options for ``repr`` and log lines (e.g. ``fold=1, split='train'``)."""
        return ""

    def _describe(self) -> str:
        opts = self._options_repr()
        return f"{self.name}({self.root}{', ' + opts if opts else ''})"

    def __repr__(self) -> str:
        opts = self._options_repr()
        return (
            f"{type(self).__name__}(root={str(self.root)!r}{', ' + opts if opts else ''}, "
            f"clips={len(self._entries)}, skipped={self._skips.total})"
        )


def _is_file(path: Path) -> bool:
    """``path.is_file()``, False for a name no file system holds (too long) instead of an OSError."""
    try:
        return path.is_file()
    except OSError:
        return False


def media_error_kind(exc: MediaError) -> str:
    """Skip reason of a decoding failure, named like the indexing reasons."""
    if isinstance(exc, MediaNotFoundError):
        return "missing_file"
    if isinstance(exc, MissingStreamError):
        return f"no_{exc.stream}_stream" if exc.stream in ("audio", "video") else "no_stream"
    return "corrupt_media"


def parse_fold(fold: Any, dataset: str) -> int:
    """Validate a 1..5 fold number (DFEW and MAFW both ship five folds)."""
    if isinstance(fold, bool) or not isinstance(fold, int) or not 1 <= fold <= 5:
        raise ValueError(f"{dataset}: fold must be an integer 1..5, got {fold!r}")
    return fold


def parse_split(split: Any, dataset: str) -> str:
    """Validate a "train"/"test" split name."""
    if split not in ("train", "test"):
        raise ValueError(f"{dataset}: split must be 'train' or 'test', got {split!r}")
    return split


class FoldSplitReader(DatasetReader):
    """A dataset distributed as K folds of train/test annotation files beside one clip folder (DFEW, MAFW).

    Subclasses name their :attr:`annotation_path` and :attr:`clip_dir`;
    :meth:`_require_layout` checks both before any row is parsed.
    """

    def __init__(self, root: str | Path, *, fold: int = 1, split: str = "train", **options: Any) -> None:
        self.fold = parse_fold(fold, self.name)
        self.split = parse_split(split, self.name)
        super().__init__(root, **options)

    @property
    def annotation_path(self) -> Path:
        raise NotImplementedError

    @property
    def clip_dir(self) -> Path:
        raise NotImplementedError

    def _options_repr(self) -> str:
        return f"fold={self.fold}, split={self.split!r}"

    def _require_layout(self) -> None:
        dataset = self.name.upper()
        if not self.annotation_path.is_file():
            raise DatasetNotFoundError(
                self.annotation_path, f"{dataset} annotation file for fold {self.fold} {self.split} does not exist"
            )
        if not self.clip_dir.is_dir():
            rel = self.clip_dir.relative_to(self.root).as_posix()
            raise DatasetNotFoundError(self.clip_dir, f"{dataset} video folder {rel} does not exist")
