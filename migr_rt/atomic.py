"""Atomic file writes: a reader never sees a half-written file under the final name.

Checkpoints, manifests, caches, media and benchmark results all go through
here: the content is written to a temporary sibling (same folder, so the
rename cannot cross file systems; same suffix, so writers that pick a format
from the extension still work) and renamed into place. Nothing is renamed
into place after a Ctrl-C, even one the work before swallowed
(:mod:`migr_rt.interrupt`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from migr_rt.interrupt import raise_if_interrupted


@contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}{path.suffix}")
    try:
        yield tmp
        raise_if_interrupted()
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(path: str | Path, text: str) -> Path:
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def check_replaceable(out_dir: str | Path, marker: str, what: str) -> None:
    """Refuse an ``out_dir`` whose replacement would delete something this kind of writer did not write.

    A folder is replaced whole, so ``--out runs`` or ``--out .`` would wipe a
    user's work. An existing folder may be replaced when it is empty or holds
    ``marker`` (the file every ``what`` has: a checkpoint's checksums, an
    artifact's manifest), never when it is the current folder or holds it.
    Called before long work starts and again just before the swap.
    """
    out = Path(out_dir)
    _check_writable_parent(out, what)
    if not out.exists() and not out.is_symlink():
        return
    if not out.is_dir():
        raise FileExistsError(f"{out}: exists and is not a folder; choose a folder to write the {what} to")
    here, target = Path.cwd().resolve(), out.resolve()
    if target == here or target in here.parents:
        raise FileExistsError(f"{out}: is the current folder or one above it, which a {what} would replace "
                              "whole; choose a new folder")
    if (out / marker).is_file() or not any(out.iterdir()):
        return
    raise FileExistsError(f"{out}: holds files but is not a {what} (no {marker}), and it would be replaced whole; "
                          "choose a new or empty folder, or delete it first")


def check_can_create(path: str | Path) -> None:
    """Refuse a ``path`` that cannot be made: its nearest existing ancestor must be a folder that takes new entries.

    Found by making (and removing) a folder there, so nothing is left behind and nothing is created. Raises
    NotADirectoryError (a file, or a link to nothing, on the way) or PermissionError (the folder takes no new
    entries), naming the blocking ancestor; callers add what they were writing.
    """
    ancestor = Path(path).absolute().parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        if ancestor.is_symlink():
            raise NotADirectoryError(f"{ancestor} is a link to nothing ({os.readlink(ancestor)})")
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise NotADirectoryError(f"{ancestor} is a file, not a folder")
    try:
        tempfile.TemporaryDirectory(dir=ancestor, prefix=".migr-rt-probe-").cleanup()
    except OSError as exc:
        raise PermissionError(f"{ancestor} does not take new folders ({exc.strerror or exc})") from exc


def _check_writable_parent(out: Path, what: str) -> None:
    """Refuse now an ``out`` whose folder cannot be made or written (its staging sibling goes there), said in
    terms of ``out`` rather than as a raw errno on a staging path at the end of the work."""
    try:
        check_can_create(out)
    except NotADirectoryError as exc:
        raise NotADirectoryError(f"{out}: cannot be created: {exc}") from exc
    except PermissionError as exc:
        raise PermissionError(f"{out}: the {what} cannot be written there: {exc}") from exc


def publish_folder(staging: str | Path, out_dir: str | Path, *, marker: str, what: str) -> Path:
    """Make a fully written ``staging`` folder readable and swap it in as ``out_dir``.

    An existing ``out_dir`` is replaced only once the new one is in place (and
    restored if that fails), so readers see the old folder or the new one; it
    must be empty or an earlier ``what`` (:func:`check_replaceable`).
    """
    staging, out_dir = Path(staging), Path(out_dir)
    check_replaceable(out_dir, marker, what)
    os.chmod(staging, 0o755)  # mkdtemp makes 0700 folders; other users of a shared install must read it
    for path in staging.rglob("*"):
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    if not out_dir.exists():
        os.replace(staging, out_dir)
        return out_dir
    retired = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
    os.replace(out_dir, retired)
    try:
        os.replace(staging, out_dir)
    except BaseException:
        os.replace(retired, out_dir)
        raise
    shutil.rmtree(retired, ignore_errors=True)
    return out_dir


@contextmanager
def staged_folder(out_dir: str | Path, *, marker: str, what: str) -> Iterator[Path]:
    """Yield an empty staging folder beside ``out_dir``; published as ``out_dir`` on success, removed on error.

    Checkpoints and exported artifacts are assembled this way, so a reader
    never sees one half-written and an interrupted write leaves only a
    dot-prefixed temporary that is deleted on the way out. ``marker`` and
    ``what`` say which existing ``out_dir`` may be replaced
    (:func:`check_replaceable`, checked before anything is staged).
    """
    out_dir = Path(out_dir)
    check_replaceable(out_dir, marker, what)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.staging-", dir=out_dir.parent))
    try:
        yield staging
        raise_if_interrupted()
        publish_folder(staging, out_dir, marker=marker, what=what)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
