"""The hand-built decoder step (fused operators) against the torch step it replaces, in real onnxruntime sessions."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from threads_at_once import at_once

from migr_rt.backends.base import DecoderState
from migr_rt.backends.static_cache import StaticCacheStep
from migr_rt.export.fused_step import INT8_BLOCK, build_fused_step, dequantize_blocks, quantize_blocks
from migr_rt.export.onnx_export import example_inputs
from migr_rt.model import load_checkpoint
from migr_rt.model.graphs import build_graphs
from migr_rt.model.layout import prefix_ids
from migr_rt.bundled import default_checkpoint

NAMES = ("token", "keys", "values", "key_visible")


@pytest.fixture(scope="module")
def model():
    return load_checkpoint(default_checkpoint())[0].float().eval()


def _session(proto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _stepper(model, proto) -> StaticCacheStep:
    text = model.config.text_config
    return StaticCacheStep(_session(proto), text.num_hidden_layers, text.max_position_embeddings)


def _outputs(logits, state) -> list[np.ndarray]:
    """A static step's results as the torch step's four outputs (copies: the state is a view of the buffers)."""
    return [logits, np.array(state.keys), np.array(state.values), np.array(state.key_visible)]


def _steps(model, batch: int, steps: int, hide_audio: bool):
    """Inputs of ``steps`` consecutive steps from a real prefill, and torch's outputs of each."""
    args = list(example_inputs(model, batch, seed=batch)["step"])
    if hide_audio:  # a hidden modality: its keys are invisible to every later token
        ids = torch.tensor(prefix_ids(model.config) + [model.config.special_token_ids["think_start"]])
        assert ids.numel() == args[3].shape[1]
        args[3] = args[3] & (ids != model.config.special_token_ids["aud_token"])[None]
    step = build_graphs(model)["step"]
    feeds, outs = [], []
    with torch.no_grad():
        for _ in range(steps):
            out = step(*args)
            feeds.append({n: a.numpy() for n, a in zip(NAMES, args)})
            outs.append([o.numpy() for o in out])
            args = [out[0].argmax(-1, keepdim=True), out[1], out[2], out[3]]
    return feeds, outs


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("hide_audio", [False, True])
def test_fp32_fused_step_matches_the_torch_step(model, batch, hide_audio):
    # the first step copies the prefill's cache in; the others continue the state the last one returned, in place
    stepper = _stepper(model, build_fused_step(model, "fp32"))
    feeds, outs = _steps(model, batch, steps=4, hide_audio=hide_audio)
    state = DecoderState(feeds[0]["keys"], feeds[0]["values"], feeds[0]["key_visible"])
    for feed, expected in zip(feeds, outs):
        logits, state = stepper.step(feed["token"], state)
        for g, e in zip(_outputs(logits, state), expected):
            assert g.shape == e.shape and g.dtype == e.dtype
            if e.dtype == np.bool_:
                assert np.array_equal(g, e)
            else:
                assert np.abs(g - e).max() < 1e-4


def test_a_step_from_an_earlier_state_continues_from_it(model):
    # a state handed out before the last step is still a prefix of the buffers: stepping from it again rewrites
    # the row after it, and matches torch from that state (what the bench's repeated step relies on)
    stepper = _stepper(model, build_fused_step(model, "fp32"))
    feeds, outs = _steps(model, 2, steps=3, hide_audio=False)
    state = DecoderState(feeds[0]["keys"], feeds[0]["values"], feeds[0]["key_visible"])
    _, first = stepper.step(feeds[0]["token"], state)
    keys = stepper.keys
    stepper.step(feeds[1]["token"], first)
    stepper.step(np.array([[3], [4]]), first)  # another token after `first`: the row after it is rewritten
    logits, again = stepper.step(feeds[1]["token"], first)
    assert stepper.keys is keys  # continued in place, no copy into new buffers
    for g, e in zip(_outputs(logits, again), outs[1]):
        assert np.array_equal(g, e) if e.dtype == np.bool_ else np.abs(g - e).max() < 1e-4


def test_the_cache_grows_past_its_first_capacity(model, monkeypatch):
    import migr_rt.backends.static_cache as static_cache

    monkeypatch.setattr(static_cache, "MIN_CAPACITY", 4)
    stepper = _stepper(model, build_fused_step(model, "fp32"))
    feeds, outs = _steps(model, 1, steps=6, hide_audio=True)
    prompt = feeds[0]["keys"].shape[3]
    state = DecoderState(feeds[0]["keys"], feeds[0]["values"], feeds[0]["key_visible"])
    capacities = []
    for feed, expected in zip(feeds, outs):
        logits, state = stepper.step(feed["token"], state)
        capacities.append(stepper.capacity)
        for g, e in zip(_outputs(logits, state), expected):
            assert np.array_equal(g, e) if e.dtype == np.bool_ else np.abs(g - e).max() < 1e-4
    assert capacities[0] == prompt + 1 and capacities[1] == 2 * (prompt + 1)  # outgrown after one step: doubled


def test_int8_fused_step_stays_close_to_fp32(model):
    stepper = _stepper(model, build_fused_step(model, "int8"))
    feeds, outs = _steps(model, 3, steps=3, hide_audio=False)
    agree = []
    for feed, expected in zip(feeds, outs):
        logits, _ = stepper.step(feed["token"], DecoderState(feed["keys"], feed["values"], feed["key_visible"]))
        ref = expected[0]
        assert np.corrcoef(logits.ravel(), ref.ravel())[0, 1] > 0.995
        agree += list(logits.argmax(-1) == ref.argmax(-1))
    assert np.mean(agree) >= 0.8


def test_fused_step_is_a_few_operators_per_layer(model):
    layers = model.config.text_config.num_hidden_layers
    for precision in ("fp32", "int8"):
        nodes = build_fused_step(model, precision).graph.node
        assert len(nodes) <= 20 * layers + 20  # the traced step has ~80 per layer
        ops = {n.op_type for n in nodes}
        assert {"GroupQueryAttention", "RMSNormalization"} <= ops
        assert ("MatMulNBits" in ops) == (precision == "int8") and ("MatMul" in ops) == (precision == "fp32")
    with pytest.raises(ValueError, match="fused step is built for"):
        build_fused_step(model, "fp16")


@pytest.mark.parametrize("k", [INT8_BLOCK, 3 * INT8_BLOCK, 50])
def test_block_quantisation_round_trips_within_half_a_step(k):
    rng = np.random.default_rng(k)
    w = rng.normal(size=(7, k)).astype(np.float32)
    w[3] = 0.0  # an all-zero row must not divide by zero
    packed, scales, zero_points = quantize_blocks(w, INT8_BLOCK)
    blocks = -(-k // INT8_BLOCK)
    assert packed.shape == (7, blocks, INT8_BLOCK) and packed.dtype == np.uint8
    assert scales.shape == zero_points.shape == (7 * blocks,) and (zero_points == 128).all()
    back = dequantize_blocks(packed, scales, k)
    step = np.repeat(scales.reshape(7, blocks), INT8_BLOCK, axis=1)[:, :k]
    assert np.all(np.abs(back - w) <= step / 2 + 1e-7)
    assert np.array_equal(back[3], np.zeros(k, np.float32))


def test_int8_blocks_are_laid_out_as_matmulnbits_reads_them():
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    k, n = 80, 24  # k not a multiple of the block: the last block is padded
    w = rng.normal(size=(n, k)).astype(np.float32)
    bias = rng.normal(size=n).astype(np.float32)
    packed, scales, zero_points = quantize_blocks(w, INT8_BLOCK)
    inits = [numpy_helper.from_array(a, name) for a, name in
             ((packed, "b"), (scales, "scales"), (zero_points, "zp"), (bias, "bias"))]
    # accuracy_level 0 multiplies in fp32: the product is exactly x @ dequantised weight
    node = helper.make_node("MatMulNBits", ["x", "b", "scales", "zp", "", "bias"], ["y"], domain="com.microsoft",
                            K=k, N=n, bits=8, block_size=INT8_BLOCK, accuracy_level=0)
    graph = helper.make_graph([node], "one", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, k])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, n])], initializer=inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)])
    proto.ir_version = 10
    x = rng.normal(size=(3, k)).astype(np.float32)
    got = _session(proto).run(None, {"x": x})[0]
    assert np.abs(got - (x @ dequantize_blocks(packed, scales, k).T + bias)).max() < 1e-4


def test_fused_step_matches_torch_at_the_last_position(model, bundled_onnx):
    # the rotary table's last row, where float rounding of the angles is largest
    import onnx

    text = model.config.text_config
    limit = text.max_position_embeddings
    gen = torch.Generator().manual_seed(3)
    head_dim = text.hidden_size // text.num_attention_heads
    shape = (text.num_hidden_layers, 1, text.num_key_value_heads, limit - 1, head_dim)
    args = (torch.tensor([[7]]), torch.randn(shape, generator=gen), torch.randn(shape, generator=gen),
            torch.ones(1, limit - 1, dtype=torch.bool))
    with torch.no_grad():
        expected = build_graphs(model)["step"](*args)
    stepper = _stepper(model, onnx.load(str(bundled_onnx / "step.onnx")))
    got = _outputs(*stepper.step(args[0].numpy(), DecoderState(*(a.numpy() for a in args[1:]))))
    assert stepper.capacity == limit
    for g, e in zip(got[:3], expected[:3]):
        assert np.abs(g - e.numpy()).max() < 1e-4


def test_onnxruntime_backend_refuses_a_cache_past_the_rotary_table(bundled_onnx):
    from migr_rt.backends.base import DecoderState
    from migr_rt.backends.onnxruntime_backend import OnnxRuntimeBackend

    backend = OnnxRuntimeBackend(bundled_onnx)
    limit = backend.config.text_config.max_position_embeddings
    assert backend.max_positions == limit
    text = backend.config.text_config
    shape = (text.num_hidden_layers, 1, text.num_key_value_heads, limit, text.hidden_size // text.num_attention_heads)
    state = DecoderState(np.zeros(shape, np.float32), np.zeros(shape, np.float32), np.ones((1, limit), bool))
    with pytest.raises(ValueError, match=f"cache holds {limit} tokens.*max_position_embeddings={limit}"):
        backend.step(torch.tensor([5]), state)


def test_a_view_of_the_buffers_that_is_not_a_state_handed_out_is_copied_in(model):
    # views with the buffers as their base but not a prefix of them (the batch reversed, the oldest key dropped)
    # are other states: continuing them in place would attend over the wrong rows
    stepper = _stepper(model, build_fused_step(model, "fp32"))
    feeds, _ = _steps(model, 2, steps=1, hide_audio=False)
    token = np.array([[3], [4]])
    _, state = stepper.step(feeds[0]["token"], DecoderState(feeds[0]["keys"], feeds[0]["values"],
                                                            feeds[0]["key_visible"]))
    reversed_rows = DecoderState(state.keys[:, ::-1], state.values[:, ::-1], state.key_visible[::-1])
    dropped = DecoderState(state.keys[:, :, :, 1:], state.values[:, :, :, 1:], state.key_visible[:, 1:])
    step = build_graphs(model)["step"]
    for other in (reversed_rows, dropped):
        args = [torch.from_numpy(np.array(a)) for a in (token, other.keys, other.values, other.key_visible)]
        with torch.no_grad():
            expected = [o.numpy() for o in step(*args)]
        for g, e in zip(_outputs(*stepper.step(token, other)), expected):
            assert np.array_equal(g, e) if e.dtype == np.bool_ else np.abs(g - e).max() < 1e-4


def test_a_state_that_does_not_fit_is_refused_naming_what(model):
    stepper = _stepper(model, build_fused_step(model, "fp32"))
    keys, values, visible = (np.asarray(a) for a in example_inputs(model, 2, seed=1)["step"][1:])
    token = np.array([[3], [4]])
    with pytest.raises(ValueError, match=r"key mask \(1, 25\)"):  # one row's mask for two rows: not broadcast
        stepper.step(token, DecoderState(keys, values, visible[:1]))
    with pytest.raises(ValueError, match=r"keys \(4, 2, 1, 25, 32\).*2 KV heads of 32"):
        stepper.step(token, DecoderState(keys[:, :, :1], values[:, :, :1], visible))
    with pytest.raises(ValueError, match="do not fit 1 token"):
        stepper.step(token[:1], DecoderState(keys, values, visible))


def test_two_threads_decoding_at_once_each_get_their_own_rationale(model):
    # a Predictor shared by a server's workers: one decoder, two rationales stepping in turns
    stepper = _stepper(model, build_fused_step(model, "fp32"))
    starts = []
    for seed in (1, 2):
        args = example_inputs(model, 1, seed=seed)["step"]
        starts.append((args[0].numpy(), DecoderState(*(a.numpy() for a in args[1:]))))

    def decode(token, state, steps: int = 24) -> list[int]:
        out = []
        for _ in range(steps):
            logits, state = stepper.step(token, state)
            token = logits.argmax(-1)
            out.append(int(token[0]))
        return out

    expected = [decode(*start) for start in starts]
    assert expected[0] != expected[1]
    for _ in range(3):
        assert at_once(lambda i: decode(*starts[i])) == expected
