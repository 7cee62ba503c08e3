#!/usr/bin/env bash
# Everything that needs a GPU, as one call on a lent GPU machine (README "GPU session"):
# the GPU-marked kernel tests, the MI kernel benchmark and `migr-rt bench` on CUDA.
# Results and the test log go to $OUT (the device tool's folder) or benchmarks/results/gpu.
#
#   MIGR_RT_COMMIT=$(git rev-parse --short HEAD)   # pass it in the command: the copy there has no .git
#
# That machine has torch, triton, transformers, onnxruntime, OpenCV and matplotlib but no PyAV
# and no package registry: carry PyAV as a wheel in .whl/ (see README). migr-rt is copied into a
# scratch folder the way it installs (export/, kernels/ and training/ as migr_rt.*), and Python
# is started with -P so the checkout's own migr_rt/ does not shadow that copy.
# MIGR_GPU_DEVICE=cpu rehearses the script's mechanics on a CPU (kernel tests skip, reference paths only).
set -uo pipefail
out=${OUT:-benchmarks/results/gpu}
device=${MIGR_GPU_DEVICE:-cuda}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
site=${MIGR_SITE:-/tmp/migr-site}
py="python3 -P"
rm -rf "$site" && mkdir -p "$site" || exit 1
if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" .whl/*.whl || exit 1
fi
cp -r migr_rt "$site/migr_rt" && cp -r export "$site/migr_rt/export" && cp -r kernels "$site/migr_rt/kernels" \
    && cp -r training "$site/migr_rt/training" || exit 1
export PYTHONPATH="$site"
# OpenCV 5.x wheels have no Haar cascades: the face front end then reads the one carried in .whl/cascades/.
if [ -d .whl/cascades ]; then export MIGR_RT_HAAR_CASCADES="$PWD/.whl/cascades"; fi
$py -c "import av, cv2, transformers, migr_rt.export.fused_step, migr_rt.kernels" \
    || { echo "gpu_session: a package is missing (PyAV travels as a wheel in .whl/)"; exit 1; }
# OpenCV 5.x (without contrib) has no cv2.CascadeClassifier at all: the bench then cannot run its face stage.
haar=yes
$py -c "from migr_rt.face import HaarFaceDetector; HaarFaceDetector()" 2>&1 | tail -1 || haar=no
# 8 files come back from $OUT: this log, mi_kernels.{json,md,png}, bench_cuda.{json,md} and two plots
{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1
    $py -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
    echo "commit ${MIGR_RT_COMMIT:-unknown}"
} > "$out/gpu_tests.log"
cat "$out/gpu_tests.log"
rc=0
# One device call runs at most 600 s: each stage gets what is left of MIGR_GPU_TOTAL_S, most important first.
total=${MIGR_GPU_TOTAL_S:-570}
left() { local l=$((total - SECONDS)); [ "$l" -lt "$1" ] && l=$1; [ "$l" -gt "$2" ] && l=$2; echo "$l"; }
stage() { echo "== $1 at ${SECONDS}s" | tee -a "$out/gpu_tests.log"; }
stage "gpu-marked tests"
timeout "$(left 10 "${MIGR_GPU_TESTS_S:-110}")" $py -m pytest -q -p no:cacheprovider -m gpu -rA \
    tests/test_kernels_masked_attention.py tests/test_kernels_fused_mi.py tests/test_kernels_scoring.py \
    tests/test_graph_decode.py 2>&1 \
    | tee -a "$out/gpu_tests.log" | tail -25 || rc=1
stage "MI kernel benchmark"
timeout "$(left 10 "${MIGR_GPU_KERNELS_S:-230}")" $py benchmarks/mi_kernels.py --device "$device" --out "$out" 2>&1 \
    | tail -40 || rc=1
stage "migr-rt bench"
[ "$haar" = yes ] && timeout "$(left 10 "${MIGR_GPU_BENCH_S:-170}")" $py benchmarks/bench_report.py --device "$device" --backends torch \
    --runs "${MIGR_GPU_BENCH_RUNS:-20}" --out "$out" 2>&1 | tail -30 || rc=1
# Last, with what is left: every kernel test compiled natively (parametrised shapes, bf16 too), not only the
# gpu-marked ones; -v so a run cut short still logs each finished test.
stage "all kernel tests, native"
xdist=$($py -c "import xdist" 2>/dev/null && echo "-n 8")
timeout "$(left 10 600)" $py -m pytest -v --tb=line -p no:cacheprovider $xdist -m "not gpu" \
    tests/test_kernels_masked_attention.py tests/test_kernels_fused_mi.py tests/test_kernels_scoring.py 2>&1 \
    | grep -E "PASSED|FAILED|ERROR|SKIPPED|passed|failed|Error|error|assert" | tee -a "$out/gpu_tests.log" | tail -25 || rc=1
stage "done"
exit $rc
