"""Where one decoding step's time goes: the onnxruntime fused step, operator by operator, on this CPU.

    python benchmarks/step_ops.py                     # fp32 and int8 artifacts of the bundled model
    python benchmarks/step_ops.py --precisions int8 --out /tmp/step_ops

``migr-rt bench`` compares the per-token step with the DRAM bound (weight
bytes / copy bandwidth). The bundled decoder's weights (2 MB in int8) sit in
the last-level cache, so that bound is not what a step waits for; this
script shows what it does wait for, in four nested figures:

* ``backend.step``: what ``migr-rt bench`` times (the Python wrapper too);
* ``session.run``: the step graph alone, on its bound buffers (the in-place
  cache of :mod:`migr_rt.backends.static_cache`);
* the sum of its operators, each timed alone in a one-node graph fed the
  exact tensors it sees inside the step (captured by one run with every
  intermediate exposed);
* onnxruntime's dispatch floor: a chain of 100 ``Relu`` on a 192-vector,
  per operator.

The cache holds ``--cache-length`` positions of random values (these
operators' timings do not depend on the values), all visible. Timing: the
host's speed drifts by tens of percent within minutes, more than a
microsecond operator's whole cost, so an operator (and the wrapper, and the
floor) is timed in back-to-back pairs with an empty graph's run and the
median difference kept (:func:`median_us`); ``--rounds`` rounds over all of
them, median of the rounds. The two whole-step figures are medians of
consecutive calls, per round, median of the rounds.
Writes ``<name>.json`` and ``.md`` to ``--out`` (``--name``, default ``step_ops_cpu``).
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from collections import defaultdict
from pathlib import Path

import click
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info  # noqa: E402

from migr_rt.atomic import write_text_atomic  # noqa: E402
from migr_rt.backends import load_backend  # noqa: E402
from migr_rt.backends.base import DecoderState  # noqa: E402
from migr_rt.perf.bench import ensure_artifact  # noqa: E402
from migr_rt.bundled import default_checkpoint  # noqa: E402

#: Untimed calls before each timing block.
SETTLE_CALLS = 300
#: Outputs of these operators have a fixed element type; every other operator's follow its first input.
FIXED_TYPES = {"Shape": "int64", "Size": "int64", "Equal": "bool", "Less": "bool", "Greater": "bool", "Not": "bool"}
#: Operators whose outputs follow another input than their first (``Where``: its condition is bool, X is not).
TYPE_FROM_INPUT = {"Where": 1}


def _types(model) -> dict[str, np.dtype]:
    """numpy dtype of every value in the step graph (inputs, initializers, node outputs)."""
    from onnx import helper

    types = {i.name: helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type) for i in model.graph.input}
    types |= {t.name: helper.tensor_dtype_to_np_dtype(t.data_type) for t in model.graph.initializer}
    for node in model.graph.node:
        fixed = FIXED_TYPES.get(node.op_type)
        if node.op_type == "Cast":
            dtype = helper.tensor_dtype_to_np_dtype(next(a.i for a in node.attribute if a.name == "to"))
        else:
            dtype = np.dtype(fixed) if fixed else types[node.input[TYPE_FROM_INPUT[node.op_type]]] \
                if node.op_type in TYPE_FROM_INPUT else types[next(i for i in node.input if i)]
        types.update({o: dtype for o in node.output})
    return types


def _session(model, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _value_info(name: str, dtype: np.dtype, shape=None):
    from onnx import helper

    return helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(np.dtype(dtype)), shape)


def _one_node_model(model, node, values: dict[str, np.ndarray], inits: dict):
    """``node`` alone: its initializers (``inits``, by name) inside, its other inputs fed (the captured tensors)."""
    from onnx import helper

    used = [i for i in dict.fromkeys(node.input) if i]
    graph = helper.make_graph(
        [node], f"one_{node.name}",
        [_value_info(i, values[i].dtype, list(values[i].shape)) for i in used if i not in inits],
        [_value_info(o, values[o].dtype) for o in node.output if o],
        initializer=[inits[i] for i in used if i in inits])
    one = helper.make_model(graph, opset_imports=model.opset_import)
    one.ir_version = model.ir_version
    return one


def capture(model, feeds: dict[str, np.ndarray], threads: int = 1) -> dict[str, np.ndarray]:
    """The feeds and every value one run of ``model`` computes from them, by name."""
    import onnx

    types = _types(model)
    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    graph_outputs = {o.name for o in exposed.graph.output}
    for node in exposed.graph.node:
        exposed.graph.output.extend(_value_info(o, types[o]) for o in node.output if o and o not in graph_outputs)
    names = [o.name for o in exposed.graph.output]
    return dict(feeds) | dict(zip(names, _session(exposed, threads).run(None, feeds)))


def operator_runs(model, values: dict[str, np.ndarray], threads: int = 1) -> list[tuple[object, dict]]:
    """Per node of ``model``: a session of that node alone and its feeds (from :func:`capture`'s ``values``)."""
    inits = {t.name: t for t in model.graph.initializer}
    runs = []
    for node in model.graph.node:
        fed = {i: values[i] for i in dict.fromkeys(node.input) if i and i not in inits}
        runs.append((_session(_one_node_model(model, node, values, inits), threads), fed))
    return runs


def _floor_model(n_ops: int, width: int):
    """A chain of ``n_ops`` Relu on a ``width`` vector, then an Identity: the per-operator dispatch cost."""
    from onnx import helper

    nodes, prev = [], "x"
    for i in range(n_ops):
        nodes.append(helper.make_node("Relu", [prev], [f"r{i}"]))
        prev = f"r{i}"
    nodes.append(helper.make_node("Identity", [prev], ["y"]))
    graph = helper.make_graph(nodes, "floor", [_value_info("x", np.float32, [1, 1, width])],
                              [_value_info("y", np.float32, [1, 1, width])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model


def _identity_model(shape: tuple[int, ...]):
    """An Identity of a float tensor of ``shape``: what handing such an output back to numpy costs."""
    from onnx import helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "copy",
                              [_value_info("x", np.float32, list(shape))], [_value_info("y", np.float32, list(shape))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model


def median_us(call, calls: int, reference=None, settle: int = SETTLE_CALLS) -> float:
    """Median time of ``calls`` calls, microseconds; with ``reference``, of (``call`` - ``reference``) pairs.

    The host's speed drifts (a shared machine: +-50% within minutes); a
    difference taken back to back, within microseconds, cancels the drift.
    """
    reference = reference or (lambda: None)
    for _ in range(settle):
        call()
        reference()
    diffs = np.empty(calls)
    clock = time.perf_counter
    for i in range(calls):
        t0 = clock()
        call()
        t1 = clock()
        reference()
        diffs[i] = (t1 - t0) - (clock() - t1)
    return float(np.median(diffs)) * 1e6


def measure(folder: Path, cache_length: int, runs: int, rounds: int) -> dict:
    """The four figures of the module docstring for the step graph of the artifact in ``folder``."""
    import onnx

    backend = load_backend(folder, "onnxruntime", threads=torch.get_num_threads())  # as migr-rt bench opens it
    threads = backend.decode_threads or 1
    model = onnx.load(str(folder / backend.manifest.graphs["step"].file))
    text = backend.config.text_config
    kv_heads = text.num_key_value_heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    rng = np.random.default_rng(0)
    shape = (text.num_hidden_layers, 1, kv_heads, cache_length - 1, head_dim)
    static = backend.static_step
    if static is None:
        raise click.ClickException(f"{folder}: its step graph is not the fused in-place one ({model.graph.input[1].name}"
                                   " is an input); export the checkpoint again")
    token = np.array([5])  # numpy, as the runtime's decoding loop passes it (a torch tensor costs ~0.04 ms more)
    # one step from a random cache of cache_length - 1 positions: `state` (cache_length positions) is the
    # backend's own, so every timed backend.step continues it in place, as a rationale's step does
    _, state = backend.step(token, DecoderState(rng.standard_normal(shape, dtype=np.float32),
                                                rng.standard_normal(shape, dtype=np.float32),
                                                np.ones((1, cache_length - 1), bool)))
    backend.step(token, state)  # the buffers as a step from `state` sees them
    feeds = static.graph_feeds()
    values = capture(model, feeds, threads)

    empty_session = _session(_identity_model((1, 1, text.hidden_size)), threads)
    floor_session = _session(_floor_model(100, text.hidden_size), threads)
    x = np.ones((1, 1, text.hidden_size), np.float32)
    empty = lambda: empty_session.run(None, {"x": x})  # noqa: E731
    copy_session = _session(_identity_model(feeds["past_key_0"].shape), threads)
    calls = {"backend.step": lambda: backend.step(token, state), "session.run": static.run_graph,
             "floor": lambda: floor_session.run(None, {"x": x}),
             "cache_copy": lambda: copy_session.run(None, {"x": feeds["past_key_0"]})}
    nodes = list(model.graph.node)
    for k, (s, fed) in enumerate(operator_runs(model, values, threads)):
        calls[f"node{k}"] = lambda s=s, fed=fed: s.run(None, fed)
    extra = {n: [] for n in calls}  # per round: median microseconds over an empty graph's run
    alone = {n: [] for n in ("backend.step", "session.run")}
    for _ in range(rounds):
        for n, call in calls.items():
            extra[n].append(median_us(call, runs // rounds, reference=empty))
        for n in alone:
            alone[n].append(median_us(calls[n], runs // rounds))
    us = {n: float(np.median(v)) for n, v in extra.items()}

    per_type: dict[str, dict] = defaultdict(lambda: {"nodes": 0, "us": 0.0})
    for k, node in enumerate(nodes):
        row = per_type[node.op_type]
        row["nodes"] += 1
        row["us"] += max(0.0, us[f"node{k}"])
    total = sum(r["us"] for r in per_type.values())
    return {
        "artifact": str(folder), "precision": backend.manifest.precision,
        "step_graph": backend.manifest.extra.get("step_graph"), "threads": threads, "cache_length": cache_length,
        "nodes": len(nodes), "backend_step_us": float(np.median(alone["backend.step"])),
        "session_run_us": float(np.median(alone["session.run"])),
        "wrapper_us": us["backend.step"] - us["session.run"], "operators_sum_us": total,
        "dispatch_floor_us_per_op": us["floor"] / 100, "cache_copy_us": us["cache_copy"],
        "cache_bytes": int(feeds["past_key_0"].nbytes),
        "per_type": dict(sorted(per_type.items(), key=lambda kv: -kv[1]["us"])),
        "runs": runs, "rounds": rounds,
    }


def markdown(result: dict, command: str) -> str:
    """The report: the whole step against its parts per precision, then the operators by type."""
    m = result["machine"]
    r0 = next(iter(result["paths"].values()))
    lines = [
        "# Where a decoding step's time goes (onnxruntime fused step, CPU, batch 1)", "",
        f"Produced by `{command}`; checkpoint `{result['checkpoint']}`.", "",
        f"Machine: {m.get('cpu', '?')}, {m.get('cores', '?')} cores; commit {m.get('commit', '?')}; "
        f"onnxruntime {result['onnxruntime']}.", "",
        "Each operator is timed alone in a one-node graph fed the tensors it sees inside the step, as the median "
        "difference to an empty graph's run over back-to-back pairs (the host's speed drifts more than an operator "
        f"costs); {r0['rounds']} rounds of {r0['runs'] // r0['rounds']} pairs, median of the rounds. The cache holds "
        f"{r0['cache_length']} positions; the decoder runs on {r0['threads']} thread(s), as in the runtime. An "
        "operator alone also hands its outputs back to numpy, which it does not inside the step (GroupQueryAttention "
        "alone copies its cache to a new output instead of writing one row in place; an Identity of "
        f"one layer's {r0['cache_bytes'] / 1024:.0f} KiB key buffer costs {r0['cache_copy_us']:.1f} us more than the "
        "empty graph): each part is an upper bound.", "",
        "| precision | backend.step (what `migr-rt bench` times) | the step graph on its bound buffers | the Python "
        "wrapper (backend.step - session.run) | sum of its operators alone | operators "
        "| onnxruntime dispatch floor per operator |",
        "|---|---|---|---|---|---|---|",
    ]
    for p, r in result["paths"].items():
        lines.append(f"| {p} | {r['backend_step_us']:.1f} us | {r['session_run_us']:.1f} us | "
                     f"{r['wrapper_us']:.1f} us | {r['operators_sum_us']:.1f} us | {r['nodes']} | "
                     f"{r['dispatch_floor_us_per_op']:.2f} us |")
    for p, r in result["paths"].items():
        lines += ["", f"## {p}: operators by type", "",
                  "| operator | nodes | us per step | us per node | share of the sum |", "|---|---|---|---|---|"]
        for op, row in r["per_type"].items():
            lines.append(f"| {op} | {row['nodes']} | {row['us']:.1f} | {row['us'] / row['nodes']:.2f} | "
                         f"{row['us'] / max(r['operators_sum_us'], 1e-9):.0%} |")
    return "\n".join(lines) + "\n"


@click.command()
@click.option("--checkpoint", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
              help="Checkpoint folder (default: the bundled model).")
@click.option("--precisions", default="fp32,int8", show_default=True)
@click.option("--cache-length", type=click.IntRange(min=1), default=57, show_default=True,
              help="Positions already in the cache (migr-rt bench: the 25-token prompt + 32 generated).")
@click.option("--runs", type=click.IntRange(min=10), default=1000, show_default=True,
              help="Timed calls (pairs) per entry, over all rounds.")
@click.option("--rounds", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("benchmarks/results"),
              show_default=True)
@click.option("--name", default="step_ops_cpu", show_default=True, help="Result file stem (one per host).")
def main(checkpoint: Path | None, precisions: str, cache_length: int, runs: int, rounds: int, out: Path,
         name: str) -> None:
    if runs < rounds:
        raise click.BadParameter(f"--runs {runs} is fewer than --rounds {rounds}: each round needs calls to time",
                                 param_hint="--runs")
    checkpoint = checkpoint or default_checkpoint()
    import onnxruntime

    result = {"checkpoint": os.path.relpath(checkpoint), "machine": machine_info(),
              "onnxruntime": onnxruntime.__version__, "paths": {}}
    for precision in [p.strip() for p in precisions.split(",") if p.strip()]:
        folder = Path("runs/artifacts") / f"{checkpoint.name}-{precision}"
        ensure_artifact(checkpoint, folder, "onnx", precision, lambda msg: click.echo(msg, err=True))
        click.echo(f"timing the {precision} step, operator by operator", err=True)
        result["paths"][f"onnxruntime {precision}"] = measure(folder, cache_length, runs, rounds)
    command = "python benchmarks/step_ops.py " + shlex.join(sys.argv[1:])
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / f"{name}.json", json.dumps(result, indent=2, default=str) + "\n")
    text = markdown(result, command.strip())
    write_text_atomic(out / f"{name}.md", text)
    click.echo(text)


if __name__ == "__main__":
    main()
