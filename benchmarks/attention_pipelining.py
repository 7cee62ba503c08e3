"""Does Triton pipeline the attention kernel's key loads? Compile for sm_90 without a GPU and count.

    python benchmarks/attention_pipelining.py                 # this checkout -> results/attention_pipelining.*
    python -P benchmarks/attention_pipelining.py --label old  # another migr_rt on PYTHONPATH: a row beside it

Software pipelining (``num_stages``) turns the loop's global loads into ``cp.async`` copies into shared
memory, issued stages ahead of their use; a load the pipeliner skips (for instance one inside a dynamic
``if``) stays a plain ``ld.global`` that the loop waits on. This compiles ``_masked_attention_kernel`` as
the JIT does for bf16 tensors on an H100/H200 (pointers and row strides divisible by 16, the head-dim
stride equal to 1, which the JIT specialises) and counts ``cp.async`` and ``wgmma`` in the PTX: with no
modality (M = 0) and with two (M = 2, the MI variants). ptxas ships in the triton wheel; no GPU needed.
The Triton here may differ from a GPU machine's: the rows record the version.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

os.environ.pop("TRITON_INTERPRET", None)
os.environ.setdefault("MIGR_RT_TRITON_COMPILE_ONLY", "1")
os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")

import click  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
TILES = ((64, 64, 4), (128, 64, 8))  # (BLOCK_M, BLOCK_N, warps): the compiled default and the large tile


def compile_counts(num_m: int, block_m: int, block_n: int, warps: int) -> dict:
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler.compiler import ASTSource

    from migr_rt.kernels.compile_check import _attention_signature
    from migr_rt.kernels.masked_attention import _masked_attention_kernel

    sig = _attention_signature("bf16")
    names = list(sig)
    consts = dict(HEADS=14, GROUP=7, NUM_VARIANTS=1 + num_m, NUM_MODALITIES=num_m, BLOCK_M=block_m, BLOCK_N=block_n,
                  BLOCK_D=64, BLOCK_MOD=2, UPCAST=False, DOT_PRECISION=None, COUNT_BLOCKS=False)
    if "EVEN_D" in _masked_attention_kernel.arg_names:  # absent before the interior/diagonal split
        sig["EVEN_D"] = "constexpr"
        consts["EVEN_D"] = True
    for name in ("sq_d", "sk_d", "sv_d", "so_d"):  # the JIT specialises a stride of 1
        sig[name] = "constexpr"
        consts[name] = 1
    aligned = [n for n in names if sig[n].startswith("*") or (n[0] == "s" and n[-2:] in ("_b", "_v", "_h", "_l"))]
    attrs = {(names.index(n),): [["tt.divisibility", 16]] for n in aligned}
    kernel = triton.compile(ASTSource(_masked_attention_kernel, sig, consts, attrs),
                            target=GPUTarget("cuda", 90, 32), options={"num_warps": warps, "num_stages": 3})
    ptx = kernel.asm["ptx"]
    return {"M": num_m, "tile": f"{block_m}x{block_n} w{warps}", "cp_async": ptx.count("cp.async"),
            "wgmma": ptx.count("wgmma"), "ld_global": ptx.count("ld.global")}


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def markdown(runs: dict) -> str:
    lines = ["# Attention kernel: are the key loads pipelined? (sm_90 PTX, compiled without a GPU)", "",
             "Produced by `python benchmarks/attention_pipelining.py` (see its docstring). `cp.async` = loads "
             "the pipeliner turned into asynchronous copies issued stages ahead; 0 = every load waited on in the "
             "loop. bf16, 14 heads, GQA 7, head_dim 64, num_stages 3.", "",
             "| kernel | triton | M | tile | cp.async | wgmma | ld.global |", "|---|---|---|---|---|---|---|"]
    for label, run in runs.items():
        for row in run["rows"]:
            lines.append(f"| {label} ({run['source']}) | {run['triton']} | {row['M']} | {row['tile']} | "
                         f"{row['cp_async']} | {row['wgmma']} | {row['ld_global']} |")
    return "\n".join(lines) + "\n"


@click.command()
@click.option("--label", default="this checkout", show_default=True, help="Row label (e.g. old for another tree).")
@click.option("--source", default=None, help="What the label names (default: the checkout's commit).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=RESULTS, show_default=True)
def main(label: str, source: str | None, out: Path) -> None:
    import triton

    from migr_rt.atomic import write_text_atomic

    rows = [compile_counts(m, bm, bn, w) for m in (0, 2) for bm, bn, w in TILES]
    for row in rows:
        print(json.dumps(row), flush=True)
    path = out / "attention_pipelining.json"
    runs = json.loads(path.read_text()) if path.exists() else {}
    runs[label] = {"source": source or _commit(), "triton": triton.__version__, "rows": rows}
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(runs, indent=2) + "\n")
    write_text_atomic(out / "attention_pipelining.md", markdown(runs))
    print(f"wrote {path} and .md", file=sys.stderr)


if __name__ == "__main__":
    main()
