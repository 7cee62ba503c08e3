"""Checkpoint folders that are safe to load: safetensors only, every file's SHA-256 recorded and checked.

A checkpoint is a folder with ``config.json``, ``model.safetensors``, the
tokenizer files and ``checksums.json``. Loading refuses any pickle-format
file in the folder (even one the loader would not read: its presence means
the folder is not what we wrote) and any file whose hash differs from the
record. Saving goes to a temporary sibling folder that is swapped into
place, so an interrupted save never leaves a half-written checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from migr_rt.artifact import MANIFEST
from migr_rt.atomic import check_replaceable, staged_folder, write_text_atomic

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from migr_rt.model.modeling import MigrForEmotionReasoning

logger = logging.getLogger(__name__)

CHECKSUM_FILE = "checksums.json"
#: What :func:`save_checkpoint` writes, as its refusals name it.
CHECKPOINT = "migr-rt checkpoint"
CHECKSUM_FORMAT = 1
#: Suffixes of pickle-based weight or object files, refused on load.
PICKLE_SUFFIXES = frozenset({".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".npy", ".npz"})


class CheckpointError(Exception):
    """A checkpoint folder that must not be loaded; the message names the file and the problem."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_checksums(folder: Path) -> Path:
    """Record the SHA-256 of every file in ``folder`` (recursively) in ``checksums.json``."""
    folder = Path(folder)
    files = {
        p.relative_to(folder).as_posix(): sha256_file(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != CHECKSUM_FILE
    }
    record = json.dumps({"format": CHECKSUM_FORMAT, "sha256": files}, indent=2, sort_keys=True) + "\n"
    return write_text_atomic(folder / CHECKSUM_FILE, record)


def read_checksums(folder: Path) -> dict[str, str]:
    """``checksums.json`` of a checkpoint folder: relative path -> SHA-256 (:class:`CheckpointError` if unusable)."""
    record_path = folder / CHECKSUM_FILE
    if not record_path.is_file():
        raise CheckpointError(f"{record_path}: missing; {folder} is not a migr-rt checkpoint or cannot be verified")
    try:
        record = json.loads(record_path.read_text())
        files = record["sha256"]
        if record.get("format") != CHECKSUM_FORMAT or not isinstance(files, dict):
            raise ValueError(f"unsupported format {record.get('format')!r}")
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{record_path}: unreadable checksum record ({exc})") from exc
    return files


def verify_checkpoint(folder: str | Path) -> Path:
    """Check a checkpoint folder before anything in it is deserialised; return it.

    Raises :class:`CheckpointError` for: a path that is not a local folder, a
    missing or unreadable ``checksums.json``, pickle-format files, files the
    record does not list (a loader might read them: an extra
    ``special_tokens_map.json`` silently changes the tokenizer), recorded
    files that are missing, and files whose SHA-256 differs.
    """
    folder = Path(folder)
    if not folder.is_dir():
        what = "is a file" if folder.exists() else "does not exist"
        raise CheckpointError(
            f"{folder}: {what}, not a local checkpoint folder (migr-rt never downloads weights; "
            "pass a folder written by save_checkpoint or `migr-rt train`)"
        )
    record_path = folder / CHECKSUM_FILE
    if not record_path.is_file() and (folder / MANIFEST).is_file():
        raise CheckpointError(f"{folder}: is an exported artifact (manifest.json), not a checkpoint; pass the "
                              "checkpoint folder it was exported from")
    files = read_checksums(folder)
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} - {CHECKSUM_FILE}
    pickled = sorted(p for p in present if Path(p).suffix.lower() in PICKLE_SUFFIXES)
    if pickled:
        raise CheckpointError(
            f"{folder}: refusing to load a checkpoint that contains pickle-format files {pickled}; "
            "migr-rt loads safetensors only"
        )
    unrecorded = sorted(present - set(files))
    if unrecorded:
        raise CheckpointError(f"{folder}: files not recorded in {CHECKSUM_FILE}: {unrecorded}; refusing to load")
    root = folder.resolve()
    for rel, expected in files.items():
        path = (folder / rel).resolve()
        if root not in path.parents:
            raise CheckpointError(f"{record_path}: entry {rel!r} points outside the checkpoint folder")
        if not path.is_file():
            raise CheckpointError(f"{folder / rel}: recorded in {CHECKSUM_FILE} but missing")
        actual = sha256_file(path)
        if actual != expected:
            raise CheckpointError(
                f"{folder / rel}: SHA-256 mismatch (recorded {expected[:12]}..., found {actual[:12]}...); "
                "the file was modified or corrupted after saving"
            )
    if "config.json" not in files:
        raise CheckpointError(f"{folder}: no config.json recorded; not a migr-rt checkpoint")
    return folder


def check_checkpoint_out(out_dir: str | Path, *, keep: Mapping[str, str | Path | None] | None = None) -> None:
    """Refuse now an ``out_dir`` that :func:`save_checkpoint` would refuse after hours of training.

    ``keep`` names folders the run writes before it saves (``--cache-dir``,
    ``--work-dir``): one inside ``out_dir`` would make it a folder of other
    files that the final save refuses to replace, or be wiped by it.
    """
    check_replaceable(out_dir, CHECKSUM_FILE, CHECKPOINT)
    out = Path(out_dir).resolve()
    for option, folder in (keep or {}).items():
        if folder is None:
            continue
        inside = Path(folder).resolve()
        if inside == out or out in inside.parents:
            raise ValueError(f"{option} {folder} is inside the checkpoint folder {out_dir}, which the final save "
                             f"replaces whole; choose a {option} outside it")


def save_checkpoint(
    model: MigrForEmotionReasoning,
    tokenizer: PreTrainedTokenizerBase,
    out_dir: str | Path,
    extra_files: dict[str, str | bytes] | None = None,
) -> Path:
    """Write model, tokenizer and ``extra_files`` (e.g. a model card) atomically to ``out_dir``.

    The folder is assembled next to ``out_dir`` and renamed into place; an
    existing checkpoint there is replaced only once the new one is complete.
    """
    out_dir = Path(out_dir)
    with staged_folder(out_dir, marker=CHECKSUM_FILE, what=CHECKPOINT) as staging:
        tokenizer.save_pretrained(staging)
        for name, content in (extra_files or {}).items():
            target = staging / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content if isinstance(content, bytes) else content.encode())
        model.save_pretrained(staging)  # writes checksums.json over everything above
    return out_dir


def load_checkpoint(
    folder: str | Path, device: str = "cpu", dtype=None
) -> tuple[MigrForEmotionReasoning, PreTrainedTokenizerBase]:
    """Verify and load a checkpoint folder: ``(model in eval mode, tokenizer)``.

    ``from_pretrained`` verifies every file (tokenizer included) before reading any.
    """
    from transformers import PreTrainedTokenizerFast
    from transformers.utils import logging as hf_logging

    from migr_rt.model.modeling import MigrForEmotionReasoning

    kwargs = {"dtype": dtype} if dtype is not None else {}
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a few-MB load needs no progress bar on stderr
    try:
        model = MigrForEmotionReasoning.from_pretrained(folder, **kwargs).to(device).eval()
    except CheckpointError:
        raise
    except ValueError as exc:  # a verified folder whose config the model refuses (written by hand, or by a bug)
        where = Path(folder) / "config.json" if str(exc).startswith("MigrConfig") else Path(folder)
        raise CheckpointError(f"{where}: {exc}") from exc
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(folder), local_files_only=True)
    return model, tokenizer
