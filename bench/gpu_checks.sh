#!/bin/bash
# The GPU checks in one pass (for a lent CUDA machine with torch, h5py, click, lxml installed):
# the gpu-marked tests, the DS1 speed table for K 256..8192, the DS3 (LSTM) table for K 8..4096
# against cuDNN nn.LSTM one network at a time (issue "DS3 networks that learn"), and a profile.
# Outputs go to $OUT (default /tmp/gpu-checks). Run from the repository root.
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/gpu-checks}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import sys, torch; print(sys.version.split()[0], torch.__version__, torch.cuda.get_device_name())"
timeout "${TEST_SECONDS:-150}" python3 -m pytest -q -m gpu -p no:cacheprovider tests/test_boinc_app_standalone.py 2>&1 | tee "$OUT/gpu-tests.txt"
timeout "${BENCH_SECONDS:-300}" python3 bench/train_speed.py --device cuda --ks "${KS:-256,512,1024,2048,4096,8192}" --batches "${BATCHES:-8}" 2>&1 | tee "$OUT/train-speed-cuda.txt"
timeout "${DS3_SECONDS:-240}" python3 bench/train_speed.py --dataset DS3 --device cuda --length 50 --ks "${DS3_KS:-8,64,256,1024,2048,4096}" --batches "${BATCHES:-8}" --repeats 1 2>&1 | tee "$OUT/train-speed-cuda-ds3.txt"
timeout "${PROFILE_SECONDS:-150}" python3 bench/profile_epoch.py --device cuda --networks "${PROFILE_K:-2048}" --batches "${PROFILE_BATCHES:-2}" 2>&1 | tee "$OUT/profile-cuda.txt"
