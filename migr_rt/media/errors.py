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

    def __init__(self, path: str | Path, stream: str, *, cover_art: bool = False) -> None:
        self.stream = stream
        reason = f"has no {stream} stream"
        if cover_art:
            reason += " (its only video is cover art, one still picture, which is not read as video)"
        super().__init__(path, reason)
