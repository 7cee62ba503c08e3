"""The bundled model's two forms: the checkpoint and its ONNX export, which installs without torch run."""

from __future__ import annotations

import fnmatch
import importlib.util
import re
from pathlib import Path

import pytest

import migr_rt.bundled
from migr_rt.artifact import read_artifact, sha256_of
from migr_rt.bundled import bundled_artifact, default_checkpoint, default_model
from migr_rt.export.onnx_export import _source_path, is_current_export
from migr_rt.media import decode_media
from migr_rt.predict import Predictor
from migr_rt.runtime import Runtime
from migr_rt.runtime.sources import demo_clip

REPO = Path(__file__).resolve().parents[1]


def test_the_bundled_export_is_current_for_the_bundled_weights():
    # `make bundle` retrains the checkpoint and exports it again; a checkpoint replaced without its export (or an
    # exporter changed without exporting again) would leave installs without torch running another model.
    manifest = read_artifact(bundled_artifact())  # every graph's hash and the manifest's own digest are verified
    weights = sha256_of(default_checkpoint() / "model.safetensors")
    assert is_current_export(manifest, weights, "fp32"), (manifest.source_checkpoint, manifest.extra.get("step_graph"))
    for name in manifest.tokenizer_files:
        assert (bundled_artifact() / name).read_bytes() == (default_checkpoint() / name).read_bytes(), name
    assert manifest.source_checkpoint["path"] == "../default"  # no build machine's folders in a shipped file


def test_the_bundled_export_gives_the_checkpoints_answers():
    media = decode_media(demo_clip())
    with Runtime(default_checkpoint(), backend="torch") as checkpoint, Runtime(bundled_artifact()) as export:
        assert export.backend.name == "onnxruntime"
        a = checkpoint.analyze(media.frames, media.audio, rationale=True)
        b = export.analyze(media.frames, media.audio, rationale=True)
    assert a["label"] == b["label"] and a["dominant"] == b["dominant"]
    assert a["rationale"]["text"] == b["rationale"]["text"]
    for m in a["mi"]:
        assert a["mi"][m] == pytest.approx(b["mi"][m], abs=1e-4)


def test_auto_runs_the_export_on_a_cpu_with_onnxruntime_and_the_checkpoint_elsewhere(monkeypatch):
    from importlib import metadata

    # here torch and onnxruntime >= 1.23.1 are both installed: auto on the CPU is the export
    assert default_model() == bundled_artifact() and default_model("auto", "cpu:0") == bundled_artifact()
    predictor = Predictor()
    assert predictor.checkpoint == bundled_artifact() and predictor.backend.name == "onnxruntime"
    assert Runtime().path == bundled_artifact() and Runtime(backend="onnxruntime").path == bundled_artifact()
    assert default_model("onnxruntime") == bundled_artifact()
    # asked for torch, or a GPU device: the checkpoint
    assert default_model("torch") == default_checkpoint() and Predictor(backend="torch").backend.name == "torch"
    assert default_model("auto", "cuda") == default_checkpoint() and default_model("tensorrt") == default_checkpoint()
    # an onnxruntime too old for the fused step (the backend would refuse it), or none: the checkpoint
    real_version = metadata.version
    monkeypatch.setattr(metadata, "version", lambda d: "1.23.0" if d == "onnxruntime" else real_version(d))
    assert default_model() == default_checkpoint() and Predictor().backend.name == "torch"
    monkeypatch.setattr(metadata, "version", real_version)
    real_find = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real_find(name, *a))
    assert default_model() == default_checkpoint()
    # without transformers (or torch) auto is the export on any device: the onnxruntime backend runs it or says why
    monkeypatch.setattr(migr_rt.bundled, "missing_model_stack", lambda: ["transformers"])
    assert default_model() == bundled_artifact() and default_model("auto", "cuda") == bundled_artifact()
    assert default_model("torch") == default_checkpoint()  # whose backend then says that torch is missing


def test_the_bundled_export_is_package_data():
    # An install from a wheel carries only what package-data names: each file of the export must match it.
    line = re.search(r"^migr_rt = \[(.*)\]$", (REPO / "pyproject.toml").read_text(), re.M)
    globs = re.findall(r'"([^"]+)"', line.group(1))
    files = [p.relative_to(REPO / "migr_rt").as_posix() for p in bundled_artifact().iterdir()]
    assert files and all(any(fnmatch.fnmatch(f, g) for g in globs) for f in files), (files, globs)


def test_the_manifest_names_a_sibling_checkpoint_relative_to_the_artifact_and_any_other_absolutely(tmp_path):
    (tmp_path / "models" / "ckpt").mkdir(parents=True)
    assert _source_path(tmp_path / "models" / "ckpt", tmp_path / "models" / "ckpt-onnx") == "../ckpt"
    assert _source_path(tmp_path / "models" / "ckpt", tmp_path / "out" / "x") == str((tmp_path / "models" / "ckpt"))


def _trace_notes(folder: Path) -> dict[str, int]:
    """Nodes per graph of ``folder`` that carry tracing notes (metadata, or a doc string quoting Python source;
    onnxruntime's fusions leave doc strings such as "Split for Fused Gather nodes", which are not notes)."""
    import onnx

    return {f.name: sum(bool(n.metadata_props) or ".py" in n.doc_string for n in onnx.load(str(f)).graph.node)
            for f in sorted(folder.glob("*.onnx"))}


def test_exported_graphs_name_no_folder_of_the_machine_that_exported_them(bundled_onnx):
    # Tracing noted each node's Python stack, with this checkout's absolute paths: 250 of them in the shipped
    # export's visual graphs, and bytes that changed with the folder the export ran from.
    for folder in (bundled_onnx, bundled_artifact()):
        assert not any(_trace_notes(folder).values()), (folder, _trace_notes(folder))
    for graph in bundled_onnx.glob("*.onnx"):
        assert str(REPO).encode() not in graph.read_bytes(), graph.name


def test_stripping_trace_notes_leaves_weights_in_an_external_data_file_where_they_are(tmp_path):
    # A graph over protobuf's 2 GB limit (a large pretrained decoder) is saved with its weights in a data file:
    # loading them in to strip the notes, then saving inline, would fail there.
    import numpy as np
    import onnx
    from onnx import StringStringEntryProto, TensorProto, helper, numpy_helper

    from migr_rt.export.onnx_export import strip_trace_notes

    weight = np.arange(64, dtype=np.float32).reshape(8, 8)
    node = helper.make_node("MatMul", ["x", "w"], ["y"], doc_string='File "/somewhere/graphs.py", line 1')
    node.metadata_props.append(StringStringEntryProto(key="pkg.torch.onnx.stack_trace", value="/somewhere"))
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])],
                              initializer=[numpy_helper.from_array(weight, "w")])
    path = tmp_path / "g.onnx"
    onnx.save(helper.make_model(graph), str(path), save_as_external_data=True, location="g.onnx.data",
              size_threshold=0)
    data = (tmp_path / "g.onnx.data").read_bytes()
    strip_trace_notes(path)
    assert (tmp_path / "g.onnx.data").read_bytes() == data
    stripped = onnx.load(str(path), load_external_data=False)
    assert stripped.graph.initializer[0].data_location == TensorProto.EXTERNAL
    assert not stripped.graph.node[0].metadata_props and not stripped.graph.node[0].doc_string
    assert np.array_equal(numpy_helper.to_array(onnx.load(str(path)).graph.initializer[0]), weight)
