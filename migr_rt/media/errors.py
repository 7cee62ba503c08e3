"""Typed media errors: every one names the file and says what is wrong with it."""

from __future__ import annotations

from pathlib import Path


class MediaError(Exception):
    """A media file that cannot be used; ``path`` names it, ``reason`` says why."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class MediaNotFoundError(MediaError, FileNotFoundError):
    """The file does not exist."""


class CorruptMediaError(MediaError):
    """The file exists but cannot be demuxed or decoded (empty, truncated, not media)."""


class MissingStreamError(MediaError):
    """The file decodes but lacks a stream the caller needs (``stream`` is "video" or "audio")."""

    def __init__(self, path: str | Path, stream: str) -> None:
        self.stream = stream
        super().__init__(path, f"has no {stream} stream")
