#!/usr/bin/env bash
# Everything that needs a GPU on a lent GPU machine (README "GPU session"): the kernel tests compiled
# natively (the gpu-marked ones and every parametrised one), `migr-rt bench` on CUDA and the MI kernel
# benchmark. Results and the test log go to $OUT (the device tool's folder) or benchmarks/results/gpu.
#
#   MIGR_RT_COMMIT=$(git rev-parse --short HEAD)   # pass it in the command: the copy there has no .git
#
# That machine has torch, triton, transformers and matplotlib but no PyAV, an OpenCV without Haar
# cascades (5.x), and no package registry. A call carries 64 MiB at most, too little for both wheels,
# so a session makes two calls back to back while the machine is warm (README "GPU session"):
#   MIGR_GPU_PART=tests, carrying .cvwhl/ (opencv-python-headless 4.x): the tests, and OpenCV installed
#     under /tmp/migr-cv, where the next call on the same machine finds it;
#   MIGR_GPU_PART=bench, carrying .whl/ (PyAV, and the Haar cascade in .whl/cascades/): the benchmarks.
# migr-rt is copied into a scratch folder the way it installs (export/, kernels/ and training/ as
# migr_rt.*), and Python is started with -P so the checkout's own migr_rt/ does not shadow that copy.
# MIGR_GPU_DEVICE=cpu rehearses the script's mechanics on a CPU (kernel tests skip, reference paths only).
set -uo pipefail
out=${OUT:-benchmarks/results/gpu}
device=${MIGR_GPU_DEVICE:-cuda}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
site=${MIGR_SITE:-/tmp/migr-site}
py="python3 -P"
rm -rf "$site" && mkdir -p "$site" || exit 1
if compgen -G ".whl/*.whl" > /dev/null; then  # PyAV (part bench)
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" .whl/*.whl || exit 1
fi
cp -r migr_rt "$site/migr_rt" && cp -r export "$site/migr_rt/export" && cp -r kernels "$site/migr_rt/kernels" \
    && cp -r training "$site/migr_rt/training" || exit 1
export PYTHONPATH="$site"
# OpenCV 5.x (the GPU image's) has no cv2.CascadeClassifier. A 4.x wheel is too big to travel with PyAV in one
# call (64 MiB a call), so part "tests" carries it in .cvwhl/ and installs it where the next call finds it.
cvsite=/tmp/migr-cv
if compgen -G ".cvwhl/*.whl" > /dev/null; then
    rm -rf "$cvsite" && python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$cvsite" \
        .cvwhl/*.whl || exit 1
fi
if [ -d "$cvsite" ]; then export PYTHONPATH="$site:$cvsite"; fi
# OpenCV wheels without data files: the face front end then reads the Haar cascade carried in .whl/cascades/.
if [ -d .whl/cascades ]; then export MIGR_RT_HAAR_CASCADES="$PWD/.whl/cascades"; fi
$py -c "import cv2, transformers, migr_rt.export.fused_step, migr_rt.kernels" \
    || { echo "gpu_session: a package is missing"; exit 1; }
haar=yes
$py -c "import cv2; print('OpenCV', cv2.__version__, 'CascadeClassifier:', hasattr(cv2, 'CascadeClassifier'))"
$py -c "import av; from migr_rt.face import HaarFaceDetector; HaarFaceDetector()" 2>&1 | tail -1 || haar=no
part=${MIGR_GPU_PART:-all}  # all | tests | bench
# 8 files come back from $OUT: this log, mi_kernels.{json,md,png}, bench_cuda.{json,md} and two plots
{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1
    $py -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
    echo "commit ${MIGR_RT_COMMIT:-unknown}, part $part, face stage: $haar"
} > "$out/gpu_tests.log"
cat "$out/gpu_tests.log"
rc=0
# One device call runs at most 600 s: each stage gets what is left of MIGR_GPU_TOTAL_S, most important first.
total=${MIGR_GPU_TOTAL_S:-570}
left() { local l=$((total - SECONDS)); [ "$l" -lt "$1" ] && l=$1; [ "$l" -gt "$2" ] && l=$2; echo "$l"; }
stage() { echo "== $1 at ${SECONDS}s" | tee -a "$out/gpu_tests.log"; }
kernel_tests="tests/test_kernels_masked_attention.py tests/test_kernels_fused_mi.py tests/test_kernels_scoring.py"
if [ "$part" != bench ]; then
    stage "gpu-marked tests"
    timeout "$(left 10 "${MIGR_GPU_TESTS_S:-110}")" $py -m pytest -q -p no:cacheprovider -m gpu -rA $kernel_tests \
        tests/test_graph_decode.py 2>&1 | tee -a "$out/gpu_tests.log" | tail -25 || rc=1
    # every kernel test compiled natively (parametrised shapes, bf16 too), not only the gpu-marked ones;
    # -v so a run cut short still logs each finished test
    stage "all kernel tests, native"
    xdist=$($py -c "import xdist" 2>/dev/null && echo "-n 8")
    timeout "$(left 10 "${MIGR_GPU_NATIVE_S:-150}")" $py -m pytest -v --tb=line -p no:cacheprovider $xdist \
        -m "not gpu" $kernel_tests 2>&1 | grep -E "PASSED|FAILED|ERROR|SKIPPED|passed|failed|Error|error|assert" \
        | tee -a "$out/gpu_tests.log" | tail -25 || rc=1
fi
if [ "$part" != tests ]; then
    stage "migr-rt bench"
    if [ "$haar" = yes ]; then
        timeout "$(left 10 "${MIGR_GPU_BENCH_S:-170}")" $py benchmarks/bench_report.py --device "$device" \
            --backends torch --runs "${MIGR_GPU_BENCH_RUNS:-20}" --out "$out" 2>&1 | tail -30 || rc=1
    else
        echo "skipped: no PyAV or no cv2.CascadeClassifier here (run part tests with .cvwhl/ first)" \
            | tee -a "$out/gpu_tests.log"; rc=1
    fi
    stage "MI kernel benchmark"
    timeout "$(left 10 "${MIGR_GPU_KERNELS_S:-230}")" $py benchmarks/mi_kernels.py --device "$device" --out "$out" \
        2>&1 | grep -v Warning | grep -v "scaled_dot_product_attention(" | tail -30 || rc=1
fi
stage "done"
exit $rc
