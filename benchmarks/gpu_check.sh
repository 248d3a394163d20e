#!/usr/bin/env bash
# Issue 27's GPU figures in one call, on a machine with one CUDA GPU and a python3 that holds torch (about
# 5-8 minutes on one H100, a guess: it has never run on one; the lent machines need nothing installed; each
# row is written as soon as it is measured, so a call cut short keeps what it measured):
#
#     bash benchmarks/gpu_check.sh            # writes gpu.txt, throughput*.json and *.log into $OUT (or /tmp/gpu-check)
#
# 1. the GPU, the driver and torch;
# 2. the demo data (`poise simulate --preset demo`, one process per core);
# 3. benchmarks/gpu_throughput.py: lite and paper-size encoders in float32, bf16 and fp16: frames/s through the
#    loop and through a hand-written loop, peak memory, and the host syncs in an epoch (expected: 1 in float32
#    and bf16, the once-per-epoch loss read; fp16's loss scaler adds one per step);
# 4. the same in float32 with TF32 matmuls (cuDNN's convolutions may use TF32 in every row: torch's default),
#    to see what TF32 would buy before it is measured against float32.
# DDP needs several GPUs (NCCL refuses two ranks on one): `torchrun --nproc_per_node N
# benchmarks/gpu_throughput.py ...` on such a machine.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-/tmp/gpu-check}"
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
data="${GPU_CHECK_DATA:-/tmp/mmfi-demo}"  # GPU_CHECK_PRESET=tiny GPU_CHECK_DATA=/tmp/tiny: a dry run on a CPU

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || echo "no nvidia-smi"
  python3 -c "import torch; c = torch.cuda.is_available(); print('torch', torch.__version__, 'cuda', torch.version.cuda,
                                                                 torch.cuda.get_device_name() if c else 'no GPU')"
  echo "$(nproc) CPU cores"; } | tee "$out/gpu.txt"
python3 -m poise simulate --preset "${GPU_CHECK_PRESET:-demo}" --out "$data" --quiet
python3 benchmarks/gpu_throughput.py --data "$data" --encoders lite paper --precisions float32 bf16 fp16 \
    --json "$out/throughput.json" 2>&1 | tee "$out/throughput.log"
python3 benchmarks/gpu_throughput.py --data "$data" --encoders lite paper --precisions float32 --tf32 \
    --json "$out/throughput-tf32.json" 2>&1 | tee "$out/throughput-tf32.log"
