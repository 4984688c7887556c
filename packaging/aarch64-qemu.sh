#!/bin/bash
# The frozen trainer for Linux aarch64, built and run for real on an amd64 Debian host, under
# qemu-user: an arm64 Debian root (mmdebstrap), the aarch64 torch wheel from PyPI, `mlds package
# build` inside it, then `mlds-train --version` and a one-epoch training of a small DS1 spec under
# emulation, and on the host: `mlds validate` of that result and its difference from the same
# spec trained on amd64 from source (bench/cross_arch.py). Needs root, network (Debian's mirror,
# PyPI) and ~8 GB of disk. Not run in CI (see docs/packaging.md for its time).
#
#     sudo packaging/aarch64-qemu.sh              # every stage; a stage already done is skipped
#     ARM64_ROOT=/srv/arm64 packaging/aarch64-qemu.sh
#
# Each stage leaves a stamp with its seconds in $ARM64_ROOT.stamps/, so a run stopped at any point
# continues with the same command. Outputs: $ARM64_ROOT/mlds-out/ (bundle, spec, results, report).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
ROOT=${ARM64_ROOT:-$HOME/.cache/mlds/arm64-root}
STAMPS=$ROOT.stamps
SUITE=${SUITE:-bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
HOST_PYTHON=${HOST_PYTHON:-$REPO/.venv/bin/python}
OUT=$ROOT/mlds-out  # /mlds-out inside the root

log() { echo "[$(date +%T)] $*"; }

stage() {
    local name=$1
    shift
    if [ -e "$STAMPS/$name" ]; then
        log "$name: done before ($(cat "$STAMPS/$name") s)"
        return
    fi
    log "$name: start"
    local started
    started=$(date +%s)
    "$@"
    mkdir -p "$STAMPS"
    echo $(($(date +%s) - started)) >"$STAMPS/$name"
    log "$name: done in $(cat "$STAMPS/$name") s"
}

host_tools() {
    apt-get install -y -q qemu-user-static binfmt-support mmdebstrap >/dev/null
}

binfmt() {  # every start: the registration does not survive a reboot
    [ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64
}

root_fs() {
    rm -rf "$ROOT"
    mmdebstrap --arch=arm64 --variant=apt --include=python3,python3-venv,python3-dev,binutils,ca-certificates \
        "$SUITE" "$ROOT" "$MIRROR"
}

mounts() {  # every start; undone on exit
    cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
    # a host behind a TLS-inspecting proxy trusts its CA through this bundle: the root must too
    cp "${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}" "$ROOT/etc/ssl/certs/host-ca-bundle.crt"
    # no /sys: the host's (amd64) has no MIDR_EL1 entry, and oneDNN's aarch64 CPU probe then
    # crashes `import torch` under qemu (segfault); without /sys, cpuinfo only warns
    for fs in proc dev; do
        mountpoint -q "$ROOT/$fs" || mount --bind "/$fs" "$ROOT/$fs"
    done
    trap 'for fs in dev proc; do umount "$ROOT/$fs" 2>/dev/null || true; done' EXIT
}

in_root() {
    chroot "$ROOT" env -i HOME=/root PATH=/opt/venv/bin:/usr/bin:/bin LANG=C.UTF-8 \
        PIP_CERT=/etc/ssl/certs/host-ca-bundle.crt SSL_CERT_FILE=/etc/ssl/certs/host-ca-bundle.crt "$@"
}

sources() {  # the checkout's committed tree, as a clean clone would have it
    rm -rf "$ROOT/src"
    mkdir -p "$ROOT/src"
    git -C "$REPO" archive HEAD | tar -x -C "$ROOT/src"
}

# PyPI's aarch64 torch wheel is the CUDA build (2.13.0+cu130, with nvidia-* requirements); it
# trains on the CPU all the same. TORCH_INDEX=https://download.pytorch.org/whl/cpu gives the CPU
# build where that index is reachable (it was not from this project's machine).
TORCH_INDEX=${TORCH_INDEX:-https://pypi.org/simple}

venv() {
    rm -rf "$ROOT/opt/venv"
    in_root python3 -m venv /opt/venv
    in_root /opt/venv/bin/pip install -q -c /src/constraints.txt torch==2.13.0 --index-url "$TORCH_INDEX"
    in_root /opt/venv/bin/pip install -q -c /src/constraints.txt -e '/src[package]'
}

build() {
    mkdir -p "$OUT"
    in_root sh -c 'cd /src && mlds package build --dist /mlds-out/dist --work /mlds-out/work'
}

smoke() {  # the frozen trainer with an empty environment, nothing of the venv on any path
    "$HOST_PYTHON" "$REPO/bench/cross_arch.py" spec "$OUT/smoke-spec.json"
    chroot "$ROOT" env -i /mlds-out/dist/mlds-train/mlds-train --version | tee "$OUT/version.txt"
    local started
    started=$(date +%s%N)
    chroot "$ROOT" env -i HOME=/tmp /mlds-out/dist/mlds-train/mlds-train /mlds-out/smoke-spec.json -o /mlds-out/result-aarch64.h5
    echo $((($(date +%s%N) - started) / 1000000)) >"$OUT/train-milliseconds-aarch64.txt"
}

follow_up() {  # one epoch on both architectures from the same state (trained on amd64)
    "$HOST_PYTHON" "$REPO/bench/cross_arch.py" follow-up "$OUT/follow"
    chroot "$ROOT" sh -c 'cd /mlds-out/follow && env -i HOME=/tmp /mlds-out/dist/mlds-train/mlds-train second.json -o second-aarch64.h5'
}

compare() {
    "$HOST_PYTHON" "$REPO/bench/cross_arch.py" compare "$OUT/smoke-spec.json" "$OUT/result-aarch64.h5" \
        --amd64-result "$OUT/result-amd64.h5" | tee "$OUT/report.txt"
    "$HOST_PYTHON" "$REPO/bench/cross_arch.py" compare "$OUT/follow/second.json" "$OUT/follow/second-aarch64.h5" \
        --amd64-result "$OUT/follow/second.h5" --resume "$OUT/follow/first.h5" | tee "$OUT/report-follow-up.txt"
}

main() {
    [ "$(id -u)" = 0 ] || { echo "run as root (chroot, mounts, binfmt)" >&2; exit 2; }
    stage host-tools host_tools
    binfmt
    stage root-fs root_fs
    mkdir -p "$OUT"
    mounts
    stage sources sources
    stage venv venv
    stage build build
    stage smoke smoke
    stage follow-up follow_up
    compare
    log "stage seconds: $(for f in "$STAMPS"/*; do printf '%s=%s ' "$(basename "$f")" "$(cat "$f")"; done)"
}

main "$@"
