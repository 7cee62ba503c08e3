"""Why the int8 export has 7-bit weights: full-range ones overflow on CPUs without VNNI.

    python benchmarks/int8_saturation.py                         # 420 held-out clips, ~8 min on 2 cores
    python benchmarks/int8_saturation.py --clips 40 --out /tmp/int8_saturation

onnxruntime's int8 matmul (``MatMulInteger``: uint8 activations x int8
weights) sums products in int16 pairs on x86 CPUs without VNNI, which
overflow with full-range weights (see :mod:`migr_rt.backends.integer_matmul`).
This measures, for the bundled checkpoint:

* per graph, how many quantised weights this CPU sums wrongly on worst-case
  activations, with 8-bit and with 7-bit weights;
* accuracy on the held-out synthetic test corpus (seed 2) of
  - ``torch`` (fp32, the reference);
  - ``int8 8-bit (this CPU)``: full-range weights, as onnxruntime computes them here;
  - ``int8 8-bit, exact sums``: the same graphs with each ``MatMulInteger``
    rewritten as exact integer maths in fp32 (what a CPU with VNNI computes);
  - ``int8 7-bit``: the export as :func:`export_onnx` writes it.

The 8-bit artifacts are the 7-bit export with its graphs quantised again
from the fp32 export at 8 bits (the decoder step, 8-bit ``MatMulNBits``, is
the same in all three and exact here). Writes ``<out>/int8_saturation.json``
and ``.md``.
"""

from __future__ import annotations

import json
import logging
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

import click
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from backends import DEFAULT_CLIPS, ensure_artifact, resolve_corpus  # noqa: E402
from machine import machine_info  # noqa: E402

from migr_rt.artifact import MANIFEST, read_artifact, seal, sha256_of  # noqa: E402
from migr_rt.atomic import write_text_atomic  # noqa: E402
from migr_rt.backends.integer_matmul import (  # noqa: E402
    INT8_WEIGHT_BITS, VNNI_FLAGS, full_range_int8_overflows, matmul_integer_error)
from migr_rt.perf.system import cpu_flags  # noqa: E402
from migr_rt.export.onnx_export import quantize_int8  # noqa: E402
from migr_rt.bundled import default_checkpoint  # noqa: E402
from migr_rt.predict import Predictor  # noqa: E402
from migr_rt.training.synth.reader import SynthCorpus  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
TORCH, FULL, EXACT, SEVEN = "torch", "int8 8-bit (this CPU)", "int8 8-bit, exact sums", "int8 7-bit (the export)"


def int8_flags() -> list[str]:
    """The vector extensions that decide how onnxruntime sums int8 products."""
    return sorted((cpu_flags() or set()) & ({"avx2", "avx512f", "avx512bw"} | VNNI_FLAGS))


def exact_sums(src: Path, dst: Path) -> int:
    """``src`` with each ``MatMulInteger`` as Cast -> (Sub zero point) -> fp32 MatMul -> Cast int32: exact sums.

    fp32 holds every partial sum exactly while |sum| <= 255 x 128 x K < 2**24, i.e. K <= 514 (these graphs have
    K <= 512); a larger K would round the last of 24 bits, far below the int8 rounding itself.
    """
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(src))
    nodes, rewritten = [], 0
    for node in model.graph.node:
        if node.op_type != "MatMulInteger":
            nodes.append(node)
            continue
        rewritten += 1
        p = f"exact{rewritten}_"
        operands = []
        for side, (value, zero) in enumerate(((node.input[0], node.input[2] if len(node.input) > 2 else ""),
                                             (node.input[1], node.input[3] if len(node.input) > 3 else ""))):
            nodes.append(helper.make_node("Cast", [value], [f"{p}{side}"], to=TensorProto.FLOAT))
            operand = f"{p}{side}"
            if zero:
                nodes += [helper.make_node("Cast", [zero], [f"{p}{side}z"], to=TensorProto.FLOAT),
                          helper.make_node("Sub", [operand, f"{p}{side}z"], [f"{p}{side}c"])]
                operand = f"{p}{side}c"
            operands.append(operand)
        nodes += [helper.make_node("MatMul", operands, [f"{p}y"]),
                  helper.make_node("Cast", [f"{p}y"], [node.output[0]], to=TensorProto.INT32)]
    model.graph.ClearField("node")
    model.graph.node.extend(nodes)
    onnx.save(model, str(dst))
    return rewritten


def variant(export: Path, fp32: Path, out: Path, exact: bool) -> dict:
    """A copy of the 7-bit ``export`` whose quantised graphs have 8-bit weights (summed exactly if ``exact``)."""
    shutil.copytree(export, out)
    raw = json.loads((out / MANIFEST).read_text())
    overflowing = {}
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        for name, spec in raw["graphs"].items():
            if name == "step":  # MatMulNBits, 8-bit weights in every variant
                continue
            graph = out / spec["file"]
            quantize_int8(fp32 / spec["file"], graph, weight_bits=8)
            if not exact:
                overflowing[name] = _overflowing(graph)
            else:
                exact_sums(graph, Path(tmp) / "exact.onnx")
                shutil.move(Path(tmp) / "exact.onnx", graph)
            spec["sha256"] = sha256_of(graph)
    raw["extra"]["int8_weight_bits"] = 8
    (out / MANIFEST).write_text(json.dumps(seal(raw), indent=2))
    read_artifact(out)  # the copy is a valid artifact: hashes match
    return overflowing


def _overflowing(graph: Path) -> dict:
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(graph))
    weights = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    errors = [matmul_integer_error(weights[n.input[1]]) for n in model.graph.node if n.op_type == "MatMulInteger"]
    return {"matmuls": len(errors), "overflowing": sum(e > 0 for e in errors), "max_abs_error": max(errors, default=0)}


def evaluate(predictors: dict[str, Predictor], corpus: SynthCorpus, clips: int) -> dict:
    """Label, MI and greedy rationale of every predictor per clip, against torch's."""
    labels = next(iter(predictors.values())).config.labels
    modalities = next(iter(predictors.values())).config.modalities
    truth = []
    rows = {name: {"pred": [], "text": []} for name in predictors}
    for i in range(clips):
        clip = corpus[i]
        truth.append(clip.meta["label"])
        for name, p in predictors.items():
            rows[name]["pred"].append(p.predict(clip.frames, clip.audio, fps=clip.fps))
            rows[name]["text"].append(p.explain(clip.frames, clip.audio, fps=clip.fps).text)
        if (i + 1) % 50 == 0:
            click.echo(f"  {i + 1}/{clips} clips", err=True)
    ref = rows[TORCH]
    out = {}
    for name, r in rows.items():
        ps = r["pred"]
        agree = np.array([p.label == q.label for p, q in zip(ps, ref["pred"])])
        mi = np.array([[p.mi.get(m, 0.0) for m in modalities] for p in ps])
        ref_mi = np.array([[p.mi.get(m, 0.0) for m in modalities] for p in ref["pred"]])
        probs = np.array([[p.probs.get(lab, 0.0) for lab in labels] for p in ps])
        ref_probs = np.array([[p.probs.get(lab, 0.0) for lab in labels] for p in ref["pred"]])
        diff = np.abs(mi - ref_mi)
        out[name] = {
            "war": float(np.mean([p.label == t for p, t in zip(ps, truth)])),
            "label_agreement": float(agree.mean()),
            "dominant_agreement": float(np.mean([p.dominant == q.dominant for p, q in zip(ps, ref["pred"])])),
            # MI is for each one's own label: compare it where the labels agree
            "mi_max_abs_diff_same_label": float(diff[agree].max()) if agree.any() else None,
            "mi_mean_abs_diff_same_label": float(diff[agree].mean()) if agree.any() else None,
            "probs_max_abs_diff": float(np.abs(probs - ref_probs).max()),
            "probs_mean_abs_diff": float(np.abs(probs - ref_probs).mean()),
            "rationale_identical": float(np.mean([a == b for a, b in zip(r["text"], ref["text"])])),
        }
    return out


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = [
        "# int8 weights: 7-bit, because full-range ones overflow on CPUs without VNNI",
        "",
        f"Checkpoint `{result['checkpoint']}`, onnxruntime {result['onnxruntime']} (CPUExecutionProvider). "
        f"Produced by `{result['command']}`.",
        "",
        f"Machine: {m.get('cpu')}, {m.get('cores')} cores; CPU flags {', '.join(result['cpu_flags']) or 'unknown'}; "
        f"torch {m.get('torch')}; commit {m.get('commit')}; {result['seconds']:.0f} s.",
        "",
        f"**Full-range int8 products overflow on this CPU: {'yes' if result['full_range_overflows'] else 'no'}** "
        "(onnxruntime's `MatMulInteger` on 2 x 255 x 127).",
        "",
        "## Quantised weights this CPU sums wrongly (worst-case uint8 activations)",
        "",
        "| graph | matmuls | 8-bit weights: overflowing | max abs error of an int32 sum | 7-bit weights: overflowing |",
        "|---|---|---|---|---|",
    ]
    for name, r in result["overflow"]["8-bit"].items():
        seven = result["overflow"]["7-bit"][name]
        lines.append(f"| {name} | {r['matmuls']} | {r['overflowing']} | {r['max_abs_error']} | "
                     f"{seven['overflowing']} |")
    lines += [
        "",
        f"## Against torch on {result['clips']} held-out clips (synthetic test corpus, seed {result['test_seed']})",
        "",
        "MI and probabilities differ by their own rounding; MI is compared where the labels agree. "
        "\"8-bit, exact sums\" is the full-range export with its int8 matmuls computed exactly (in fp32): "
        "what a CPU with VNNI computes.",
        "",
        "| | WAR | label agreement | dominant modality agreement | max / mean abs MI diff | "
        "max / mean abs prob diff | rationale identical to torch's |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in result["accuracy"].items():
        mi = ("-" if r["mi_max_abs_diff_same_label"] is None
              else f"{r['mi_max_abs_diff_same_label']:.3f} / {r['mi_mean_abs_diff_same_label']:.4f}")
        lines.append(f"| {name} | {r['war']:.3f} | {r['label_agreement']:.3f} | {r['dominant_agreement']:.3f} | {mi} | "
                     f"{r['probs_max_abs_diff']:.3f} / {r['probs_mean_abs_diff']:.4f} | "
                     f"{r['rationale_identical']:.3f} |")
    return "\n".join(lines) + "\n"


@click.command()
@click.option("--artifacts", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/artifacts"),
              show_default=True, help="Where the fp32 and int8 exports are kept (reused while current).")
@click.option("--data", type=click.Path(path_type=Path), default=Path("runs/synth-test"), show_default=True)
@click.option("--test-seed", type=int, default=2, show_default=True)
@click.option("--clips", type=click.IntRange(min=1), default=DEFAULT_CLIPS, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=RESULTS, show_default=True)
def main(artifacts: Path, data: Path, test_seed: int, clips: int, threads: int, out: Path) -> None:
    import onnxruntime

    started = time.perf_counter()
    torch.set_num_threads(threads)
    checkpoint = default_checkpoint()
    fp32, export = artifacts / f"{checkpoint.name}-fp32", artifacts / f"{checkpoint.name}-int8"
    ensure_artifact(checkpoint, fp32, "fp32")
    ensure_artifact(checkpoint, export, "int8")
    if read_artifact(export).extra.get("int8_weight_bits") != INT8_WEIGHT_BITS:
        raise click.ClickException(f"{export}: not a {INT8_WEIGHT_BITS}-bit int8 export")
    with tempfile.TemporaryDirectory(prefix=".int8-variants-", dir=artifacts) as tmp:
        full, exact = Path(tmp) / "int8-8bit", Path(tmp) / "int8-8bit-exact"
        overflow = {"8-bit": variant(export, fp32, full, exact=False), "7-bit": {}}
        variant(export, fp32, exact, exact=True)
        for name, spec in read_artifact(export).graphs.items():
            if name != "step":
                overflow["7-bit"][name] = _overflowing(export / spec.file)
        folder, n, how = resolve_corpus(data, clips, test_seed)
        # the 8-bit variants are made to be measured: the backend's advice to export them again is noise here
        logging.getLogger("migr_rt.backends.onnxruntime_backend").setLevel(logging.ERROR)
        predictors = {TORCH: Predictor(checkpoint, backend="torch", threads=threads),
                      FULL: Predictor(full, backend="onnxruntime", threads=threads),
                      EXACT: Predictor(exact, backend="onnxruntime", threads=threads),
                      SEVEN: Predictor(export, backend="onnxruntime", threads=threads)}
        torch.set_num_threads(threads)
        click.echo(f"accuracy: {n} clips ({how}) x {len(predictors)} variants", err=True)
        accuracy = evaluate(predictors, SynthCorpus(folder / "manifest.jsonl"), n)
    result = {
        "command": shlex.join(["python", "benchmarks/int8_saturation.py", *sys.argv[1:]]),
        "checkpoint": str(checkpoint.relative_to(Path(__file__).resolve().parent.parent)),
        "onnxruntime": onnxruntime.__version__,
        "cpu_flags": int8_flags(),
        "full_range_overflows": full_range_int8_overflows(),
        "overflow": overflow,
        "clips": n, "test_seed": test_seed, "corpus": how,
        "accuracy": accuracy,
        "machine": machine_info(),
        "seconds": time.perf_counter() - started,
    }
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "int8_saturation.json", json.dumps(result, indent=2) + "\n")
    write_text_atomic(out / "int8_saturation.md", markdown(result))
    click.echo(f"wrote {out / 'int8_saturation.md'}", err=True)


if __name__ == "__main__":
    main()
