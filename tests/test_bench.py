"""``migr-rt bench --quick``: the JSON's structure, the plots, the terminal table, artifact reuse."""

from __future__ import annotations

import json
import traceback

import pytest
from click.testing import CliRunner

from migr_rt.cli import main

pytest.importorskip("onnxruntime")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PATHS = ("hf-transformers", "torch fp32", "onnxruntime fp32")


@pytest.fixture(scope="module")
def bench_run(bundled_onnx, tmp_path_factory):
    """One quick bench of torch and onnxruntime fp32 (the session's fp32 export, reused) against the HF path."""
    root = tmp_path_factory.mktemp("bench")
    artifacts = root / "artifacts"
    artifacts.mkdir()
    (artifacts / "default-fp32").symlink_to(bundled_onnx, target_is_directory=True)
    out = root / "out"
    # One thread: a quick run stays quick on a loaded 2-core machine (two spinning pools there cost many times over).
    result = CliRunner().invoke(main, ["bench", "--quick", "--runs", "3", "--threads", "1", "--backends",
                                       "torch,onnxruntime", "--precisions", "fp32", "--out", str(out),
                                       "--artifacts", str(artifacts)])
    detail = "".join(traceback.format_exception(*result.exc_info)) if result.exc_info else ""
    assert result.exit_code == 0, result.output + detail
    return result, out, json.loads((out / "bench.json").read_text())


def test_every_stage_has_ordered_percentiles_for_every_path(bench_run):
    _, _, data = bench_run
    assert set(data["backends"]) == set(PATHS)
    assert set(data["stages"]) == set(data["timings"])
    for stage in ("decode", "face", "encode", "score_mi", "prefill", "step", "window_to_fast_event",
                  "window_to_first_token", "window_to_full_rationale"):
        rows = data["timings"][stage]
        assert rows, stage
        if stage != "decode":  # decoding is shared: one entry for every path
            assert set(rows) == set(PATHS), stage
        for name, r in rows.items():
            assert 0 < r["min_ms"] <= r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"] <= r["max_ms"], (stage, name, r)
            assert r["runs"] == (9 if stage == "step" else 3), (stage, name)
    # the runtime's face stage does not depend on the backend: timed once, the same numbers in every column
    assert data["timings"]["face"]["torch fp32"] == data["timings"]["face"]["onnxruntime fp32"]
    for name in PATHS:  # end to end: fast event, then first token, then the full rationale
        t = {s: data["timings"][s][name]["p50_ms"] for s in data["stages"] if s.startswith("window_to")}
        assert t["window_to_fast_event"] < t["window_to_first_token"] <= t["window_to_full_rationale"], (name, t)


def test_comparison_ratios_bandwidth_and_memory(bench_run):
    _, _, data = bench_run
    cmp_ = data["comparison"]
    assert cmp_["best_backend"] in ("torch fp32", "onnxruntime fp32")
    assert all(r["speedup"] > 0 for r in cmp_["per_stage"].values())
    assert all(s > 0 for s in cmp_["speedup_vs_hf_by_backend"].values())
    head = cmp_["headline"]
    assert head["speedup"] > 0 and head["met"] == (head["speedup"] >= head["target"])
    bound = data["bandwidth_bound"]
    assert bound["bandwidth_gb_per_s"]["dram"] > 0
    assert all(v > 0 for v in bound["bandwidth_gb_per_s"].values())
    for name in PATHS:
        entry = bound["per_path"][name]
        assert entry["dram"]["bound_ms"] > 0 and entry["dram"]["ratio"] > 0
    # The fp32 step graph reads the same weights as the torch decoder (tied LM head once).
    torch_bytes = bound["per_path"]["torch fp32"]["weight_bytes"]
    assert abs(bound["per_path"]["onnxruntime fp32"]["weight_bytes"] - torch_bytes) < 0.05 * torch_bytes
    assert cmp_["bandwidth_bound"]["ratio_dram"] > 0
    # Same weights, same inputs, fp32: the runtime writes what the HF path writes.
    for name in ("torch fp32", "onnxruntime fp32"):
        assert data["outputs"][name]["same_as_hf"] == {"label": True, "dominant": True, "rationale": True}, name
        assert data["outputs"][name]["tokens_per_s"] > 0
    assert data["memory"]["process_peak_rss_mb"] > 0
    assert data["machine"]["commit"] and data["versions"]["torch"]
    assert data["artifacts"]["onnxruntime fp32"]["exported"] is False  # reused: its manifest names these weights
    mv = data["mi_variants"]
    assert all(len(s["p50_ms"]) == len(mv["variants"]) and min(s["p50_ms"]) > 0 for s in mv["series"].values())


def test_plots_are_valid_pngs(bench_run):
    from PIL import Image

    _, out, _ = bench_run
    for name in ("bench_latency_cdf.png", "bench_mi_variants.png"):
        path = out / name
        assert path.read_bytes()[:8] == PNG_SIGNATURE, name
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            assert image.size[0] > 300 and image.size[1] > 200
    assert "## Targets" in (out / "bench.md").read_text()


def test_terminal_table_names_every_path_and_the_headline(bench_run):
    result, _, data = bench_run
    table = result.stdout
    for name in PATHS:
        assert name in table
    assert "HEADLINE window -> full rationale" in table
    assert "DRAM bound" in table
    assert ("met" in table) or ("MISSED" in table)


def test_bench_rejects_unknown_precisions_before_loading_anything(tmp_path):
    result = CliRunner().invoke(main, ["bench", "--quick", "--precisions", "fp8", "--out", str(tmp_path)])
    assert result.exit_code != 0
    assert "fp8" in result.output
    assert not (tmp_path / "bench.json").exists()


def test_bench_rejects_a_device_torch_cannot_use_and_absurd_threads_before_loading_anything(tmp_path):
    import torch

    bad = [(["--device", "bogus"], "'bogus' is not a torch device"), (["--threads", "100000"], "--threads")]
    if not torch.cuda.is_available():
        bad.append((["--device", "cuda"], "CUDA is not available"))
    for args, says in bad:
        result = CliRunner().invoke(main, ["bench", "--quick", *args, "--out", str(tmp_path)])
        assert result.exit_code == 2 and says in result.output and "Traceback" not in result.output, result.output
    assert not any(tmp_path.iterdir())


def test_a_cuda_result_is_reported_against_the_gpu_targets(bench_run):
    """The report follows the device the numbers came from: the GPU headline target and GPU-memory wording, and
    the CPU-only decode-bound target shown as not applicable (the CPU run's own numbers, relabelled)."""
    import copy

    from migr_rt.perf.report import markdown, terminal_table

    _, _, data = bench_run
    gpu = copy.deepcopy(data)
    gpu["config"]["device"] = "cuda"
    head = gpu["comparison"]["headline"]
    head["target"], head["met"] = 5.0, head["speedup"] >= 5.0
    gpu["comparison"]["bandwidth_bound"]["met"] = None
    table, md = terminal_table(gpu), markdown(gpu)
    assert "target >= 5x on GPU" in table and "GPU memory bound" in table and "n/a (a CPU target)" in table
    assert "dram" not in table.split("GPU memory copy bandwidth")[1].splitlines()[0]
    assert "the HF path (GPU)" in md and "GPU memory bandwidth" in md and "n/a (a CPU target)" in md
    assert "np.copyto" not in md and "target >= 3x on CPU" in terminal_table(data)


def test_the_bound_counts_the_step_weights_and_one_row_of_each_table_it_reads_a_row_of(bundled_onnx):
    # the fused step reads one row of the embedding and of GroupQueryAttention's rotary cos/sin tables per token;
    # every other weight whole (the tied LM head a second time, as the step stores it)
    from migr_rt.model import load_checkpoint
    from migr_rt.perf.bench import artifact_step_bytes
    from migr_rt.bundled import default_checkpoint

    model = load_checkpoint(default_checkpoint())[0]
    text = model.config.text_config
    decoder = model.decoder
    head_dim = text.hidden_size // text.num_attention_heads
    params = sum(p.numel() for n, p in decoder.named_parameters() if "embed_tokens" not in n) * 4
    tied = decoder.lm_head.weight.data_ptr() == decoder.model.embed_tokens.weight.data_ptr()
    expected = params + (text.vocab_size * text.hidden_size * 4 if tied else 0) + text.hidden_size * 4 \
        + 2 * (head_dim // 2) * 4
    counted = artifact_step_bytes(bundled_onnx)
    assert expected <= counted["bytes"] <= expected + 64, counted  # + a few scalar constants of the graph
    assert counted["row_read_table_bytes"] >= 2 * text.max_position_embeddings * (head_dim // 2) * 4
