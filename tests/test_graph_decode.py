"""Decoding over a static cache (the torch backend's CUDA-graph path) against the functional step graph.

On a CPU the static step runs eagerly: the cache layout, slot writes, masks
and state hand-over are what is compared. Capture and replay need a GPU
(``gpu`` marker).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from threads_at_once import at_once

from migr_rt.backends.base import DecoderState
from migr_rt.backends.graph_decode import StaticDecoder
from migr_rt.backends.torch_backend import TorchBackend
from migr_rt.export.onnx_export import example_inputs
from migr_rt.model import load_checkpoint
from migr_rt.model.graphs import build_graphs
from migr_rt.model.layout import prefix_ids
from migr_rt.bundled import default_checkpoint

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (CUDA-graph capture)")


@pytest.fixture(scope="module")
def model():
    return load_checkpoint(default_checkpoint())[0].float().eval()


def _prefill_state(model, batch: int, hide_audio: bool, seed: int | None = None) -> tuple[torch.Tensor, DecoderState]:
    token, keys, values, key_visible = example_inputs(model, batch, seed=batch if seed is None else seed)["step"]
    if hide_audio:  # a hidden modality stays invisible to every later token
        ids = torch.tensor(prefix_ids(model.config) + [model.config.special_token_ids["think_start"]])
        key_visible = key_visible & (ids != model.config.special_token_ids["aud_token"])[None]
    return token, DecoderState(keys, values, key_visible)


def _functional(model, token, state, steps):
    step = build_graphs(model)["step"]
    out = []
    with torch.inference_mode():
        for _ in range(steps):
            logits, keys, values, visible = step(token, state.keys, state.values, state.key_visible)
            state = DecoderState(keys, values, visible)
            out.append((logits, state))
            token = logits.argmax(-1, keepdim=True)
    return out


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("hide_audio", [False, True])
def test_static_steps_match_the_functional_step(model, batch, hide_audio):
    token, state = _prefill_state(model, batch, hide_audio)
    expected = _functional(model, token, state, steps=6)
    static = StaticDecoder(build_graphs(model)["step"].decoder, 64, cuda_graphs=False)
    for logits_ref, state_ref in expected:
        logits, state = static.step(token, state)
        assert torch.allclose(logits, logits_ref, atol=1e-5)
        assert state.length == state_ref.length
        assert torch.equal(state.key_visible, state_ref.key_visible)
        assert torch.allclose(state.keys, state_ref.keys, atol=1e-6)
        assert torch.allclose(state.values, state_ref.values, atol=1e-6)
        token = logits.argmax(-1, keepdim=True)


def test_any_earlier_state_can_be_continued_again(model):
    # the benchmark's pattern: the same state stepped many times; and a new prefill after a rationale
    token, prefill = _prefill_state(model, 1, hide_audio=False)
    static = StaticDecoder(build_graphs(model)["step"].decoder, 64, cuda_graphs=False)
    first, state = static.step(token, prefill)
    nxt = first.argmax(-1, keepdim=True)
    second, _ = static.step(nxt, state)
    for _ in range(3):  # `state` is a view of the buffers the later steps wrote past: still the same answer
        again, _ = static.step(nxt, state)
        assert torch.equal(again, second)
    restart, _ = static.step(token, prefill)  # back to the prefill: copied in again
    assert torch.equal(restart, first)


def _greedy(static, token, state, steps: int) -> list[int]:
    out = []
    for _ in range(steps):
        logits, state = static.step(token, state)
        token = logits.argmax(-1, keepdim=True)
        out.append(int(token[0, 0]))
    return out


def _in_turns(static, starts, steps: int) -> list[list[int]]:
    """The greedy tokens of each start, decoded a token of each in turn through one decoder."""
    tokens, states, got = [start[0] for start in starts], [start[1] for start in starts], [[] for _ in starts]
    for _ in range(steps):
        for i in range(len(starts)):
            logits, states[i] = static.step(tokens[i], states[i])
            tokens[i] = logits.argmax(-1, keepdim=True)
            got[i].append(int(tokens[i][0, 0]))
    return got


def test_two_rationales_decoded_in_turns_each_continue_their_own_cache(model):
    # a Predictor shared by two callers: rationale A's state was handed out from the buffers B is then loaded into
    starts = [_prefill_state(model, 1, hide_audio=False, seed=seed) for seed in (1, 2)]
    static = StaticDecoder(build_graphs(model)["step"].decoder, 64, cuda_graphs=False)
    expected = [_greedy(static, *start, steps=12) for start in starts]
    assert expected[0] != expected[1]
    assert _in_turns(static, starts, steps=12) == expected


def test_an_older_state_kept_by_a_caller_survives_another_rationales_load(model):
    # rationale A keeps an earlier state (to step it again), B is loaded into the buffers in between
    (token_a, a0), (token_b, b0) = [_prefill_state(model, 1, hide_audio=False, seed=seed) for seed in (1, 2)]
    static = StaticDecoder(build_graphs(model)["step"].decoder, 64, cuda_graphs=False)
    first, a1 = static.step(token_a, a0)
    nxt = first.argmax(-1, keepdim=True)
    second, a2 = static.step(nxt, a1)  # a2 is the latest state handed out, a1 an older one still held
    static.step(token_b, b0)
    again, _ = static.step(nxt, a1)
    assert torch.equal(again, second)
    static.step(token_b, b0)
    later, _ = static.step(second.argmax(-1, keepdim=True), a2)
    alone = StaticDecoder(build_graphs(model)["step"].decoder, 64, cuda_graphs=False)
    _, s1 = alone.step(token_a, a0)
    _, s2 = alone.step(nxt, s1)
    expected, _ = alone.step(second.argmax(-1, keepdim=True), s2)
    assert torch.allclose(later, expected, atol=1e-5)


def test_an_older_state_stepped_again_stays_its_own_after_another_load(model):
    # the benchmark's pattern (one state stepped many times), with another rationale loaded in between
    (token_a, a0), (token_b, b0) = [_prefill_state(model, 1, hide_audio=False, seed=seed) for seed in (1, 2)]
    static = StaticDecoder(build_graphs(model)["step"].decoder, 64, cuda_graphs=False)
    first, a1 = static.step(token_a, a0)
    nxt = first.argmax(-1, keepdim=True)
    second, _ = static.step(nxt, a1)
    again, _ = static.step(nxt, a1)  # a1 loaded from the buffers it is a view of
    static.step(token_b, b0)
    third, _ = static.step(nxt, a1)
    assert torch.equal(again, second) and torch.equal(third, second)


def test_two_threads_decoding_at_once_each_get_their_own_rationale(model):
    starts = [_prefill_state(model, 1, hide_audio=False, seed=seed) for seed in (1, 2)]
    static = StaticDecoder(build_graphs(model)["step"].decoder, 64, cuda_graphs=False)
    expected = [_greedy(static, *start, steps=16) for start in starts]
    for _ in range(3):
        assert at_once(lambda i: _greedy(static, *starts[i], steps=16)) == expected


def test_a_full_static_cache_is_a_clear_error(model):
    token, state = _prefill_state(model, 1, hide_audio=False)
    static = StaticDecoder(build_graphs(model)["step"].decoder, state.length, cuda_graphs=False)
    with pytest.raises(ValueError, match=f"cache holds {state.length} tokens: the static cache has {state.length} slots"):
        static.step(token, state)
    with pytest.raises(ValueError, match="at least 2 cache slots"):
        StaticDecoder(build_graphs(model)["step"].decoder, 1, cuda_graphs=False)


def test_cuda_graphs_need_a_cuda_model(model):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: the refusal is for CPU-only machines")
    with pytest.raises(RuntimeError, match="cuda_graphs=True needs the model on a CUDA device"):
        TorchBackend(model, cuda_graphs=True)
    assert TorchBackend(model).cuda_graphs is False


@pytest.mark.gpu
@needs_cuda
def test_gpu_graph_decoding_gives_the_cpu_tokens():
    from migr_rt.backends.decode import greedy_decode

    cpu = TorchBackend.from_checkpoint(default_checkpoint())
    gpu = TorchBackend(load_checkpoint(default_checkpoint(), device="cuda")[0].eval(), cuda_graphs=True)
    assert gpu.static_decoder is not None
    gen = torch.Generator().manual_seed(4)
    cfg = cpu.config
    pixels = torch.rand(2, cfg.num_frames, 3, cfg.face_size, cfg.face_size, generator=gen)
    audio = 0.1 * torch.randn(2, int(cfg.sample_rate * cfg.audio_seconds), generator=gen)
    present = torch.tensor([[True, True], [True, False]])
    ids = torch.tensor([prefix_ids(cfg) + [cfg.special_token_ids["think_start"]]] * 2)
    # One set of encoder tokens for both: cuDNN's TF32 convolutions would otherwise shift the GPU's by ~1e-3.
    tokens = cpu.encode(pixels, audio)
    on_gpu = gpu.encode(pixels, audio)
    for t, g in ((tokens.visual, on_gpu.visual), (tokens.audio, on_gpu.audio)):
        assert np.allclose(t, g, atol=2e-2), np.abs(t - g).max()
    for _ in range(2):  # the second rationale replays the graph captured during the first
        a = greedy_decode(cpu, ids, tokens, present, max_new_tokens=48)
        b = greedy_decode(gpu, ids, tokens, present, max_new_tokens=48)
        assert np.array_equal(a.tokens, b.tokens)
    assert gpu.static_decoder._slots[2].graph is not None


@pytest.mark.gpu
@needs_cuda
def test_gpu_graph_decoding_of_two_rationales_in_turns(model):
    """The captured step replayed for two rationales alternating (a shared Predictor): each its own tokens."""
    starts = [_prefill_state(model, 1, hide_audio=False, seed=seed) for seed in (1, 2)]  # prefilled on the CPU
    starts = [(token.cuda(), DecoderState(*(t.cuda() for t in (s.keys, s.values, s.key_visible))))
              for token, s in starts]
    on_gpu = load_checkpoint(default_checkpoint(), device="cuda")[0].eval()
    static = StaticDecoder(build_graphs(on_gpu)["step"].to("cuda").decoder, 128, cuda_graphs=True)
    expected = [_greedy(static, *start, steps=12) for start in starts]
    assert static._slots[1].graph is not None
    assert _in_turns(static, starts, steps=12) == expected
