"""Inference backends compared on this CPU at batch 1: torch eager vs onnxruntime fp32 / int8 (/ fp16).

    python benchmarks/backends.py                       # full run: 200 step runs, 50 per other stage, 420 clips
    python benchmarks/backends.py --quick --clips 40 --out /tmp/bench_backends   # a quick look

Per stage, through the :class:`migr_rt.backends.Backend` interface the
runtime uses, on one real window (clip 0 of the test seed, rendered in memory
and put through the face front end):

* ``encode``: visual frames + pooling and audio of one window;
* ``score_mi``: one B=1 x (1 + M) label/MI scoring pass;
* ``prefill``: the rationale prompt (prefix + ``<think>``);
* ``step``: one decoder step with a realistic cache (the prompt and
  ``--cache-tokens`` greedily generated tokens already in it).

Timings are p50 / p95 / mean of warm runs (warm-up first). Backends are
timed in rotating rounds of consecutive calls, so load from other work on a
shared CPU falls on all of them alike. A reference row times the plain
``transformers`` path for the same step (``MigrForEmotionReasoning.forward``
with ``use_cache=True`` one token at a time, as ``migr_rt/generate.py`` does):
"torch eager" in the other rows is the runtime's explicit-cache graphs of
``migr_rt/model/graphs.py``, already faster than that.

Then accuracy: ``Predictor(..., backend=...)`` on every clip of the held-out
synthetic test corpus (seed 2; generated when missing) for the torch
checkpoint and each ONNX artifact: WAR, agreement with torch, max |MI - torch
MI|. ONNX artifacts are exported into ``runs/artifacts/<checkpoint>-<precision>``
and reused while their manifest names the checkpoint's current weights.

Writes ``<out>/backends.json`` and ``backends.md`` (``--out``, default
benchmarks/results).
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from pathlib import Path

import click
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info  # noqa: E402

from migr_rt.artifact import ArtifactError, read_artifact, sha256_of  # noqa: E402
from migr_rt.atomic import write_text_atomic  # noqa: E402
from migr_rt.backends import Backend, load_backend  # noqa: E402
from migr_rt.face import HaarFaceDetector  # noqa: E402
from migr_rt.model.layout import prefix_ids  # noqa: E402
from migr_rt.perf.paths import hf_step_probe  # noqa: E402
from migr_rt.perf.timing import BLOCK_PAUSE_S, Timed, summary, time_rounds  # noqa: E402
from migr_rt.bundled import default_checkpoint  # noqa: E402
from migr_rt.predict import Predictor  # noqa: E402
from migr_rt.preprocess import prepare_window  # noqa: E402
from migr_rt.training.synth.corpus import (  # noqa: E402
    CORPUS_INFO, GENERATOR, GENERATOR_VERSION, MANIFEST, SynthConfig, generate_corpus, render_clip)
from migr_rt.training.synth.reader import SynthCorpus  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
STAGES = ("encode", "score_mi", "prefill", "step")
STAGE_TITLES = {
    "encode": "Encode one window (8 face crops + pooling, 2 s of audio)",
    "score_mi": "MI scoring: one B=1 x (1 + M) pass (label + MI)",
    "prefill": "Prefill of the rationale prompt",
    "step": "One decode step (per token)",
}
REFERENCE = "transformers forward (reference)"
DEFAULT_CLIPS = 420  # the held-out test corpus other benchmarks use
TARGET_SPEEDUP = 1.5  # onnxruntime fp32 vs torch eager, per decode step at batch 1


# -- artifacts ------------------------------------------------------------------------------------
def ensure_artifact(checkpoint: Path, folder: Path, precision: str) -> dict:
    """Export ``checkpoint`` to ``folder`` at ``precision`` unless a current, intact export of the weights is there."""
    from migr_rt.export.onnx_export import export_onnx, is_current_export

    weights = sha256_of(checkpoint / "model.safetensors")
    try:
        manifest = read_artifact(folder)  # verifies every graph's hash
        if is_current_export(manifest, weights, precision):
            return {"path": _shown(folder), "exported": False, "parity": manifest.parity}
    except ArtifactError:
        pass

    click.echo(f"exporting {checkpoint} -> {folder} ({precision})", err=True)
    t0 = time.perf_counter()
    manifest = export_onnx(checkpoint, folder, precision=precision)
    return {"path": _shown(folder), "exported": True, "export_s": time.perf_counter() - t0, "parity": manifest.parity}


def _shown(path: Path) -> str:
    path = Path(path).resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


# -- timing (rotating blocks, pauses, warm-up: migr_rt.perf.timing, shared with `migr-rt bench`) ----------
def benchmark_stages(backends: dict[str, Backend], window, cache_tokens: int, runs: dict[str, int],
                     warmup: dict[str, int], rounds: int) -> tuple[dict, dict]:
    """Per stage, backend -> timing summary; and what the inputs were."""
    cfg = next(iter(backends.values())).config
    pixels, audio, present = window
    ids = torch.tensor([prefix_ids(cfg) + [cfg.special_token_ids["think_start"]]])
    prepared = {}
    for name, b in backends.items():
        tokens = b.encode(pixels, audio)
        logits, state = b.prefill(ids, tokens, present)
        for _ in range(cache_tokens):  # greedy: the cache a real rationale has after cache_tokens tokens
            logits, state = b.step(logits.argmax(-1), state)
        prepared[name] = (tokens, state, logits.argmax(-1))
    results = {}
    stage_fns: dict[str, dict[str, Timed]] = {s: {} for s in STAGES}
    for name, b in backends.items():
        tokens, state, nxt = prepared[name]
        stage_fns["encode"][name] = Timed(lambda b=b: b.encode(pixels, audio))
        stage_fns["score_mi"][name] = Timed(lambda b=b, t=tokens: b.score_mi(t, present))
        stage_fns["prefill"][name] = Timed(lambda b=b, t=tokens: b.prefill(ids, t, present))
        # Graph steps are functional (they return a new, longer cache), so every run sees the same cache.
        stage_fns["step"][name] = Timed(lambda b=b, s=state, x=nxt: b.step(x, s))
    if "torch" in backends:
        model = backends["torch"].model
        stage_fns["step"][REFERENCE] = reference_step(model, ids, pixels, audio, present, cache_tokens)
    for stage in STAGES:
        click.echo(f"timing {stage} ({runs[stage]} runs x {len(stage_fns[stage])})", err=True)
        ms = time_rounds(stage_fns[stage], runs[stage], warmup[stage], rounds)
        results[stage] = {n: summary(v) for n, v in ms.items()}
    state = prepared[next(iter(prepared))][1]
    inputs = {
        "pixel_values": list(pixels.shape), "audio_values": list(audio.shape), "present": present[0].tolist(),
        "prompt_tokens": ids.shape[1], "generated_tokens_in_cache": cache_tokens,
        "step_cache_length": state.length,
    }
    return results, inputs


def reference_step(model, ids, pixels, audio, present, cache_tokens: int) -> Timed:
    """One ``model.forward(token, cache=..., use_cache=True)`` as ``migr_rt.generate`` runs it, cache kept at length."""
    with torch.no_grad():
        out = model(ids, pixels, audio, modality_visible=present, use_cache=True)
    return hf_step_probe(model, out, cache_tokens)


# -- accuracy -------------------------------------------------------------------------------------
def corpus_info(n: int, seed: int) -> dict:
    return json.loads(json.dumps({"generator": GENERATOR, "version": GENERATOR_VERSION,
                                  "config": SynthConfig(n=n, seed=seed).identity()}))


def _existing(folder: Path) -> dict | None:
    try:
        return json.loads((folder / CORPUS_INFO).read_text()) if (folder / MANIFEST).is_file() else None
    except (OSError, json.JSONDecodeError):
        return None


def resolve_corpus(folder: Path, n: int, seed: int) -> tuple[Path, int, str]:
    """(corpus folder, clips to use, how it was found): ``folder`` if it holds this corpus, else generated.

    A synthetic clip depends only on the seed and its index, not on the
    corpus size, so the first ``n`` clips of a larger corpus with the same
    seed and generator are exactly the corpus of ``n`` (used as such).
    Otherwise a corpus is generated: into ``folder`` for the default size
    when it is absent or empty, else into ``<folder>-n<n>``, so ``folder``
    never gets a smaller corpus that other benchmarks (bundled_model.py)
    would then silently read.
    """
    want = corpus_info(n, seed)
    alt = folder.with_name(f"{folder.name}-n{n}")
    for candidate in (folder, alt):
        have = _existing(candidate)
        if have is None:
            continue
        if have == want:
            return candidate, n, "reused"
        same_but_n = {**have, "config": {**have.get("config", {}), "n": n}} == want
        if same_but_n and have["config"].get("n", 0) > n:
            return candidate, n, f"reused (first {n} of its {have['config']['n']} clips, identical to a corpus of {n})"
    empty = not folder.exists() or not any(folder.iterdir())
    target = folder if empty and n == DEFAULT_CLIPS else alt
    click.echo(f"generating test corpus {target} (seed {seed}, {n} clips)", err=True)
    generate_corpus(SynthConfig(n=n, seed=seed, workers=2), target)
    return target, n, "generated"


def evaluate(predictors: dict[str, Predictor], corpus: SynthCorpus, clips: int) -> dict:
    labels = next(iter(predictors.values())).config.labels
    modalities = next(iter(predictors.values())).config.modalities
    truth, preds = [], {n: [] for n in predictors}
    for i in range(clips):
        clip = corpus[i]
        truth.append(clip.meta["label"])
        for name, p in predictors.items():
            preds[name].append(p.predict(clip.frames, clip.audio, fps=clip.fps))
        if (i + 1) % 50 == 0:
            click.echo(f"  {i + 1}/{clips} clips", err=True)
    ref = preds["torch"]

    def mi(ps):
        return np.array([[p.mi.get(m, 0.0) for m in modalities] for p in ps], dtype=np.float64)

    out = {}
    for name, ps in preds.items():
        correct = np.array([p.label == t for p, t in zip(ps, truth)])
        recall = [float(correct[[t == lab for t in truth]].mean()) for lab in labels if lab in truth]
        agree = np.array([p.label == r.label for p, r in zip(ps, ref)])
        diff = np.abs(mi(ps) - mi(ref))
        probs = np.array([[p.probs.get(lab, 0.0) for lab in labels] for p in ps])
        ref_probs = np.array([[r.probs.get(lab, 0.0) for lab in labels] for r in ref])
        out[name] = {
            "clips": clips,
            "war": float(correct.mean()),
            "uar": float(np.mean(recall)),
            "label_agreement_with_torch": float(agree.mean()),
            "dominant_agreement_with_torch": float(np.mean([p.dominant == r.dominant for p, r in zip(ps, ref)])),
            "mi_max_abs_diff": float(diff.max()),
            "mi_mean_abs_diff": float(diff.mean()),
            # MI is taken for each backend's own predicted label: where labels agree it compares like with like.
            "mi_max_abs_diff_same_label": float(diff[agree].max()) if agree.any() else None,
            "probs_max_abs_diff": float(np.abs(probs - ref_probs).max()),
        }
    for name in out:
        out[name]["war_delta_vs_torch"] = out[name]["war"] - out["torch"]["war"]
    return out


# -- report ---------------------------------------------------------------------------------------
def _fmt_ms(v: float) -> str:
    return f"{v:.3f}" if v < 10 else f"{v:.1f}"


def markdown(result: dict) -> str:
    m, cfg = result["machine"], result["config"]
    lines = [
        "# Inference backends on this CPU (batch 1)",
        "",
        f"Checkpoint `{result['checkpoint']}`. Produced by `{result['command']}`"
        + (" (quick: fewer runs, noisier)" if cfg["quick"] else "") + ".",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['platform']}; Python {m['python']}, torch {m['torch']} "
        f"({m['torch_threads']} threads), onnxruntime {m['onnxruntime']} (intra-op threads "
        f"{m['onnxruntime_intra_op_threads']}, {', '.join(m['onnxruntime_providers'])}); commit {m['commit']}. "
        f"Load average (1 min) {m['load_average_1_5_15min']['start'][0]:.2f} at the start, "
        f"{m['load_average_1_5_15min']['after_timing'][0]:.2f} after the timings.",
        "",
        "Backends: " + "; ".join(f"**{n}**: {d}" for n, d in result["backends"].items()) + ".",
        "",
        f"Inputs: one real window (clip 0 of test seed {result['test_seed']} through the face front end): "
        f"pixel_values {result['inputs']['pixel_values']}, audio_values {result['inputs']['audio_values']}, "
        f"both modalities present. The decode step runs with a cache of {result['inputs']['step_cache_length']} "
        f"keys (the {result['inputs']['prompt_tokens']}-token prompt + {result['inputs']['generated_tokens_in_cache']} "
        "generated tokens).",
        "",
        f"Warm runs per backend: {cfg['runs']['step']} for the step, {cfg['runs']['encode']} for the other stages, "
        f"after {cfg['warmup']['step']} / {cfg['warmup']['encode']} warm-up calls, in {cfg['rounds']} rotating rounds "
        f"of consecutive calls (each block after a {BLOCK_PAUSE_S * 1000:.0f} ms pause and 3 untimed calls, so no "
        "backend's spinning thread pool slows the next; every backend gets a like share of any background load). "
        "Speed-up = torch p50 / backend p50. A min far below the p50 means background load during the run "
        "(torch's OpenMP threads suffer most from it).",
        "",
    ]
    t = result["target"]
    lines += [f"**Target: onnxruntime fp32 >= {t['required']:.1f}x faster than torch eager per decode step at batch 1: "
              f"{'met' if t['met'] else 'MISSED'} ({t['ratio']:.2f}x, p50 {_fmt_ms(t['torch_p50_ms'])} ms -> "
              f"{_fmt_ms(t['onnxruntime_fp32_p50_ms'])} ms).**", ""]
    for stage in STAGES:
        rows = result["timings"][stage]
        torch_p50 = rows["torch"]["p50_ms"]
        lines += [f"## {STAGE_TITLES[stage]}", "",
                  "| backend | p50 (ms) | p95 (ms) | mean (ms) | min (ms) | speed-up vs torch (p50) |",
                  "|---|---|---|---|---|---|"]
        for name, r in rows.items():
            lines.append(f"| {name} | {_fmt_ms(r['p50_ms'])} | {_fmt_ms(r['p95_ms'])} | {_fmt_ms(r['mean_ms'])} | "
                         f"{_fmt_ms(r['min_ms'])} | {torch_p50 / r['p50_ms']:.2f}x |")
        if stage == "step" and REFERENCE in rows:
            lines += ["", "The reference row is `MigrForEmotionReasoning.forward(token, cache=..., use_cache=True)`, "
                      "the plain `transformers` path `migr_rt/generate.py` decodes with (same weights, same cache "
                      "length, torch eager); the torch row is the runtime's explicit-cache step graph on torch."]
        lines.append("")
    acc = result["accuracy"]
    c = result["corpus"]
    lines += [
        "## Accuracy on the held-out synthetic test corpus",
        "",
        f"`Predictor(..., backend=...)` on {c['clips']} clips of `{c['folder']}` (seed {result['test_seed']}, "
        f"{c['how']}), same windows and face front end for every backend. MI is for each backend's own "
        "predicted label.",
        "",
        "| backend | WAR | WAR delta vs torch | UAR | label agreement with torch | dominant modality agreement | "
        "max abs MI diff vs torch | mean abs MI diff | decode step speed-up |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    step = result["timings"]["step"]
    for name, a in acc.items():
        speed = step["torch"]["p50_ms"] / step[name]["p50_ms"] if name in step else float("nan")
        lines.append(f"| {name} | {a['war']:.3f} | {a['war_delta_vs_torch']:+.3f} | {a['uar']:.3f} | "
                     f"{a['label_agreement_with_torch']:.3f} | {a['dominant_agreement_with_torch']:.3f} | "
                     f"{a['mi_max_abs_diff']:.2e} | {a['mi_mean_abs_diff']:.2e} | {speed:.2f}x |")
    if "onnxruntime int8" in acc:
        a = acc["onnxruntime int8"]
        speed = step["torch"]["p50_ms"] / step["onnxruntime int8"]["p50_ms"]
        lines += ["", f"int8: WAR {a['war']:.3f} ({a['war_delta_vs_torch']:+.3f} vs torch) at "
                      f"{speed:.2f}x the torch decode-step speed."]
    if result.get("unavailable"):
        lines += ["", "Not measured: " + "; ".join(f"{k}: {v}" for k, v in result["unavailable"].items()) + "."]
    lines += ["", "Artifacts: " + "; ".join(f"{p} `{a['path']}`" for p, a in result["artifacts"].items()) + "."]
    return "\n".join(lines) + "\n"


@click.command()
@click.option("--checkpoint", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
              help="Checkpoint folder (default: the bundled one).")
@click.option("--artifacts", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/artifacts"),
              show_default=True, help="Where the ONNX exports go (<checkpoint name>-<precision>), reused when current.")
@click.option("--data", type=click.Path(path_type=Path), default=Path("runs/synth-test"), show_default=True,
              help="Test corpus folder; generated (seed --test-seed, --clips clips) when missing.")
@click.option("--test-seed", type=int, default=2, show_default=True)
@click.option("--clips", type=click.IntRange(min=1), default=DEFAULT_CLIPS, show_default=True,
              help="Test clips for the accuracy check.")
@click.option("--quick", is_flag=True, help="Fewer timed runs (50 step / 10 other, vs 200 / 50).")
@click.option("--cache-tokens", type=click.IntRange(min=0), default=32, show_default=True,
              help="Generated tokens already in the cache when the decode step is timed.")
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True,
              help="torch threads and onnxruntime intra-op threads.")
@click.option("--fp16/--no-fp16", default=True, show_default=True, help="Also try onnxruntime fp16 (if it runs here).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=RESULTS, show_default=True,
              help="Results folder.")
@click.option("--name", default="backends", show_default=True, help="Result file stem.")
def main(checkpoint: Path | None, artifacts: Path, data: Path, test_seed: int, clips: int, quick: bool,
         cache_tokens: int, threads: int, fp16: bool, out: Path, name: str) -> None:
    import onnxruntime

    started = time.perf_counter()
    torch.set_num_threads(threads)
    checkpoint = checkpoint or default_checkpoint()
    runs = {"step": 50, "encode": 10, "score_mi": 10, "prefill": 10} if quick else \
        {"step": 200, "encode": 50, "score_mi": 50, "prefill": 50}
    warmup = {"step": 5, "encode": 2, "score_mi": 2, "prefill": 2} if quick else \
        {"step": 20, "encode": 5, "score_mi": 5, "prefill": 5}
    rounds = 5 if quick else 10
    load_before = os.getloadavg()

    # Artifacts (exported once, then reused while the checkpoint's weights are unchanged).
    precisions = ["fp32", "int8"] + (["fp16"] if fp16 else [])
    artifact_info, unavailable, folders = {}, {}, {}
    for precision in precisions:
        folder = artifacts / f"{checkpoint.name}-{precision}"
        try:
            artifact_info[precision] = ensure_artifact(checkpoint, folder, precision)
            folders[precision] = folder
        except Exception as exc:  # fp16 may not export or run on every CPU; fp32/int8 must
            if precision != "fp16":
                raise
            unavailable["onnxruntime fp16"] = f"export failed: {exc}"
    torch.set_num_threads(threads)

    backends: dict[str, Backend] = {"torch": load_backend(checkpoint, "torch")}
    for precision, folder in folders.items():
        try:
            backends[f"onnxruntime {precision}"] = load_backend(folder, "onnxruntime", threads=threads)
        except Exception as exc:
            if precision != "fp16":
                raise
            unavailable["onnxruntime fp16"] = f"cannot load: {exc}"
    cfg = backends["torch"].config

    # One real window: clip 0 of the test seed, rendered in memory, through the face front end.
    clip = render_clip(SynthConfig(n=1, seed=test_seed), 0)
    win = prepare_window(clip.frames, clip.audio, cfg, HaarFaceDetector(), fps=clip.record["fps"])
    if win.pixel_values is None or win.audio_values is None or not bool(win.present.all()):
        raise click.ClickException("the benchmark window lacks a face or audio; pick another --test-seed")
    # torch tensors: the reference step below runs the torch model on them (the backends take either)
    window = tuple(torch.from_numpy(a[None]) for a in (win.pixel_values, win.audio_values, win.present))
    if "onnxruntime fp16" in backends:  # a run that fails here is reported, not fatal
        try:
            b = backends["onnxruntime fp16"]
            b.prefill(torch.tensor([prefix_ids(cfg)]), b.encode(window[0], window[1]), window[2])
        except Exception as exc:
            unavailable["onnxruntime fp16"] = f"fails at run time: {exc}"
            del backends["onnxruntime fp16"]
    timings, inputs = benchmark_stages(backends, window, cache_tokens, runs, warmup, rounds)
    step = timings["step"]
    ratio = step["torch"]["p50_ms"] / step["onnxruntime fp32"]["p50_ms"]
    target = {"required": TARGET_SPEEDUP, "ratio": ratio, "met": ratio >= TARGET_SPEEDUP, "statistic": "p50",
              "torch_p50_ms": step["torch"]["p50_ms"], "onnxruntime_fp32_p50_ms": step["onnxruntime fp32"]["p50_ms"]}
    bench_s = time.perf_counter() - started
    load_after = os.getloadavg()

    # Accuracy: Predictor with each backend on every test clip.
    folder, n, how = resolve_corpus(data, clips, test_seed)
    corpus = SynthCorpus(folder / MANIFEST)
    predictors = {"torch": Predictor(checkpoint, backend="torch", threads=threads)}
    for precision, art in folders.items():
        key = f"onnxruntime {precision}"
        if key in backends:
            predictors[key] = Predictor(art, backend="onnxruntime", threads=threads)
    torch.set_num_threads(threads)
    click.echo(f"accuracy: {n} clips x {len(predictors)} backends", err=True)
    accuracy = evaluate(predictors, corpus, n)

    ort_step = backends["onnxruntime fp32"].sessions["step"]
    machine = {**machine_info(), "onnxruntime": onnxruntime.__version__,
               "onnxruntime_intra_op_threads": ort_step.get_session_options().intra_op_num_threads,
               "onnxruntime_providers": ort_step.get_providers(),
               # other work on the machine slows torch's OpenMP threads most: read the timings with this in mind
               "load_average_1_5_15min": {"start": list(load_before), "after_timing": list(load_after)}}
    result = {
        "command": shlex.join(["python", "benchmarks/backends.py", *sys.argv[1:]]),
        "checkpoint": _shown(checkpoint),
        "test_seed": test_seed,
        "config": {"quick": quick, "runs": runs, "warmup": warmup, "rounds": rounds, "threads": threads,
                   "cache_tokens": cache_tokens, "batch": 1},
        "backends": {n: b.describe() for n, b in backends.items()} | {REFERENCE: "MigrForEmotionReasoning.forward, "
                                                                      "use_cache=True, torch eager"},
        "artifacts": artifact_info,
        "unavailable": unavailable,
        "inputs": inputs,
        "timings": timings,
        "target": target,
        "corpus": {"folder": _shown(folder), "clips": n, "how": how},
        "accuracy": accuracy,
        "machine": machine,
        "seconds": {"timing": bench_s, "total": time.perf_counter() - started},
    }
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / f"{name}.json", json.dumps(result, indent=2, sort_keys=True) + "\n")
    write_text_atomic(out / f"{name}.md", markdown(result))
    click.echo(markdown(result))


if __name__ == "__main__":
    main()
