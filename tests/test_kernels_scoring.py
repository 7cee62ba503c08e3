"""MI scoring on the kernels (``migr_rt.kernels.scoring``) against ``ScoringGraph`` on the tiny model.

On CPU the kernels are interpreted (scoped ``TRITON_INTERPRET=1`` inside ``migr_rt.kernels``); the CUDA-graph
path and half-precision models on compiled kernels are GPU-only tests.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from model_fixtures import TINY_TEXT, random_inputs, tiny_config
from threads_at_once import at_once

pytest.importorskip("triton", reason="triton is not installed (pip install 'migr-rt[kernels]')")

from migr_rt.backends.torch_backend import TorchBackend  # noqa: E402
from migr_rt.kernels import kernels_wanted  # noqa: E402
from migr_rt.kernels._triton import INTERPRET  # noqa: E402
from migr_rt.kernels.masked_attention import variant_key_visible  # noqa: E402
from migr_rt.kernels.scoring import KernelScoring, fused_scoring, modality_spans  # noqa: E402
from migr_rt.mi import variant_visibility  # noqa: E402
from migr_rt.model import build_model  # noqa: E402
from migr_rt.model.graphs import ScoringGraph  # noqa: E402

needs_gpu = pytest.mark.skipif(
    INTERPRET, reason="needs a CUDA GPU (compiled Triton, CUDA graphs); here the kernels are interpreted")
PRESENCE = [[True, True], [True, False], [False, True], [False, False]]
#: where the kernels run: interpreted on the CPU, compiled on a GPU (the same tests, natively there)
DEVICE = "cpu" if INTERPRET else "cuda"


def on_device(model):
    """The model on the kernels' device; a copy on a GPU, so the shared fixtures stay on the CPU."""
    return model if DEVICE == "cpu" else copy.deepcopy(model).to(DEVICE)


def scores(model, batch: int, seed: int) -> tuple:
    """(fused, ScoringGraph) scores of one random batch, on the kernels' device."""
    model = on_device(model)
    graph = ScoringGraph(model).eval().to(DEVICE)
    visual, audio = tokens_for(model, batch, seed=seed)
    present = torch.tensor(PRESENCE[:batch], device=DEVICE)
    with torch.inference_mode():
        return fused_scoring(graph, visual, audio, present), graph(visual, audio, present)


def layered_model(layers: int):
    cfg = tiny_config(text_config={**TINY_TEXT, "num_hidden_layers": layers, "num_attention_heads": 4,
                                   "num_key_value_heads": 1})
    model, _ = build_model(cfg, tokenizer_texts=["brows drawn together", "the voice is loud"], seed=layers)
    return model.eval()


@pytest.fixture(scope="module")
def three_layer_model():
    """Three layers: first (shared rows), middle (suffix rows) and last (answer-slot queries only)."""
    return layered_model(3)


def tokens_for(model, batch: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    pixels, audio = random_inputs(model.config, batch, seed=seed)
    with torch.no_grad():
        return model.encode_visual(pixels.to(model.device)), model.encode_audio(audio.to(model.device))


def assert_same_scores(got: tuple, ref: tuple, atol: float = 1e-5) -> None:
    log_probs, mi, importance, dominant = got
    r_log_probs, r_mi, r_importance, r_dominant = ref
    torch.testing.assert_close(log_probs, r_log_probs, atol=atol, rtol=1e-4)
    torch.testing.assert_close(mi, r_mi, atol=atol, rtol=1e-4)
    torch.testing.assert_close(importance, r_importance, atol=atol, rtol=1e-4)
    assert torch.equal(dominant, r_dominant)


@pytest.mark.parametrize("batch", [1, 4])
def test_fused_scoring_equals_scoring_graph(tiny_model, batch):
    assert_same_scores(*scores(tiny_model[0], batch, seed=batch))


def test_fused_scoring_one_layer():
    """A one-layer decoder: the first layer is also the last (shared rows, answer queries only)."""
    assert_same_scores(*scores(layered_model(1), 3, seed=8))


def test_fused_scoring_three_layers(three_layer_model):
    assert_same_scores(*scores(three_layer_model, 4, seed=7))


def test_spans_reproduce_the_decoder_key_visibility(tiny_model):
    """The kernel's (spans, present) masks are exactly ``KVDecoder.key_visibility`` of the materialised variants."""
    model, _ = tiny_model
    graph = ScoringGraph(model)
    present = torch.tensor(PRESENCE)
    bsz, seq = len(PRESENCE), graph.ids.shape[0]
    spans = modality_spans(graph)
    nv, na = model.config.num_visual_tokens, model.config.num_audio_tokens
    assert spans == [[2, 2 + nv], [4 + nv, 4 + nv + na]]  # [bos] <vis> v.. </vis> <aud> a.. </aud> ...
    ours = variant_key_visible(torch.full((bsz,), seq), torch.tensor([spans] * bsz), present, seq)
    rows = graph.ids[None].expand(bsz * graph.variants, -1)
    theirs = graph.decoder.key_visibility(rows, variant_visibility(present).reshape(bsz * graph.variants, -1))
    assert torch.equal(ours.reshape(bsz * graph.variants, seq), theirs)


def test_torch_backend_opt_in(tiny_model, monkeypatch):
    """``kernels=True`` scores through the kernels (interpreted on a CPU) with the reference path's results;
    auto stays off on CPU, ``MIGR_RT_KERNELS=0`` forces the reference path."""
    model = on_device(tiny_model[0])
    monkeypatch.delenv("MIGR_RT_KERNELS", raising=False)
    assert kernels_wanted(None, "cpu") is False
    monkeypatch.setenv("MIGR_RT_KERNELS", "0")
    assert kernels_wanted(None, "cuda") is False
    assert TorchBackend(model).kernels is False
    monkeypatch.delenv("MIGR_RT_KERNELS")
    fused, plain = TorchBackend(model, kernels=True), TorchBackend(model, kernels=False)
    assert fused.kernels and not plain.kernels and "triton" in fused.describe()
    pixels, audio = random_inputs(model.config, 2, seed=11)
    tokens = plain.encode(pixels, audio)  # the backend API takes host arrays and moves them
    present = torch.tensor([[True, True], [False, True]])
    got, ref = fused.score_mi(tokens, present), plain.score_mi(tokens, present)
    np.testing.assert_allclose(got.log_probs, ref.log_probs, atol=1e-5, rtol=1e-4)
    np.testing.assert_allclose(got.importance, ref.importance, atol=1e-5, rtol=1e-4)
    assert np.array_equal(got.dominant, ref.dominant) and np.array_equal(got.predicted, ref.predicted)


def test_kernels_cannot_be_forced_onto_a_device_they_do_not_run_on():
    with pytest.raises(RuntimeError, match="need"):
        kernels_wanted(True, "cuda" if INTERPRET else "cpu")


# ---------------------------------------------------------------------------------------------------------------
# GPU only
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=["fp32", "fp16", "bf16"])
def test_gpu_fused_scoring_and_cuda_graph_replay(three_layer_model, dtype):
    """Compiled kernels in fp32/fp16/bf16: no further from the fp32 reference than ScoringGraph in the same dtype
    (plus slack), and the CUDA-graph replay equal to the eager kernels path, also after new inputs."""
    visual, audio = tokens_for(three_layer_model, 4, seed=3)  # fp32 on the CPU, before any model moves
    present = torch.tensor(PRESENCE, device="cuda")
    exact = ScoringGraph(copy.deepcopy(three_layer_model).to("cuda")).eval().to("cuda")
    model = copy.deepcopy(three_layer_model).to("cuda", dtype)
    graph = ScoringGraph(model).eval().to("cuda")  # its id/RoPE buffers start on the CPU
    low_v, low_a = visual.to("cuda", dtype), audio.to("cuda", dtype)
    with torch.inference_mode():
        ref32 = exact(visual.cuda(), audio.cuda(), present)
        ref = graph(low_v, low_a, present)
        eager = fused_scoring(graph, low_v, low_a, present)
        scoring = KernelScoring(graph, cuda_graphs=True)
        first = scoring(low_v, low_a, present)
        again = scoring(low_v * 0.5, low_a, present)  # replay with new inputs
        direct = fused_scoring(graph, low_v * 0.5, low_a, present)
    ref_err = float((ref[0] - ref32[0]).abs().max())
    ours_err = float((eager[0] - ref32[0]).abs().max())
    assert ours_err <= 2 * ref_err + 1e-3, (ours_err, ref_err)
    tol = 1e-6 if dtype == torch.float32 else 1e-2
    for a, b in zip(first, eager):
        torch.testing.assert_close(a, b, atol=tol, rtol=0)
    for a, b in zip(again, direct):
        torch.testing.assert_close(a, b, atol=tol, rtol=0)
    assert len(scoring._captured) == 1


@pytest.mark.gpu
@needs_gpu
def test_gpu_cuda_graph_scoring_shared_by_threads_scores_each_callers_input(three_layer_model):
    """Two threads replaying one captured graph at once each get the scores of their own input."""
    model = copy.deepcopy(three_layer_model).to("cuda")
    graph = ScoringGraph(model).eval().to("cuda")
    present = torch.tensor(PRESENCE, device="cuda")
    inputs = [tuple(t.cuda() for t in tokens_for(three_layer_model, 4, seed=seed)) for seed in (5, 6)]
    scoring = KernelScoring(graph, cuda_graphs=True)
    with torch.inference_mode():
        expected = [scoring(*pair, present) for pair in inputs]

    def worker(i: int) -> list:
        with torch.inference_mode():
            out = [scoring(*inputs[i], present) for _ in range(50)]
        torch.cuda.synchronize()
        return out

    got = at_once(worker)
    for i in (0, 1):
        for out in got[i]:
            for a, b in zip(out, expected[i]):
                assert torch.equal(a, b)


@pytest.mark.gpu
@needs_gpu
def test_gpu_torch_backend_uses_kernels_automatically(tiny_model, monkeypatch):
    model, _ = tiny_model
    monkeypatch.delenv("MIGR_RT_KERNELS", raising=False)
    pixels, audio = random_inputs(model.config, 2, seed=12)
    present = torch.tensor([[True, True], [True, False]])
    ref = TorchBackend(model, kernels=False)
    tokens = ref.encode(pixels, audio)
    expected = ref.score_mi(tokens, present)
    model.to("cuda")
    try:
        backend = TorchBackend(model)
        assert backend.kernels
        got = backend.score_mi(tokens, present)
        np.testing.assert_allclose(got.log_probs, expected.log_probs, atol=1e-4, rtol=1e-3)
        assert np.array_equal(got.dominant, expected.dominant)
        monkeypatch.setenv("MIGR_RT_KERNELS", "0")
        assert not TorchBackend(model).kernels
    finally:
        model.to("cpu")
