"""The decoder step as a hand-built ONNX graph of fused operators, from the checkpoint's weights.

Tracing :class:`migr_rt.model.graphs.StepGraph` gives ~80 operators per
layer (RMSNorm as pow/mean/sqrt/reciprocal/mul, rotary as slices, concats
and negations, attention as reshapes, transposes, expands and two matmuls).
At batch 1 a step of a small decoder is bound by the cost of launching
operators and of moving bytes, not by arithmetic, so this module writes the
same step with fused operators instead: opset 23 ``RMSNormalization``, one
packed QKV and one packed gate/up projection per layer, and onnxruntime's
``GroupQueryAttention`` (rotary, grouped KV heads, a key mask as an additive
bias): ~12 operators per layer, ~60 in all for the bundled model. ``int8``
stores every projection as an 8-bit ``MatMulNBits`` (per-block scales, int8
compute), one operator each instead of the five dynamic quantisation inserts.

**The KV cache stays in place.** A functional step (the traced one, and
this module's before) takes the cache in and hands back a copy one token
longer: every token copies the whole cache two or three times, and those
copies push the weights out of the core's L2 (the bundled int8 decoder's
2 MB about fill it), which cost ~20% of a step on a Xeon. This step's
cache is one fixed buffer per layer (``past_key_<i>``/``past_value_<i>``,
``(B, kv_heads, capacity, head_dim)``) that the caller binds as both the
input and the output (``present_*``) of ``GroupQueryAttention``: the node
writes the new token's key and value into row ``position`` and reads rows
``< position + 1``. ``key_visible`` is a ``(B, capacity)`` buffer too (the
caller sets column ``position``). :mod:`migr_rt.backends.static_cache` drives
it; its inputs and outputs are therefore not the traced step's
(``GRAPH_IO["step"]``), and the backend tells the two apart by their names.

Needs onnx >= 1.18 and onnxruntime >= 1.23.1 (opset 23; see
``FUSED_STEP_ONNXRUNTIME`` in the backend). Weights are stored
inline, so decoders whose step weights approach protobuf's 2 GB limit keep
the traced step (see :data:`MAX_INLINE_BYTES`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from migr_rt.model import MigrForEmotionReasoning
from migr_rt.model.graphs import KVDecoder

OPSET = 23
#: Weights per quantisation block of the int8 projections (one fp32 scale each).
INT8_BLOCK = 32
#: Precisions this builder writes (fp16 keeps the traced step: it is a GPU precision).
PRECISIONS = ("fp32", "int8")
#: Larger step weights (fp32 bytes, tied tables counted twice as stored) keep the traced step.
MAX_INLINE_BYTES = 1_500_000_000
#: onnxruntime's GroupQueryAttention refuses other head sizes at run time ("head_size shall be a multiple of 16"):
#: decoders whose head_dim is not a multiple keep the traced step (see :func:`unfused_reason`).
GQA_HEAD_DIM_MULTIPLE = 16
#: ONNX IR version of the graph: opset 23 came with IR 11 (onnxruntime >= 1.23 reads it).
IR_VERSION = 11
#: The step's inputs besides the per-layer caches (:func:`cache_names`), and its one other output.
STATIC_INPUTS = ("token", "position", "key_visible")
STATIC_OUTPUTS = ("logits",)


def cache_names(layers: int) -> tuple[list[str], list[str]]:
    """The per-layer cache inputs and outputs of the step: ``past_key_0, past_value_0, ...`` and ``present_...``;
    a caller binds each ``present_*`` to the same buffer as its ``past_*``."""
    past = [f"past_{kind}_{i}" for i in range(layers) for kind in ("key", "value")]
    return past, [name.replace("past_", "present_", 1) for name in past]


def _head_dim(text) -> int:
    return getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads


def unfused_reason(model: MigrForEmotionReasoning) -> str | None:
    """Why :func:`build_fused_step` cannot write ``model``'s step (the export traces it instead), or None."""
    head_dim = _head_dim(model.config.text_config)
    if head_dim % GQA_HEAD_DIM_MULTIPLE:
        return f"head_dim {head_dim}: GroupQueryAttention needs a multiple of {GQA_HEAD_DIM_MULTIPLE}"
    if step_weight_bytes(model) >= MAX_INLINE_BYTES:
        return f"decoder over the fused step's {MAX_INLINE_BYTES / 1e9:g} GB inline limit"
    return None


class _Graph:
    """Nodes and initializers being collected, with unique names."""

    def __init__(self, precision: str) -> None:
        self.nodes: list = []
        self.inits: list = []
        self.precision = precision
        self._count = 0

    def name(self, stem: str) -> str:
        self._count += 1
        return f"{stem}_{self._count}"

    def const(self, stem: str, array: np.ndarray) -> str:
        from onnx import numpy_helper

        name = self.name(stem)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def op(self, op_type: str, inputs: list[str], outputs: int | list[str] = 1, *, domain: str = "",
           **attrs) -> list[str]:
        from onnx import helper

        names = outputs if isinstance(outputs, list) else [self.name(op_type.lower()) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op_type, inputs, names, name=self.name(op_type), domain=domain, **attrs))
        return names

    def linear(self, x: str, weight: torch.Tensor, bias: torch.Tensor | None, stem: str) -> str:
        """``x @ weight.T + bias`` for a torch ``(out, in)`` weight: MatMul(+Add), or one 8-bit MatMulNBits."""
        w = _array(weight)
        b = None if bias is None else _array(bias)
        if self.precision == "int8":
            packed, scales, zero_points = quantize_blocks(w, INT8_BLOCK)
            n, k = w.shape
            inputs = [x, self.const(f"{stem}.q", packed), self.const(f"{stem}.scales", scales),
                      self.const(f"{stem}.zero_points", zero_points)]
            if b is not None:  # inputs 4 (g_idx) is left out, 5 is the bias
                inputs += ["", self.const(f"{stem}.bias", b)]
            # accuracy_level 4: int8 activations x int8 weights (the fast CPU kernel; level 0 is fp32 and 15x slower)
            return self.op("MatMulNBits", inputs, domain="com.microsoft", K=k, N=n, bits=8, block_size=INT8_BLOCK,
                           accuracy_level=4)[0]
        y = self.op("MatMul", [x, self.const(f"{stem}.weight", w.T)])[0]
        return y if b is None else self.op("Add", [y, self.const(f"{stem}.bias", b)])[0]


def quantize_blocks(weight: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(N, K)`` fp32 weight -> MatMulNBits 8-bit data: ``(N, blocks, block)`` uint8, scales, zero points.

    Symmetric per block of ``block`` inputs (zero point 128); ``K`` is padded
    with zeros to whole blocks.
    """
    n, k = weight.shape
    blocks = -(-k // block)
    padded = np.zeros((n, blocks * block), np.float32)
    padded[:, :k] = weight
    grouped = padded.reshape(n, blocks, block)
    scales = np.abs(grouped).max(axis=-1) / 127.0
    scales = np.where(scales > 0, scales, 1.0).astype(np.float32)
    q = np.clip(np.rint(grouped / scales[..., None]), -127, 127).astype(np.int16) + 128
    return q.astype(np.uint8), scales.reshape(-1), np.full(n * blocks, 128, np.uint8)


def dequantize_blocks(packed: np.ndarray, scales: np.ndarray, k: int) -> np.ndarray:
    """The ``(N, K)`` weight that :func:`quantize_blocks` data stands for (what an int8 projection multiplies by)."""
    n, blocks, block = packed.shape
    w = (packed.astype(np.float32) - 128.0) * scales.reshape(n, blocks, 1)
    return w.reshape(n, blocks * block)[:, :k]


def build_fused_step(model: MigrForEmotionReasoning, precision: str = "fp32"):
    """The step graph (an ``onnx.ModelProto``) of ``model``'s decoder at ``precision``."""
    import onnx
    from onnx import TensorProto, helper

    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: the fused step is built for {PRECISIONS}")
    text = model.config.text_config
    decoder = model.decoder
    layers = decoder.model.layers
    heads, kv_heads = text.num_attention_heads, text.num_key_value_heads
    head_dim = _head_dim(text)
    if head_dim % GQA_HEAD_DIM_MULTIPLE:
        raise ValueError(f"head_dim {head_dim}: the fused step's GroupQueryAttention needs a multiple of "
                         f"{GQA_HEAD_DIM_MULTIPLE} (export the traced step: fused_step=False)")
    rope = getattr(text, "rope_parameters", None) or {}
    if rope.get("rope_type", "default") != "default":
        raise ValueError(f"rope type {rope.get('rope_type')!r} is not supported by the fused step")
    max_positions = int(text.max_position_embeddings)
    n_layers = len(layers)
    g = _Graph(precision)

    # the rotary angles computed exactly as KVDecoder._rope does (float32), one row per position
    with torch.no_grad():
        inv_freq = KVDecoder(model).inv_freq.float().cpu()
        angles = torch.arange(max_positions, dtype=torch.float32)[:, None] * inv_freq[None, :]
    cos = g.const("rope.cos", angles.cos().numpy())
    sin = g.const("rope.sin", angles.sin().numpy())
    embed = _array(decoder.model.embed_tokens.weight)

    # the cache holds `position` tokens; the new one's key is always visible (the caller sets that column)
    total = g.op("Add", ["position", g.const("one", np.array([1], np.int64))])[0]
    visible = g.op("Slice", ["key_visible", g.const("zero", np.array([0], np.int64)), total,
                             g.const("axes.1", np.array([1], np.int64))])[0]
    bias = g.op("Where", [visible, g.const("bias.visible", np.array(0.0, np.float32)),
                          g.const("bias.hidden", np.array(-np.inf, np.float32))])[0]
    bias = g.op("Unsqueeze", [bias, g.const("axes.1_2", np.array([1, 2], np.int64))])[0]  # (B, 1, 1, total)
    # GroupQueryAttention's lengths: every row has `position` cached tokens (hidden ones are masked, not shorter)
    seqlens = g.op("Expand", [g.op("Cast", ["position"], to=TensorProto.INT32)[0],
                              g.op("Shape", ["token"], start=0, end=1)[0]])[0]
    total = g.op("Squeeze", [g.op("Cast", [total], to=TensorProto.INT32)[0]])[0]
    x = g.op("Gather", [g.const("embed_tokens", embed), "token"])[0]  # (B, 1, H)
    past_names, present_names = cache_names(n_layers)
    eps = float(text.rms_norm_eps)
    for i, layer in enumerate(layers):
        attn, mlp = layer.self_attn, layer.mlp
        h = g.op("RMSNormalization", [x, g.const(f"l{i}.ln1", _array(layer.input_layernorm.weight))],
                 epsilon=eps, axis=-1)[0]
        qkv_w = torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight])
        qkv_b = torch.cat([attn.q_proj.bias, attn.k_proj.bias, attn.v_proj.bias]) if attn.q_proj.bias is not None \
            else None
        qkv = g.linear(h, qkv_w, qkv_b, f"l{i}.qkv")  # packed: GroupQueryAttention splits it
        out = g.op("GroupQueryAttention",
                   [qkv, "", "", past_names[2 * i], past_names[2 * i + 1], seqlens, total, cos, sin, "", bias],
                   [g.name("attention"), present_names[2 * i], present_names[2 * i + 1]], domain="com.microsoft",
                   num_heads=heads, kv_num_heads=kv_heads, do_rotary=1, scale=float(head_dim) ** -0.5)[0]
        x = g.op("Add", [x, g.linear(out, attn.o_proj.weight, attn.o_proj.bias, f"l{i}.o")])[0]
        h = g.op("RMSNormalization", [x, g.const(f"l{i}.ln2", _array(layer.post_attention_layernorm.weight))],
                 epsilon=eps, axis=-1)[0]
        gate_up = g.linear(h, torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight]), None, f"l{i}.gate_up")
        gate, up = g.op("Split", [gate_up], 2, axis=-1, num_outputs=2)
        silu = g.op("QuickGelu", [gate], domain="com.microsoft", alpha=1.0)[0]  # x * sigmoid(1.0 * x)
        x = g.op("Add", [x, g.linear(g.op("Mul", [silu, up])[0], mlp.down_proj.weight, mlp.down_proj.bias,
                                     f"l{i}.down")])[0]
    h = g.op("RMSNormalization", [x, g.const("norm", _array(decoder.model.norm.weight))], epsilon=eps, axis=-1)[0]
    logits = g.linear(h, decoder.lm_head.weight, getattr(decoder.lm_head, "bias", None), "lm_head")
    g.op("Squeeze", [logits, g.const("axes.1", np.array([1], np.int64))], ["logits"])

    vocab = int(embed.shape[0])
    cache = ["batch", kv_heads, "capacity", head_dim]
    graph = helper.make_graph(
        g.nodes, "migr_rt_fused_step",
        [helper.make_tensor_value_info("token", TensorProto.INT64, ["batch", 1]),
         helper.make_tensor_value_info("position", TensorProto.INT64, [1]),
         helper.make_tensor_value_info("key_visible", TensorProto.BOOL, ["batch", "capacity"])]
        + [helper.make_tensor_value_info(name, TensorProto.FLOAT, cache) for name in past_names],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", vocab])]
        + [helper.make_tensor_value_info(name, TensorProto.FLOAT, cache) for name in present_names],
        initializer=g.inits,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET),
                                                    helper.make_opsetid("com.microsoft", 1)],
                              producer_name="migr-rt fused step")
    proto.ir_version = IR_VERSION
    onnx.checker.check_model(proto)
    return proto


def _array(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy()


def step_weight_bytes(model: MigrForEmotionReasoning) -> int:
    """fp32 bytes the fused step stores: the decoder's parameters, a tied embedding/LM head twice."""
    decoder = model.decoder
    total = sum(p.numel() for p in decoder.parameters()) * 4
    if decoder.lm_head.weight.data_ptr() == decoder.model.embed_tokens.weight.data_ptr():
        total += decoder.lm_head.weight.numel() * 4
    return int(total)


def save_fused_step(model: MigrForEmotionReasoning, path: Path, precision: str) -> None:
    import onnx

    onnx.save(build_fused_step(model, precision), str(path))
