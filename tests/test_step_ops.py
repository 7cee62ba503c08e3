"""benchmarks/step_ops.py times each operator of the decoder step alone: each alone must compute what it does inside."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from benchmark_scripts import load_benchmark

from migr_rt.backends.base import DecoderState
from migr_rt.backends.static_cache import StaticCacheStep
from migr_rt.export.fused_step import build_fused_step
from migr_rt.export.onnx_export import example_inputs
from migr_rt.model import load_checkpoint
from migr_rt.bundled import default_checkpoint


@pytest.fixture(scope="module")
def step_ops():
    return load_benchmark("step_ops")


@pytest.fixture(scope="module")
def model():
    return load_checkpoint(default_checkpoint())[0].float().eval()


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_every_operator_alone_reproduces_its_value_inside_the_step(step_ops, model, precision):
    proto = build_fused_step(model, precision)
    token, keys, values, visible = example_inputs(model, 2, seed=3)["step"]
    visible = visible.clone()
    visible[1, 2:5] = False  # a hidden stretch of cache: the mask must reach the attention operators as it does inside
    text = model.config.text_config
    stepper = StaticCacheStep(step_ops._session(proto, 1), text.num_hidden_layers, text.max_position_embeddings)
    bound_logits, _ = stepper.step(token.numpy(), DecoderState(keys.numpy(), values.numpy(), visible.numpy()))
    feeds = stepper.graph_feeds()  # the buffers after the step: its new rows are rewritten alike by a plain run
    captured = step_ops.capture(proto, feeds)
    nodes = list(proto.graph.node)
    runs = step_ops.operator_runs(proto, captured)
    assert len(runs) == len(nodes) > 40
    for node, (session, fed) in zip(nodes, runs):
        assert set(fed) <= set(captured) and all(i in fed or i in {t.name for t in proto.graph.initializer}
                                                 for i in node.input if i)
        for name, out in zip([o for o in node.output if o], session.run(None, fed)):
            assert out.dtype == captured[name].dtype and out.shape == captured[name].shape, (node.op_type, name)
            np.testing.assert_allclose(out, captured[name], rtol=0, atol=1e-6, err_msg=f"{node.op_type} {name}")
    # the captured graph outputs are the step's own, and a plain run (each cache copied to a new output) computes
    # what the in-place one did
    whole = step_ops._session(proto, 1).run(None, feeds)
    for out, expected in zip(proto.graph.output, whole):
        np.testing.assert_array_equal(captured[out.name], expected)
    np.testing.assert_allclose(captured["logits"], bound_logits, rtol=0, atol=1e-5)
    n = keys.shape[3] + 1
    np.testing.assert_allclose(captured["present_key_1"][:, :, :n], stepper.keys[1][:, :, :n], rtol=0, atol=1e-6)
    assert torch.isfinite(torch.from_numpy(captured["logits"])).all()
