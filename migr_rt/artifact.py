"""Exported artifact folders: the manifest that describes them and the checks run before any inference.

An artifact folder (written by ``migr-rt export``) holds the graphs of one
format (``onnx``: ``*.onnx``; ``tensorrt``: ``*.engine``), the tokenizer and
``manifest.json``. The manifest says everything the runtime needs: the model
config (labels, modalities, token layout, preprocessing parameters), each
graph's file, SHA-256, inputs and outputs with dtypes and axes, the opset,
precision, the source checkpoint's hash and the tool versions that wrote it.

:func:`read_artifact` refuses, naming the file: a missing or unreadable
manifest, a newer format version, a graph path that leaves the folder, a
missing or altered (e.g. truncated) graph file, and a graph set that does not
match the format, and a manifest edited after export (its own digest,
:data:`DIGEST_KEY`). Backends then compare each graph's real inputs/outputs with
the manifest (:func:`check_io`) and the graphs' fixed sizes with the manifest's
model config (:func:`check_shapes`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
#: What an export writes, as its refusals name it.
ARTIFACT = "migr-rt artifact"
#: Bumped on any change a reader of the previous version would misread.
FORMAT_VERSION = 1
#: The manifest's digest of itself: SHA-256 of its canonical JSON without this key. A hand-edited manifest
#: (labels reordered, num_frames or precision changed) passes every graph check and silently misreports;
#: this catches it. Exports before it have none and are read as before.
DIGEST_KEY = "content_sha256"
FORMATS = ("onnx", "tensorrt")
PRECISIONS = ("fp32", "fp16", "int8")
#: Graph names every artifact carries (see ``migr_rt.model.graphs``).
GRAPH_NAMES = ("visual_frames", "visual_pool", "audio", "scoring", "prefill", "step")


class ArtifactError(Exception):
    """An artifact folder that must not be used; the message names the file and what is wrong."""


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  #: numpy dtype name, e.g. "float32", "int64", "bool"
    shape: list[int | str]  #: ints are fixed sizes, strings name dynamic axes


@dataclass(frozen=True)
class GraphSpec:
    file: str
    sha256: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]


@dataclass(frozen=True)
class Manifest:
    format: str
    precision: str
    graphs: dict[str, GraphSpec]
    model_config: dict[str, Any]  #: ``MigrConfig.to_dict()`` of the source checkpoint
    source_checkpoint: dict[str, str]  #: path and sha256 of its weights
    tools: dict[str, str]
    opset: int | None = None
    tokenizer_files: list[str] = field(default_factory=list)
    parity: dict[str, float] = field(default_factory=dict)  #: graph -> max |backend - torch| measured at export
    extra: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    @property
    def labels(self) -> list[str]:
        return list(self.model_config["labels"])

    @property
    def modalities(self) -> list[str]:
        return list(self.model_config["modalities"])

    def to_json(self) -> str:
        return json.dumps(seal(asdict(self)), indent=2, sort_keys=True) + "\n"


def manifest_digest(raw: dict[str, Any]) -> str:
    """SHA-256 of a manifest's canonical JSON (sorted keys, no whitespace), its own digest left out."""
    # as the file reads back: JSON turns int keys (id2label) into strings, which sort differently
    body = {k: v for k, v in json.loads(json.dumps(raw)).items() if k != DIGEST_KEY}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def seal(raw: dict[str, Any]) -> dict[str, Any]:
    """``raw`` with its digest (:data:`DIGEST_KEY`) set, as an export writes it."""
    return {**raw, DIGEST_KEY: manifest_digest(raw)}


def sha256_of(path: Path) -> str:
    """SHA-256 of a file, as checkpoints record it (:func:`migr_rt.model.checkpoint.sha256_file`)."""
    from migr_rt.model.checkpoint import sha256_file

    return sha256_file(path)


def inside(folder: Path, relative: str, what: str) -> Path:
    """``folder / relative``, refusing absolute paths and paths that leave ``folder`` (``..``, symlinks)."""
    if not isinstance(relative, str) or not relative or "\x00" in relative or Path(relative).is_absolute():
        raise ArtifactError(f"{folder / MANIFEST}: {what} path {relative!r} must be relative to the artifact folder")
    path = (folder / relative).resolve()
    if not path.is_relative_to(folder.resolve()):
        raise ArtifactError(f"{folder / MANIFEST}: {what} path {relative!r} leaves the artifact folder")
    return path


def _tensor_specs(items: Any, where: str) -> list[TensorSpec]:
    if not isinstance(items, list):
        raise ArtifactError(f"{where}: expected a list of tensors")
    specs = []
    for item in items:
        if not isinstance(item, dict) or not {"name", "dtype", "shape"} <= item.keys():
            raise ArtifactError(f"{where}: each tensor needs name, dtype and shape, got {item!r}")
        shape = item["shape"]
        if not isinstance(shape, list) or not all(isinstance(d, (int, str)) and not isinstance(d, bool) for d in shape):
            raise ArtifactError(f"{where}: the shape of {item['name']!r} must be a list of sizes and axis names, "
                                f"got {shape!r}")
        specs.append(TensorSpec(str(item["name"]), str(item["dtype"]), list(item["shape"])))
    return specs


def read_manifest(folder: str | Path) -> Manifest:
    """Parse and validate ``folder/manifest.json`` (structure and version only; files are checked by :func:`read_artifact`)."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not folder.is_dir():
        raise ArtifactError(f"{folder}: not an artifact folder (no such directory)")
    if not path.is_file():
        raise ArtifactError(f"{path}: missing; export one with `migr-rt export --checkpoint DIR --out {folder}`")
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ArtifactError(f"{path}: not a readable JSON manifest ({exc})") from exc
    if not isinstance(raw, dict):
        raise ArtifactError(f"{path}: the manifest must be a JSON object")
    version = raw.get("format_version")
    if not isinstance(version, int):
        raise ArtifactError(f"{path}: format_version missing or not an integer")
    if version > FORMAT_VERSION:
        raise ArtifactError(
            f"{path}: format version {version} is newer than this migr-rt reads ({FORMAT_VERSION}); "
            "upgrade migr-rt or re-export with this version"
        )
    if DIGEST_KEY in raw and raw[DIGEST_KEY] != manifest_digest(raw):
        raise ArtifactError(f"{path}: edited after export (its content no longer matches its {DIGEST_KEY}); "
                            "export the checkpoint again rather than editing the manifest")
    for key in ("format", "precision", "graphs", "model_config", "source_checkpoint", "tools"):
        if key not in raw:
            raise ArtifactError(f"{path}: missing field {key!r}")
    if raw["format"] not in FORMATS:
        raise ArtifactError(f"{path}: format {raw['format']!r} is not one of {FORMATS}")
    if raw["precision"] not in PRECISIONS:
        raise ArtifactError(f"{path}: precision {raw['precision']!r} is not one of {PRECISIONS}")
    if not isinstance(raw["graphs"], dict):
        raise ArtifactError(f"{path}: graphs must be an object of name -> graph")
    # What the backends read next must have the type they expect, or be refused here, naming the field.
    for key in ("model_config", "source_checkpoint", "tools", "parity", "extra"):
        if key in raw and not isinstance(raw[key], dict):
            raise ArtifactError(f"{path}: {key} must be a JSON object, got {type(raw[key]).__name__}")
    for key in ("labels", "modalities"):
        names = raw["model_config"].get(key)
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ArtifactError(f"{path}: model_config.{key} must be a list of names, got {names!r}")
    files = raw.get("tokenizer_files", [])
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        raise ArtifactError(f"{path}: tokenizer_files must be a list of paths, got {files!r}")
    opset = raw.get("opset")
    if opset is not None and (not isinstance(opset, int) or isinstance(opset, bool)):
        raise ArtifactError(f"{path}: opset must be an integer or null, got {opset!r}")
    missing = [g for g in GRAPH_NAMES if g not in raw["graphs"]]
    if missing:
        raise ArtifactError(f"{path}: graphs {missing} are missing (an artifact has {list(GRAPH_NAMES)})")
    graphs = {}
    for name, g in raw["graphs"].items():
        where = f"{path}: graph {name!r}"
        if not isinstance(g, dict) or not {"file", "sha256", "inputs", "outputs"} <= g.keys():
            raise ArtifactError(f"{where} needs file, sha256, inputs and outputs")
        graphs[name] = GraphSpec(str(g["file"]), str(g["sha256"]), _tensor_specs(g["inputs"], f"{where} inputs"),
                                 _tensor_specs(g["outputs"], f"{where} outputs"))
    known = {f for f in Manifest.__dataclass_fields__}
    return Manifest(**{k: v for k, v in raw.items() if k in known and k != "graphs"}, graphs=graphs)


def read_artifact(folder: str | Path, *, verify_hashes: bool = True) -> Manifest:
    """The manifest of ``folder`` after checking every file it names is inside, present and unaltered."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    for name, graph in manifest.graphs.items():
        path = inside(folder, graph.file, f"graph {name!r}")
        if not path.is_file():
            raise ArtifactError(f"{path}: graph {name!r} named by {folder / MANIFEST} is missing")
        if verify_hashes and sha256_of(path) != graph.sha256:
            raise ArtifactError(
                f"{path}: does not match the SHA-256 in {folder / MANIFEST} (truncated, altered or from another export)"
            )
    for rel in manifest.tokenizer_files:
        if not inside(folder, rel, "tokenizer file").is_file():
            raise ArtifactError(f"{folder / rel}: tokenizer file named by {folder / MANIFEST} is missing")
    return manifest


def check_io(path: Path, spec: GraphSpec, inputs: list[str], outputs: list[str]) -> None:
    """Refuse a graph whose real input/output names differ from what the manifest promises."""
    if inputs != spec.input_names or outputs != spec.output_names:
        raise ArtifactError(
            f"{path}: the graph has inputs {inputs} and outputs {outputs}, but the manifest says "
            f"{spec.input_names} and {spec.output_names}"
        )


def _static(dim: Any) -> int | None:
    """A dimension's fixed size, or None for a dynamic one (onnxruntime: a name or None; TensorRT: -1)."""
    return dim if isinstance(dim, int) and not isinstance(dim, bool) and dim > 0 else None


def check_shapes(path: Path, name: str, spec: GraphSpec, actual: dict[str, list[Any]],
                 expected: dict[str, list[tuple[str, int] | None]]) -> None:
    """Refuse a graph whose fixed dimensions disagree with the manifest.

    A sealed manifest can still be wrong (edited, then sealed again): names match, every hash matches, and the
    first window would fail deep inside the inference library with a shape error that names no field. ``actual``
    is the graph's own tensor shapes (tensor name -> dims), ``expected`` the sizes the manifest's model config
    sets (``migr_rt.model.graphs.graph_dims(config)[name]``); the manifest's own tensor shapes are compared too.
    """
    manifest = path.parent / MANIFEST
    for tensor, dims in expected.items():
        shape = actual.get(tensor)
        if shape is None:
            continue
        if len(shape) != len(dims):
            raise ArtifactError(f"{path}: tensor {tensor!r} of graph {name!r} has {len(shape)} dimensions {shape}, "
                                f"but the model config in {manifest} makes it {len(dims)}; export the checkpoint again")
        for axis, (dim, want) in enumerate(zip(shape, dims)):
            if want is not None and _static(dim) is not None and dim != want[1]:
                raise ArtifactError(
                    f"{path}: tensor {tensor!r} of graph {name!r} has size {dim} at dimension {axis} (shape {shape}), "
                    f"but {manifest} gives model_config {want[0]} = {want[1]}: the manifest does not describe "
                    "these graphs (edited after export?); export the checkpoint again")
    for t in spec.inputs + spec.outputs:
        shape = actual.get(t.name)
        if shape is None:
            continue
        fixed = [(a, b) for a, b in zip(shape, t.shape) if _static(a) is not None and _static(b) is not None]
        if len(shape) != len(t.shape) or any(a != b for a, b in fixed):
            raise ArtifactError(f"{path}: tensor {t.name!r} of graph {name!r} has shape {shape}, but {manifest} says "
                                f"{t.shape}; export the checkpoint again")


def is_artifact(folder: str | Path) -> bool:
    return (Path(folder) / MANIFEST).is_file()
