"""Typed dataset errors: each names the file (and annotation line) and says what is wrong.

Readers validate annotations while indexing. With ``on_error="raise"`` the first
problem raises one of these; with ``on_error="skip"`` it becomes a counted skip
under the error's :attr:`DatasetError.kind`, so the same taxonomy serves both
policies. Problems found while decoding media reuse the media errors of
:mod:`migr_rt.media` (:class:`~migr_rt.media.MediaError` and subclasses), which
already name the file.
"""

from __future__ import annotations

from pathlib import Path


class DatasetError(Exception):
    """A problem with a dataset's files or annotations.

    ``path`` is the file concerned (the annotation file for a bad row, the media
    file for a bad file name), ``line`` the 1-based annotation line or ``None``,
    ``reason`` the human explanation and ``kind`` the short key under which the
    problem is counted when it is skipped.
    """

    kind: str = "dataset_error"

    def __init__(self, path: str | Path, reason: str, *, line: int | None = None, kind: str | None = None) -> None:
        self.path = str(path)
        self.line = line
        self.reason = reason
        if kind is not None:
            self.kind = kind
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {reason}")


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """The dataset root or a required annotation file is absent.

    Never skippable: without it there is nothing to index, and an empty dataset
    would only fail later and less clearly.
    """

    kind = "dataset_not_found"


class AnnotationError(DatasetError):
    """A malformed annotation: a bad CSV row or text line, or an inconsistent record."""

    kind = "malformed_annotation"


class MalformedNameError(AnnotationError):
    """A media file whose name does not follow the dataset's naming scheme.

    RAVDESS and CREMA-D encode their labels in file names, so a bad name is a
    bad annotation.
    """

    kind = "malformed_name"


class UnknownLabelError(AnnotationError):
    """A label code or name that is not part of the dataset's documented label set."""

    kind = "unknown_label"


class DuplicateEntryError(AnnotationError):
    """The same clip appears more than once in the annotations."""

    kind = "duplicate_entry"


class MissingMediaError(DatasetError, FileNotFoundError):
    """A media file that the annotations name (or that a paired file implies) is absent."""

    kind = "missing_file"
