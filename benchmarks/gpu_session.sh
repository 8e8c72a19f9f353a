#!/usr/bin/env bash
# Issue 20's GPU measurements in one call of a lent GPU, most important first, each step
# under its own time limit and all of them under one deadline, so that a slow or failing
# step costs only itself. Its files land in $OUT (at most 8 come back from the device).
#
#   bash benchmarks/gpu_session.sh wheels   # here, once: the packages the GPU machine lacks, as wheels in .whl/
#   bash benchmarks/gpu_session.sh          # there: device run, carry [".whl"], timeout_s 590
#   DRY=1 bash benchmarks/gpu_session.sh    # here: every step on a tiny model on the CPU (fp32), to try the script
#
# The GPU machine has PyTorch, transformers, numpy, pandas, matplotlib and scipy (Python 3.12;
# the device tool's KINDS.md), but not TransformerLens and what it imports; coax_nb itself runs
# from this checkout (PYTHONPATH).
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = wheels ]; then
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
        transformer-lens==4.3.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 httpx2==2.17.0 \
        httpcore2==2.17.0 trio==0.22.2 outcome==1.3.0.post0 truststore==0.10.5 sniffio==1.3.1 \
        beartype==0.23.1 typeguard==4.6.1 fancy-einsum==0.0.3
    ls .whl
    exit
fi

OUT=${OUT:-/tmp/gpu_session_out}
mkdir -p "$OUT"

run_all() {
    export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1  # nothing is reachable there
    if [ -z "${DRY:-}" ]; then
        nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
            || { echo "the wheels did not install: run 'bash benchmarks/gpu_session.sh wheels' here first"; exit 1; }
        export PYTHONPATH=/tmp/site:$PWD
        DEV=(--device cuda)
        GPT2=(--prompts 96)
        BIG=(--prompts 16 --length 16 --top-r 256 --synergy-top 64)
        HALF=bf16
    else
        export PYTHONPATH=$PWD
        DEV=(--device cpu)
        GPT2=(--layers 4 --heads 4 --d-model 64 --vocab 500 --prompts 4 --length 8)
        BIG=(--layers 4 --heads 4 --d-model 64 --vocab 500 --prompts 4 --length 8 --top-r 16 --synergy-top 4)
        HALF=fp32  # half precision is refused on a CPU
    fi
    python3 -c "import torch, transformers, transformer_lens, coax_nb; print('torch', torch.__version__, \
    'transformers', transformers.__version__, 'coax_nb', coax_nb.__version__)" || exit 1

    START=$SECONDS
    DEADLINE=${DEADLINE:-560}  # seconds for all the steps: a 590 s call with the install and the copy back
    step() {  # step NAME CAP COMMAND...: run under min(CAP, what the deadline leaves)
        local name=$1 cap=$2 left=$((DEADLINE - (SECONDS - START)))
        shift 2
        [ "$left" -lt "$cap" ] && cap=$left
        if [ "$cap" -lt 20 ]; then echo "=== $name: skipped, ${left}s left"; return; fi
        echo "=== $name (at most ${cap}s): $*"
        local t0=$SECONDS
        timeout "$cap" "$@"
        echo "=== $name: exit $?, $((SECONDS - t0))s"
    }

    # the targets: scan <= 0.2 s bf16 and >= 20x loop (b); <= 0.6 s fp32 and >= 10x loop (b) (TF32 off)
    step peers_bf16 120 python3 benchmarks/peers.py "${DEV[@]}" "${GPT2[@]}" --dtype "$HALF" --json "$OUT/peers_bf16.json"
    step peers_fp32 100 python3 benchmarks/peers.py "${DEV[@]}" "${GPT2[@]}" --dtype fp32 --skip a,c --json "$OUT/peers_fp32.json"
    # correctness on CUDA: the organisms' scores against the CPU's, bf16 against fp32
    [ -z "${DRY:-}" ] && step gpu_check 90 python3 benchmarks/gpu_check.py
    # the 144 x 144 synergy (<= 5 s bf16) and a pruning step, both dtypes
    step gpu 150 python3 benchmarks/gpu.py "${DEV[@]}" "${GPT2[@]}" --skip-naive --json "$OUT/gpu.json"
    # the 6.7B scan (<= 5 s) and its top-64 synergy, planned first
    step big 120 python3 benchmarks/big.py "${DEV[@]}" "${BIG[@]}" --json "$OUT/big.json"
    # where the bf16 scan's time goes: the device's busy share decides CUDA graphs / torch.compile
    step profile 60 python3 benchmarks/profile_scan.py "${DEV[@]}" "${GPT2[@]}" --dtype "$HALF" --top 15 --json "$OUT/profile.json"
    step scaling 120 python3 benchmarks/scaling.py "${DEV[@]}" --json "$OUT/scaling.json" --figure "$OUT/scaling.png"
    echo "=== done in $((SECONDS - START))s; files: $(ls "$OUT" | tr '\n' ' ')"
}

run_all 2>&1 | tee "$OUT/session.log"
