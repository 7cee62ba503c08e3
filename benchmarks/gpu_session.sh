#!/usr/bin/env bash
# Everything that needs a GPU, as one call on a lent GPU machine (README "GPU session"):
# the GPU-marked kernel tests, the MI kernel benchmark and `migr-rt bench` on CUDA.
# Results and logs go to $OUT (the device tool's folder) or benchmarks/results/gpu.
#
# That machine has torch, triton, transformers, onnxruntime and OpenCV but no PyAV and no
# package registry: carry PyAV as a wheel in .whl/ (see README). migr-rt is installed into a
# scratch folder (its export/, kernels/ and training/ folders install as migr_rt.*), and
# Python is started with -P so the checkout's own migr_rt/ does not shadow the installed one.
set -uo pipefail
out=${OUT:-benchmarks/results/gpu}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
site=${MIGR_SITE:-/tmp/migr-site}
py="python3 -P"
if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .whl/*.whl || exit 1
fi
python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --no-cache-dir --upgrade \
    --target "$site" . || exit 1
export PYTHONPATH="$site"
{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1
    $py -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
    git rev-parse HEAD 2>/dev/null
} > "$out/gpu_tests.log"
cat "$out/gpu_tests.log"
# 8 files come back from $OUT: this log, mi_kernels.{json,md,png}, bench_cuda.{json,md} and two plots
rc=0
timeout "${MIGR_GPU_TESTS_S:-180}" $py -m pytest -q -p no:cacheprovider -m gpu \
    tests/test_kernels_masked_attention.py tests/test_kernels_fused_mi.py tests/test_kernels_scoring.py 2>&1 \
    | tee -a "$out/gpu_tests.log" | tail -25 || rc=1
timeout "${MIGR_GPU_KERNELS_S:-200}" $py benchmarks/mi_kernels.py --device cuda --out "$out" 2>&1 | tail -40 || rc=1
timeout "${MIGR_GPU_BENCH_S:-200}" $py benchmarks/bench_report.py --device cuda --backends torch \
    --runs "${MIGR_GPU_BENCH_RUNS:-30}" --out "$out" 2>&1 | tail -30 || rc=1
exit $rc
