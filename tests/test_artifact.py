"""Bad artifact folders fail before any inference, with an error that names the file and the problem."""

from __future__ import annotations

import json
import re
import shutil

import pytest
from click.testing import CliRunner

from migr_rt.artifact import ArtifactError, read_artifact, seal, sha256_of
from migr_rt.backends import BackendUnavailable, available_backends, load_backend
from migr_rt.backends.onnxruntime_backend import OnnxRuntimeBackend
from migr_rt.cli import main
from migr_rt.bundled import bundled_artifact, default_checkpoint
from migr_rt.predict import Predictor


@pytest.fixture()
def artifact(bundled_onnx, tmp_path):
    copy = tmp_path / "art"
    shutil.copytree(bundled_onnx, copy)
    return copy


def _edit_manifest(folder, change) -> None:
    """Edit the manifest and seal it again, as a consistent manifest that a deeper check must refuse."""
    path = folder / "manifest.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(seal(data)))


def test_a_sound_artifact_passes(artifact):
    assert read_artifact(artifact).format == "onnx"


def test_missing_manifest(artifact):
    (artifact / "manifest.json").unlink()
    with pytest.raises(ArtifactError, match=r"manifest\.json: missing; export one"):
        OnnxRuntimeBackend(artifact)


def test_unreadable_manifest(artifact):
    (artifact / "manifest.json").write_text("{not json")
    with pytest.raises(ArtifactError, match=r"manifest\.json: not a readable JSON manifest"):
        read_artifact(artifact)


def test_missing_graph_file(artifact):
    (artifact / "step.onnx").unlink()
    with pytest.raises(ArtifactError, match=r"step\.onnx: graph 'step' named by .* is missing"):
        OnnxRuntimeBackend(artifact)


def test_truncated_graph_is_caught_by_its_hash(artifact):
    path = artifact / "prefill.onnx"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ArtifactError, match=r"prefill\.onnx: does not match the SHA-256"):
        OnnxRuntimeBackend(artifact)


def test_a_manifest_edited_by_hand_is_refused_before_any_graph_loads(artifact):
    # reordered labels pass every graph check and would silently report another emotion
    path = artifact / "manifest.json"
    sealed = json.loads(path.read_text())
    assert sealed["content_sha256"]  # every export seals its manifest
    for change in (lambda d: d["model_config"]["labels"].reverse(), lambda d: d["model_config"].update(num_frames=3),
                   lambda d: d.update(precision="int8")):
        edited = json.loads(json.dumps(sealed))
        change(edited)
        path.write_text(json.dumps(edited, indent=1))
        with pytest.raises(ArtifactError, match=r"manifest\.json: edited after export"):
            OnnxRuntimeBackend(artifact)
    # re-indenting or reordering keys is not an edit; a manifest from before sealing (no digest) reads as before
    path.write_text(json.dumps(dict(reversed(list(sealed.items()))), indent=4))
    assert read_artifact(artifact).labels == sealed["model_config"]["labels"]
    del sealed["content_sha256"]
    path.write_text(json.dumps(sealed))
    assert read_artifact(artifact).labels == sealed["model_config"]["labels"]


def test_truncated_graph_with_a_matching_hash_is_caught_by_the_loader(artifact):
    path = artifact / "audio.onnx"
    path.write_bytes(path.read_bytes()[:5000])
    _edit_manifest(artifact, lambda d: d["graphs"]["audio"].update(sha256=sha256_of(path)))
    with pytest.raises(ArtifactError, match=r"audio\.onnx: onnxruntime cannot load graph 'audio'"):
        OnnxRuntimeBackend(artifact)


def test_newer_format_version(artifact):
    _edit_manifest(artifact, lambda d: d.update(format_version=99))
    with pytest.raises(ArtifactError, match="format version 99 is newer than this migr-rt reads"):
        OnnxRuntimeBackend(artifact)


def test_manifest_that_does_not_match_the_graph(artifact):
    _edit_manifest(artifact, lambda d: d["graphs"]["scoring"]["inputs"][2].update(name="presence"))
    with pytest.raises(ArtifactError, match=r"scoring\.onnx: the graph has inputs .* but the manifest says"):
        OnnxRuntimeBackend(artifact)


@pytest.mark.parametrize("field, value, graph, tensor, actual", [
    ("num_frames", 3, "visual_pool", "frame_embeddings", 8),
    ("text_config.hidden_size", 96, "audio", "audio_tokens", 192),
    ("num_visual_tokens", 5, "prefill", "visual_tokens", 4),
    ("audio_seconds", 1.5, "audio", "waveform", 32000),
    ("text_config.vocab_size", 700, "prefill", "logits", 615),
])
def test_a_sealed_manifest_whose_config_does_not_fit_the_graphs_is_refused_at_load(artifact, field, value, graph,
                                                                                   tensor, actual):
    # edited and sealed again: every hash matches, and without this the first window fails inside onnxruntime
    def change(data):
        config = data["model_config"]
        for key in field.split(".")[:-1]:
            config = config[key]
        config[field.split(".")[-1]] = value
    _edit_manifest(artifact, change)
    named = "audio_seconds x sample_rate = 24000" if field == "audio_seconds" else f"{field} = {value}"
    with pytest.raises(ArtifactError, match=rf"art/{graph}\.onnx: tensor '{tensor}' of graph '{graph}' has size "
                                            rf"{actual} at dimension .* but .*art/manifest\.json gives model_config "
                                            rf"{re.escape(named)}: the manifest does not describe these graphs"):
        OnnxRuntimeBackend(artifact)


def test_a_sealed_manifest_whose_tensor_shapes_do_not_fit_the_graph_is_refused_at_load(artifact):
    _edit_manifest(artifact, lambda d: d["graphs"]["visual_pool"]["inputs"][0].update(shape=["batch", 3, 128]))
    with pytest.raises(ArtifactError, match=r"visual_pool\.onnx: tensor 'frame_embeddings' of graph 'visual_pool' "
                                            r"has shape \['batch', 8, 128\], but .*manifest\.json says \['batch', 3, 128\]"):
        OnnxRuntimeBackend(artifact)


@pytest.mark.parametrize("escape", ["../step.onnx", "/etc/passwd", "sub/../../x.onnx"])
def test_paths_escaping_the_folder(artifact, escape):
    _edit_manifest(artifact, lambda d: d["graphs"]["step"].update(file=escape))
    with pytest.raises(ArtifactError, match="path .* (leaves the artifact folder|must be relative)"):
        read_artifact(artifact)


def test_manifest_missing_a_graph(artifact):
    _edit_manifest(artifact, lambda d: d["graphs"].pop("visual_pool"))
    with pytest.raises(ArtifactError, match=r"graphs \['visual_pool'\] are missing"):
        read_artifact(artifact)


def test_auto_picks_onnxruntime_for_an_artifact_and_torch_for_a_checkpoint(bundled_onnx, caplog):
    caplog.set_level("INFO", logger="migr_rt.backends")
    assert load_backend(bundled_onnx).name == "onnxruntime"
    assert load_backend(default_checkpoint()).name == "torch"
    first = [r.getMessage() for r in caplog.records if r.name == "migr_rt.backends"][0]
    assert first.startswith("backend: onnxruntime") and "chosen by auto" in first


def test_threads_for_a_backend_that_does_not_take_them_is_said(bundled_onnx, caplog):
    caplog.set_level("WARNING", logger="migr_rt.backends")
    load_backend(bundled_onnx, threads=1)
    assert not caplog.records
    load_backend(default_checkpoint(), threads=1)
    assert "threads=1 is for the onnxruntime backend; the torch backend runs on torch's own threads" in caplog.text


def test_explicitly_requested_backend_that_cannot_run_lists_what_can(bundled_onnx):
    if available_backends()["tensorrt"] is None:
        pytest.skip("TensorRT is usable on this machine, so it cannot be shown unavailable")
    with pytest.raises(BackendUnavailable, match="backend 'tensorrt' is not available: .*available here: torch"):
        load_backend(_tensorrt_folder(bundled_onnx), "tensorrt")
    with pytest.raises(BackendUnavailable, match="holds checkpoint weights, which the onnxruntime backend cannot read; export one with `migr-rt export"):
        load_backend(default_checkpoint(), "onnxruntime")
    with pytest.raises(BackendUnavailable, match=r"holds onnx weights, which the torch backend cannot read; pass the checkpoint"
                                                 r".*\(this folder runs on: onnxruntime\)"):
        load_backend(bundled_onnx, "torch")
    with pytest.raises(BackendUnavailable, match=r"holds checkpoint weights, which the tensorrt backend cannot read; "
                                                 r"export one with `migr-rt export --checkpoint DIR --format tensorrt`"):
        load_backend(default_checkpoint(), "tensorrt")
    with pytest.raises(BackendUnavailable, match="holds onnx weights, which the tensorrt backend cannot read; .*--format tensorrt"):
        load_backend(bundled_onnx, "tensorrt")
    with pytest.raises(ValueError, match="choose auto or one of torch, onnxruntime, tensorrt"):
        load_backend(bundled_onnx, "openvino")


def _tensorrt_folder(bundled_onnx):
    """An artifact folder that says it holds TensorRT engines (enough to reach the availability check)."""
    folder = bundled_onnx.parent / "as-tensorrt"
    if not folder.exists():
        shutil.copytree(bundled_onnx, folder)
        _edit_manifest(folder, lambda d: d.update(format="tensorrt"))
    return folder


def test_cli_reports_a_bad_artifact_in_one_line(artifact):
    (artifact / "step.onnx").unlink()
    result = CliRunner().invoke(main, ["demo", "--checkpoint", str(artifact)])
    assert result.exit_code == 1
    assert "step.onnx" in result.output and "Traceback" not in result.output


def test_predictor_refuses_an_artifact_before_loading_any_graph(artifact):
    _edit_manifest(artifact, lambda d: d.update(format_version=2))
    with pytest.raises(ArtifactError, match="newer"):
        Predictor(artifact)


@pytest.mark.parametrize("version", ["1.22.1", "1.23.0", "1.23.0rc1"])
def test_an_onnxruntime_that_cannot_run_the_fused_step_is_refused_with_the_version_it_needs(version, monkeypatch):
    # 1.22 cannot read the fused step's opset 23, and 1.23.0 runs its Attention with a cache wrongly: the bundled
    # model's rationales came out garbled there, with no error.
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "__version__", version)
    with pytest.raises(BackendUnavailable, match=rf"decoder step needs onnxruntime >= 1\.23\.1, this is {version}"):
        load_backend(bundled_artifact(), "onnxruntime")
    monkeypatch.setattr(onnxruntime, "__version__", "1.23.1")
    assert load_backend(bundled_artifact(), "onnxruntime").name == "onnxruntime"
