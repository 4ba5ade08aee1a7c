#!/usr/bin/env bash
# The GPU figures of experiments/README.md's performance table, in one command on one GPU (H100 for the
# reference column):  bash experiments/gpu_bench.sh
# It first checks that cuDNN attention (the GPU default) matches XLA attention, forward and
# gradients, and stops there if it does not: a wrong kernel's timings are worth nothing.
# On a machine without internet, put wheels of ml_collections and tensorflow-datasets (and their
# needs) in .whl/ first; they are installed into /tmp/site.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python experiments/attention_parity.py                      # cuDNN vs XLA: forward + gradients, bf16; exits 1 on a mismatch
python -m pytest -q -m gpu tests/blocks                     # cuDNN attention vs the float64 reference
B="experiments/bench_step.py --config=configs/gpt2_124m.py --steps=20 --warmup=3"
python $B --batch_sizes=12,16,32,48                         # cuDNN flash attention (the default on GPU)
python $B --batch_sizes=16,32 --config.model.attention_backend=xla   # plain XLA attention
python $B --batch_sizes=32 --config.model.remat=dots_saveable       # memory knob: what it costs
python $B --batch_sizes=16 --real_data                      # the real input pipeline vs synthetic
