"""Open a real dataset from one string, as the CLI and training configs name it.

A spec is ``"<dataset>:<root>"`` with optional query options, e.g.
``"dfew:/data/DFEW?fold=2&split=test"`` or ``"ravdess:~/RAVDESS?calm_as=neutral&actors=1,2,3"``;
``descriptions=FILE`` attaches per-clip cue descriptions (:mod:`.descriptions`) to any dataset.
A bare path (no dataset prefix) is identified from its folder layout.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from migr_rt.training.data.cremad import CREMADReader
from migr_rt.training.data.dfew import DFEWReader
from migr_rt.training.data.errors import DatasetNotFoundError
from migr_rt.training.data.mafw import MAFWReader
from migr_rt.training.data.ravdess import RAVDESSReader
from migr_rt.training.data.reader import DatasetReader

#: Canonical dataset name -> reader class.
READERS: dict[str, type[DatasetReader]] = {
    "dfew": DFEWReader,
    "mafw": MAFWReader,
    "ravdess": RAVDESSReader,
    "cremad": CREMADReader,
}

#: Other spellings users write -> canonical name.
ALIASES: dict[str, str] = {"crema-d": "cremad", "crema_d": "cremad"}


def known_datasets() -> str:
    """The accepted names, for error messages."""
    aliases = {canon: [a for a, c in ALIASES.items() if c == canon] for canon in READERS}
    return ", ".join(f"{n} ({', '.join(aliases[n])})" if aliases[n] else n for n in sorted(READERS))


def canonical_name(name: str) -> str:
    """``"CREMA-D"`` -> ``"cremad"``; raises ``ValueError`` listing the known datasets otherwise."""
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in READERS:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {known_datasets()}")
    return key


def labels_for(name: str) -> tuple[str, ...]:
    """The label tuple the named dataset's reader yields (DFEW's seven, or MAFW's eleven)."""
    return READERS[canonical_name(name)].labels


def _bool(text: str) -> bool:
    low = text.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected a boolean (true/false/1/0), got {text!r}")


def _optional(convert: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        return None if text.strip().lower() in ("", "none", "null") else convert(text)

    return parse


def _int_list(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(",") if part.strip())


def _str_list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


#: How query values are typed; options not listed here stay strings.
_CONVERTERS: dict[str, Callable[[str], Any]] = {
    "fold": int,
    "fps": float,
    "sample_rate": int,
    "max_seconds": _optional(float),
    "require_audio": _bool,
    "require_video": _bool,
    "calm_as": _optional(str),
    "actors": _optional(_int_list),
    "vocal_channels": _str_list,
    "descriptions": _optional(str),
}


def reader_options(cls: type[DatasetReader]) -> list[str]:
    """Keyword options a reader class accepts (its own and the shared ones)."""
    names: list[str] = []
    for klass in (cls, DatasetReader):
        for p in inspect.signature(klass.__init__).parameters.values():
            if p.kind is p.KEYWORD_ONLY and p.name not in names:
                names.append(p.name)
    return names


class UnknownLayoutError(ValueError):
    """A bare folder that matches no dataset's layout."""


def detect_dataset(root: str | Path) -> str:
    """Tell which dataset a folder holds from its layout (annotation folders, file-name folders)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetNotFoundError(root, "dataset root does not exist or is not a directory")
    actor = re.compile(r"^Actor_\d{2}$")
    children = [c for c in root.iterdir() if c.is_dir()]
    found = []
    if (root / "EmoLabel_DataSplit").is_dir():
        found.append("dfew")
    if (root / "Train & Test Set").is_dir() or (root / "data" / "clips").is_dir():
        found.append("mafw")
    if (root / "VideoFlash").is_dir() or (root / "AudioWAV").is_dir():
        found.append("cremad")
    if any(actor.match(c.name) for c in children):
        found.append("ravdess")
    elif not found and any(actor.match(g.name) for c in children for g in c.iterdir() if g.is_dir()):
        # Per-zip folders (Audio_Speech_Actors_01-24/Actor_01); only scanned when nothing
        # cheaper matched, since the other datasets' folders hold thousands of files.
        found.append("ravdess")
    if len(found) != 1:
        what = "matches several layouts (" + ", ".join(found) + ")" if found else "matches no known dataset layout"
        raise (ValueError if found else UnknownLayoutError)(
            f"{root}: {what}; name the dataset explicitly as '<name>:<path>' (known: {known_datasets()})")
    return found[0]


#: ``name:path`` (a one-letter name is a Windows drive, not a dataset)
_NAMED = re.compile(r"^([A-Za-z][A-Za-z0-9_-]+):(.*)$")


def bare_root(spec: str | Path) -> Path | None:
    """The folder of a spec that names no dataset (a Path, or ``folder?query``); None for ``name:path``."""
    if isinstance(spec, Path):
        return spec.expanduser()
    body = str(spec).strip().partition("?")[0]
    return None if _NAMED.match(body) else Path(body).expanduser()


def parse_spec(spec: str | Path) -> tuple[str, Path, dict[str, Any]]:
    """Split ``"name:path?key=value&..."`` into (canonical name, root, typed options).

    A :class:`~pathlib.Path`, or a string without a dataset prefix, is a bare
    root whose dataset is detected from its layout. A one-letter prefix is a
    Windows drive, not a dataset name.
    """
    if isinstance(spec, Path):
        return detect_dataset(spec), spec.expanduser(), {}
    text = str(spec).strip()
    if not text:
        raise ValueError("empty dataset spec; expected '<name>:<path>', e.g. 'dfew:/data/DFEW'")
    body, _, query = text.partition("?")
    m = _NAMED.match(body)
    if m is None:
        root = Path(body).expanduser()
        name = detect_dataset(root)
    else:
        name = canonical_name(m.group(1))
        if not m.group(2).strip():
            raise ValueError(f"dataset spec {spec!r} names no root folder; expected '{m.group(1)}:<path>'")
        root = Path(m.group(2).strip()).expanduser()
    allowed = reader_options(READERS[name])
    options: dict[str, Any] = {}
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError as exc:
        raise ValueError(f"dataset spec {spec!r}: malformed query {query!r} ({exc})") from exc
    for key, value in pairs:
        if key not in allowed:
            raise ValueError(f"dataset spec {spec!r}: unknown option {key!r} for {name}; options: {', '.join(allowed)}")
        if key in options:
            raise ValueError(f"dataset spec {spec!r}: option {key!r} given twice")
        try:
            options[key] = _CONVERTERS.get(key, str)(value)
        except ValueError as exc:
            raise ValueError(f"dataset spec {spec!r}: bad value for {key!r}: {exc}") from exc
    return name, root, options


def open_dataset(spec: str | Path, **options: Any) -> DatasetReader:
    """Build the reader a spec names; keyword ``options`` add to the spec's query options.

    An option given both in the query and as a keyword with different values is
    an error rather than a silent override, so a config and a command line
    cannot disagree unnoticed.
    """
    name, root, query_options = parse_spec(spec)
    for key, value in options.items():
        if key in query_options and query_options[key] != value:
            raise ValueError(
                f"dataset spec {spec!r}: option {key!r} is {query_options[key]!r} in the spec but {value!r} as a keyword"
            )
    cls = READERS[name]
    allowed = reader_options(cls)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise TypeError(f"{name} reader got unknown option(s) {unknown}; options: {', '.join(allowed)}")
    return cls(root, **{**query_options, **options})
