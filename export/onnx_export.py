"""Checkpoint -> ONNX artifact folder: six graphs, optimised, parity-checked, described by a manifest.

The graphs are the modules of :mod:`migr_rt.model.graphs`, traced with
``torch.onnx.export(dynamo=True)`` with dynamic batch (and frame, sequence,
cache-length) axes, then passed through onnxruntime's graph optimisations
(the portable ``EXTENDED`` level) and saved optimised. Precision ``fp16``
converts weights and activations to half while keeping fp32 inputs/outputs
(the audio front end stays fp32: spectral power overflows half);
``int8`` is onnxruntime's dynamic quantisation of the fp32 graphs (int8
weights of MatMul/Gemm, activations quantised on the fly), for CPUs. Its
weights span 7 bits (see :data:`INT8_WEIGHT_BITS`).

The decoder step, run once per rationale token, is not traced at ``fp32``
and ``int8``: :mod:`migr_rt.export.fused_step` writes it from the weights
with fused operators (~60 instead of ~320-420 nodes; int8 as 8-bit
``MatMulNBits``), since a small decoder's step costs per operator, not per
byte. Its KV cache stays in place, so its inputs and outputs are not the
traced step's (the backend tells them apart); it passes the same checks,
through the backend. Decoders it cannot write keep the traced step
(:func:`~migr_rt.export.fused_step.unfused_reason`).

Before the folder is published (atomically), every graph is run through
onnxruntime and compared with torch on fresh inputs of another batch size
than the one traced, and greedy decoding of a rationale must produce the
same tokens; the differences go into the manifest.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from migr_rt.artifact import (
    ARTIFACT, FORMAT_VERSION, MANIFEST, ArtifactError, GraphSpec, Manifest, TensorSpec, sha256_of,
)
from migr_rt.atomic import staged_folder, write_text_atomic
from migr_rt.backends.integer_matmul import INT8_WEIGHT_BITS
from migr_rt.export.fused_step import save_fused_step, unfused_reason
from migr_rt.export.fused_step import OPSET as FUSED_OPSET
from migr_rt.export.fused_step import PRECISIONS as FUSED_PRECISIONS
from migr_rt.model import MigrForEmotionReasoning, load_checkpoint
from migr_rt.model.graphs import build_graphs
from migr_rt.model.layout import prefix_ids
from migr_rt.training.lexicon import stored_lexicon

logger = logging.getLogger(__name__)

OPSET = 18
#: Largest |onnxruntime - torch| accepted per precision, on log-probs, logits, MI, tokens and cache.
TOLERANCE = {"fp32": 1e-4, "fp16": 5e-2, "int8": None}  # int8: measured and recorded, judged by accuracy
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
#: How the manifest's ``step_graph`` starts for today's fused step (the in-place KV cache).
STEP_GRAPH_FUSED = "fused, in-place cache"
GRAPH_IO: dict[str, tuple[list[str], list[str]]] = {
    "visual_frames": (["frames"], ["frame_embeddings"]),
    "visual_pool": (["frame_embeddings"], ["visual_tokens"]),
    "audio": (["waveform"], ["audio_tokens"]),
    "scoring": (["visual_tokens", "audio_tokens", "present"], ["log_probs", "mi", "importance", "dominant"]),
    "prefill": (["input_ids", "visual_tokens", "audio_tokens", "modality_visible"],
                ["logits", "keys", "values", "key_visible"]),
    "step": (["token", "keys", "values", "key_visible"], ["logits", "keys_out", "values_out", "key_visible_out"]),
}


def example_inputs(model: MigrForEmotionReasoning, batch: int, seed: int = 0) -> dict[str, tuple[torch.Tensor, ...]]:
    """Inputs of every graph for ``batch`` windows (the step's from a real prefill, so the cache is genuine)."""
    cfg = model.config
    gen = torch.Generator().manual_seed(seed)
    hidden = cfg.text_config.hidden_size
    frames = torch.rand(batch * cfg.num_frames, 3, cfg.face_size, cfg.face_size, generator=gen)
    waveform = 0.1 * torch.randn(batch, int(round(cfg.sample_rate * cfg.audio_seconds)), generator=gen)
    visual = torch.randn(batch, cfg.num_visual_tokens, hidden, generator=gen)
    audio = torch.randn(batch, cfg.num_audio_tokens, hidden, generator=gen)
    present = torch.ones(batch, cfg.num_modalities, dtype=torch.bool)
    present[1::3, 0] = False  # some rows without a face, some without audio
    present[2::3, 1] = False
    ids = torch.tensor([prefix_ids(cfg) + [cfg.special_token_ids["think_start"]]] * batch)
    graphs = build_graphs(model)
    with torch.no_grad():
        _, keys, values, key_visible = graphs["prefill"](ids, visual, audio, present)
    token = torch.randint(0, min(cfg.special_token_ids.values()), (batch, 1), generator=gen)
    return {
        "visual_frames": (frames,),
        "visual_pool": (torch.randn(batch, cfg.num_frames, cfg.visual_dim, generator=gen),),
        "audio": (waveform,),
        "scoring": (visual, audio, present),
        "prefill": (ids, visual, audio, present),
        "step": (token, keys, values, key_visible),
    }


def _dynamic_shapes(name: str):
    from torch.export import Dim

    batch = Dim("batch", min=1, max=1024)
    if name == "visual_frames":
        return {"frames": {0: Dim("frames", min=1, max=65536)}}
    if name in ("visual_pool", "audio"):
        return [{0: batch}]
    if name == "scoring":
        return {"visual_tokens": {0: batch}, "audio_tokens": {0: batch}, "present": {0: batch}}
    if name == "prefill":
        seq = Dim("seq", min=2, max=4096)
        return {"input_ids": {0: batch, 1: seq}, "visual_tokens": {0: batch}, "audio_tokens": {0: batch},
                "modality_visible": {0: batch}}
    past = Dim("past", min=1, max=4096)
    return {"token": {0: batch}, "keys": {1: batch, 3: past}, "values": {1: batch, 3: past},
            "key_visible": {0: batch, 1: past}}


def _tensor_specs(model_path: Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    import onnx
    from onnx import helper

    graph = onnx.load(str(model_path), load_external_data=False).graph

    def spec(v) -> TensorSpec:
        t = v.type.tensor_type
        dims = [d.dim_param if d.dim_param else int(d.dim_value) for d in t.shape.dim]
        return TensorSpec(v.name, str(helper.tensor_dtype_to_np_dtype(t.elem_type)), dims)

    inits = {i.name for i in graph.initializer}
    return [spec(v) for v in graph.input if v.name not in inits], [spec(v) for v in graph.output]


def _optimise(src: Path, dst: Path) -> None:
    import onnxruntime as ort

    options = ort.SessionOptions()
    # EXTENDED, not ALL: ALL adds layout transforms tied to this CPU, and the artifact must run elsewhere.
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(dst)
    options.log_severity_level = 3
    ort.InferenceSession(str(src), options, providers=["CPUExecutionProvider"])


def to_fp16(src: Path, dst: Path, fp32_ops: tuple[str, ...] = ("IsInf", "IsNaN")) -> None:
    """``src`` converted to fp16 with fp32 inputs/outputs; ``fp32_ops`` stay fp32 behind casts (by default
    IsInf/IsNaN, which have no half kernels in onnxruntime; the TensorRT export keeps its reductions too)."""
    import onnx
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    model = onnx.load(str(src))
    model = convert_float_to_float16(model, keep_io_types=True, op_block_list=[*DEFAULT_OP_BLOCK_LIST, *fp32_ops])
    _dedupe_casts(model.graph)
    _unique_node_names(model.graph)
    topological_sort(model.graph)  # the converter appends its input casts after their consumers
    onnx.save(model, str(dst))


def _unique_node_names(graph) -> None:
    """Give every node a unique name: onnxruntime refuses a graph with two nodes of one name, and what writes
    our graphs does not promise unique ones (onnxruntime 1.30's fp16 converter names each Cast it inserts after
    the value it casts, ``<value>_cast_to_fp32_node``, whatever else already has that name)."""
    seen: set[str] = set()
    for i, node in enumerate(graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.name or node.op_type}_{i}"
        seen.add(node.name)


def untie_weights(graph, ops: tuple[str, ...] = ("MatMul", "Gemm")) -> int:
    """Give the ``ops`` readers of an initializer that other nodes read too one copy of their own (shared
    among them); returns the copies made.

    A tied LM head is one initializer read by the embedding's Gather and the head's Gemm (torch 2.11 exports it
    so). The quantizer rewrites a Gemm's weight in place (transposed and quantized), which would hand the
    Gather a (hidden, vocab) table: untied first, each keeps the layout it reads."""
    from onnx import numpy_helper

    initializers = {i.name: i for i in graph.initializer}
    readers: dict[str, list] = {}
    for node in graph.node:
        for name in set(node.input):
            if name in initializers:
                readers.setdefault(name, []).append(node)
    taken = set(initializers) | {v for n in graph.node for v in (*n.input, *n.output)}
    copies = 0
    for name, nodes in readers.items():
        quantized = [n for n in nodes if n.op_type in ops]
        if not quantized or len(quantized) == len(nodes):  # not read by ops, or by ops alone: nothing to untie
            continue
        copy_name = next(c for c in (f"{name}.{ops[0].lower()}{k or ''}" for k in range(len(taken) + 1))
                         if c not in taken)
        taken.add(copy_name)
        graph.initializer.append(numpy_helper.from_array(numpy_helper.to_array(initializers[name]), copy_name))
        for node in quantized:
            node.input[:] = [copy_name if i == name else i for i in node.input]
        copies += 1
    return copies


def _dedupe_casts(graph) -> None:
    """Drop repeated Casts: onnxruntime 1.30's fp16 converter inserts one ``<value>_cast_to_fp32`` per blocked
    consumer of a value, so a value feeding two blocked nodes gets two Casts with one output name (invalid SSA).
    The repeats compute the same thing as the first, which every consumer reads by that name."""
    produced: dict[str, object] = {}
    kept = []
    for node in graph.node:
        first = produced.get(node.output[0]) if node.op_type == "Cast" and len(node.output) == 1 else None
        if first is not None and first.op_type == "Cast" and list(first.input) == list(node.input) \
                and first.attribute == node.attribute:
            continue
        for name in node.output:
            produced.setdefault(name, node)
        kept.append(node)
    if len(kept) != len(graph.node):
        graph.ClearField("node")
        graph.node.extend(kept)


def topological_sort(graph) -> None:
    """Reorder ``graph.node`` so every node comes after the producers of its inputs (ONNX requires it)."""
    available = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(i in available for i in n.input)]
        if not ready:
            raise ValueError(f"graph has a cycle or a dangling input near node {pending[0].name!r}")
        ready_ids = {id(n) for n in ready}
        pending = [n for n in pending if id(n) not in ready_ids]
        for n in ready:
            ordered.append(n)
            available.update(n.output)
    graph.ClearField("node")
    graph.node.extend(ordered)


def quantize_int8(src: Path, dst: Path, weight_bits: int = INT8_WEIGHT_BITS) -> None:
    """``src`` (an fp32 graph) with its MatMul/Gemm weights quantised to ``weight_bits`` (7 or 8) bits."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if weight_bits not in (7, 8):
        raise ValueError(f"weight_bits {weight_bits}: onnxruntime quantises weights to 7 or 8 bits")
    with tempfile.TemporaryDirectory(prefix=".int8-", dir=dst.parent) as tmp, no_preprocessing_advice():
        quantize_dynamic(str(untied(src, Path(tmp))), str(dst), weight_type=QuantType.QInt8,
                         op_types_to_quantize=["MatMul", "Gemm"], reduce_range=weight_bits == 7)


@contextmanager
def no_preprocessing_advice() -> Iterator[None]:
    """Drop onnxruntime's quantiser advice to pre-process graphs (root-logger warnings, per graph quantised).

    The advice is shape inference and graph optimisation, which our graphs had at export. onnxruntime words
    it two ways ("Please consider to run pre-processing before quantization", and "Please consider
    pre-processing before quantization" after static quantisation).
    """
    def keep(record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


def untied(src: Path, work: Path) -> Path:
    """``src``, or its copy in ``work`` with :func:`untie_weights` applied where it had weights to untie."""
    import onnx

    model = onnx.load(str(src))
    if not untie_weights(model.graph):
        return src
    out = work / f"{src.stem}.untied.onnx"
    onnx.save(model, str(out))
    return out


def export_graph(module: torch.nn.Module, name: str, args: tuple[torch.Tensor, ...], path: Path) -> None:
    inputs, outputs = GRAPH_IO[name]
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module, args, dynamic_shapes=_dynamic_shapes(name), input_names=inputs, output_names=outputs,
            dynamo=True, opset_version=OPSET, verbose=False, optimize=True,
        )
    program.save(str(path))
    strip_trace_notes(path)


def strip_trace_notes(path: Path) -> None:
    """Drop what tracing notes on each node (the Python stack that made it, as ``metadata_props`` and doc strings):
    tens of KB per graph naming this machine's folders, in files that are shipped (the bundled model's export)
    and that should not change with the folder they were exported from. Weights kept in an external data file (a
    graph over protobuf's 2 GB) stay there, untouched."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)

    def clean(nodes) -> None:
        for node in nodes:
            del node.metadata_props[:]
            node.doc_string = ""
            for attr in node.attribute:
                for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                    clean(sub.node)

    clean(model.graph.node)
    for function in model.functions:
        clean(function.node)
    onnx.save(model, str(path))


def _quiet_exporter_logs() -> None:
    for noisy in ("torch.onnx", "torch.export", "torch._export", "onnxscript", "torch.fx.experimental.symbolic_shapes"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


def parity_report(folder: Path, model: MigrForEmotionReasoning, batch: int = 3, greedy_steps: int = 24) -> dict[str, float]:
    """Max |onnxruntime - torch| per graph on fresh inputs, and greedy decoding agreement (1.0 = same tokens)."""
    from migr_rt.backends.base import DecoderState
    from migr_rt.backends.onnxruntime_backend import OnnxRuntimeBackend

    ort_backend = OnnxRuntimeBackend(folder, providers=["CPUExecutionProvider"])
    graphs = build_graphs(model)
    report = {}
    for name, args in example_inputs(model, batch, seed=1).items():
        with torch.no_grad():
            expected = graphs[name](*args)
        expected = expected if isinstance(expected, tuple) else (expected,)
        if name == "step":  # through the backend: the fused step's inputs are its in-place cache, not these
            logits, state = ort_backend.step(args[0].numpy(), DecoderState(*(a.numpy() for a in args[1:])))
            got = [logits, state.keys, state.values, state.key_visible]
        else:
            got = ort_backend.sessions[name].run(None, {i: a.numpy() for i, a in zip(GRAPH_IO[name][0], args)})
        pairs = [(g, e.numpy()) for g, e in zip(got, expected)]
        # Float outputs are compared by value; integer/bool ones (dominant modality, key masks) must be equal.
        report[name] = max(float(np.abs(g.astype(np.float64) - e.astype(np.float64)).max())
                           for g, e in pairs if e.dtype.kind == "f")
        exact = [bool(np.array_equal(g, e)) for g, e in pairs if e.dtype.kind != "f"]
        if exact:
            report[f"{name}_discrete_equal"] = float(all(exact))
    report["greedy_tokens_equal"] = greedy_tokens_equal(ort_backend, model, batch, greedy_steps)
    return report


def greedy_tokens_equal(backend, model: MigrForEmotionReasoning, batch: int, steps: int) -> float:
    """1.0 when ``backend`` decodes the same greedy rationales as torch on real-looking windows, else 0.0.

    The tokens, not only the logits, must agree (shared by the onnxruntime
    and TensorRT parity checks).
    """
    from migr_rt.backends.decode import greedy_decode
    from migr_rt.backends.torch_backend import TorchBackend

    cfg, args = model.config, example_inputs(model, batch, seed=2)
    frames = args["visual_frames"][0]
    results = []
    for b in (TorchBackend(model), backend):
        tokens = b.encode(frames.reshape(batch, cfg.num_frames, *frames.shape[1:]), args["audio"][0])
        results.append(greedy_decode(b, args["prefill"][0], tokens, args["prefill"][3], max_new_tokens=steps,
                                     stop_token_ids=()).tokens)
    return float(np.array_equal(results[0], results[1]))


def export_onnx(
    checkpoint: str | Path,
    out: str | Path,
    precision: str = "fp32",
    *,
    check_parity: bool = True,
    on_progress: Callable[[str], None] | None = None,
    fused_step: bool = True,
) -> Manifest:
    """Export ``checkpoint`` to an ONNX artifact folder ``out`` (replaced atomically when complete).

    ``fused_step=False`` traces the decoder step like the other graphs (as
    fp16 always does; for an onnxruntime older than 1.23.1, which cannot run
    the opset-23 step, or a consumer that only needs the traced graphs'
    inputs and outputs).
    """
    if precision not in TOLERANCE:
        raise ValueError(f"precision {precision!r}: the onnx format supports {sorted(TOLERANCE)}")
    import onnx
    import onnxruntime
    import transformers

    _quiet_exporter_logs()
    say = on_progress or (lambda _msg: None)
    checkpoint, out = Path(checkpoint), Path(out)
    model, tokenizer = load_checkpoint(checkpoint)
    lexicon = stored_lexicon(checkpoint)  # read now, checked against the checksums the load just verified
    model = model.float().eval()
    with staged_folder(out, marker=MANIFEST, what=ARTIFACT) as staging, \
            tempfile.TemporaryDirectory(prefix=f".{out.name}.work-", dir=out.parent) as tmp:
        work = Path(tmp)
        graphs = build_graphs(model)
        examples = example_inputs(model, batch=2)
        specs: dict[str, GraphSpec] = {}
        fusable = fused_step and precision in FUSED_PRECISIONS
        unfused = unfused_reason(model) if fusable else None
        fuse = fusable and unfused is None
        for i, (name, module) in enumerate(graphs.items(), 1):
            final = staging / f"{name}.onnx"
            if name == "step" and fuse:
                say(f"[{i}/{len(graphs)}] {name}: fused operators ({precision})")
                save_fused_step(model, final, precision)
                onnx.checker.check_model(str(final))
                inputs, outputs = _tensor_specs(final)
                specs[name] = GraphSpec(final.name, sha256_of(final), inputs, outputs)
                continue
            say(f"[{i}/{len(graphs)}] {name}: tracing")
            traced, optimised = work / f"{name}.traced.onnx", work / f"{name}.onnx"
            export_graph(module, name, examples[name], traced)
            _optimise(traced, optimised)
            if precision == "fp16" and name != "audio":
                to_fp16(optimised, final)
            elif precision == "int8":
                quantize_int8(optimised, final)
            else:
                shutil.copyfile(optimised, final)
            onnx.checker.check_model(str(final))
            inputs, outputs = _tensor_specs(final)
            specs[name] = GraphSpec(final.name, sha256_of(final), inputs, outputs)
        for file in TOKENIZER_FILES:
            shutil.copyfile(checkpoint / file, staging / file)
        weights = checkpoint / "model.safetensors"
        manifest = Manifest(
            format="onnx",
            precision=precision,
            graphs=specs,
            model_config=model.config.to_dict(),
            source_checkpoint={"path": _source_path(checkpoint, out), "sha256": sha256_of(weights)},
            tools={"migr_rt": _version(), "torch": torch.__version__, "onnx": onnx.__version__,
                   "onnxruntime": onnxruntime.__version__, "transformers": transformers.__version__},
            opset=OPSET,
            tokenizer_files=list(TOKENIZER_FILES),
            extra={"fp32_graphs": ["audio"] if precision == "fp16" else [],
                   "step_graph": _step_graph(fused_step, precision, unfused),
                   "tolerance": TOLERANCE[precision], "recipe": _recipe_of(checkpoint),
                   "lexicon": lexicon.to_dict(),  # the runtime judges with the same words
                   **({"int8_weight_bits": INT8_WEIGHT_BITS} if precision == "int8" else {})},
            format_version=FORMAT_VERSION,
        )
        write_text_atomic(staging / MANIFEST, manifest.to_json())
        if check_parity:
            say("parity: onnxruntime vs torch on fresh inputs")
            report = parity_report(staging, model)
            limit = TOLERANCE[precision]
            worst = {k: v for k, v in report.items() if k in specs}
            agree = all(v == 1.0 for k, v in report.items() if k not in specs)
            if limit is not None and (max(worst.values()) > limit or (precision == "fp32" and not agree)):
                raise ArtifactError(f"{out}: parity check failed for {precision} (limit {limit}): {report}")
            manifest = Manifest(**{**manifest.__dict__, "parity": report})
            write_text_atomic(staging / MANIFEST, manifest.to_json())
    say(f"wrote {out}")
    return manifest


def _step_graph(fused_step: bool, precision: str, unfused: str | None) -> str:
    """The manifest's ``step_graph``: how the step was written and, where it could have been fused, why not
    (``unfused``: :func:`~migr_rt.export.fused_step.unfused_reason`)."""
    if precision not in FUSED_PRECISIONS:
        return "traced"
    if not fused_step:
        return "traced (fused_step=False)"
    return f"traced ({unfused})" if unfused else f"{STEP_GRAPH_FUSED} (opset {FUSED_OPSET} + com.microsoft)"


def is_current_export(manifest: Manifest, weights_sha256: str, precision: str) -> bool:
    """Whether ``manifest`` is an ONNX export of these weights at ``precision`` as :func:`export_onnx` writes it now.

    Benchmarks reuse an export while this holds: one written before the fused decoder step (a bare
    ``"traced"`` step at a precision that fuses), before its in-place cache (``"fused (opset 23 ...)"``) or before
    7-bit int8 weights is not what a user exporting today would run.
    """
    step = str(manifest.extra.get("step_graph", "traced"))
    step_current = (step.startswith((STEP_GRAPH_FUSED, "traced (")) if precision in FUSED_PRECISIONS
                    else step == "traced")
    return (manifest.format == "onnx" and manifest.precision == precision
            and manifest.source_checkpoint.get("sha256") == weights_sha256 and step_current
            and (precision != "int8" or manifest.extra.get("int8_weight_bits") == INT8_WEIGHT_BITS))


def _source_path(checkpoint: Path, out: str | Path) -> str:
    """The checkpoint's folder as the manifest records it: relative to the artifact when the two are siblings (the
    bundled model and its export in ``migr_rt/assets``, so the shipped manifest names no build machine's folders),
    else absolute."""
    source, artifact = Path(checkpoint).resolve(), Path(out).resolve()
    return os.path.relpath(source, artifact) if source.parent == artifact.parent else str(source)


def _recipe_of(checkpoint: Path) -> str | None:
    info = checkpoint / "train_config.json"
    return json.loads(info.read_text()).get("recipe") if info.is_file() else None


def _version() -> str:
    from migr_rt import __version__

    return __version__
