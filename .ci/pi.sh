#!/usr/bin/env bash
# CI layer: the runtime on an emulated 64-bit Raspberry Pi OS, desktop and Lite (issue 6).
#
# Builds the project wheel, installs it with its base dependencies (aarch64 wheels) into each
# emulated flavour and checks there what tests/pi/test_pi.py says, against the same model run
# on x86. Needs ../shared/tools/pi-emulator.sh (skipped without it) and the CI venv (.venv,
# with the train extra: the x86 side converts the model). Run after .ci/run's own steps:
#
#   .ci/pi.sh                     PYTHON=path/to/python .ci/pi.sh   (another x86 venv)
#
# Caching: the emulator's set-up (QEMU and the two root filesystems, ~1.3 GB, a few minutes
# and root + the Debian registry the first time) stays in its own state folder,
# ~/.cache/pi-emulator, and is reused; `setup` is a no-op when it is there. The emulated
# site folders, which the tests empty and refill on every run (aarch64 wheels come from pip's
# cache after the first run), are ours alone in ~/.cache/edgeseg-ci/pi-emulator, so a run
# never disturbs, nor is disturbed by, someone else's use of the emulator.
set -euo pipefail
cd "$(dirname "$0")/.."

emulator=$(realpath ../shared/tools/pi-emulator.sh 2>/dev/null || true)
if [ ! -x "$emulator" ]; then
  echo "pi.sh: no ../shared/tools/pi-emulator.sh: emulated Raspberry Pi layer skipped"
  exit 0
fi
python=${PYTHON:-.venv/bin/python}
shared_state=${PI_EMU_HOME:-$HOME/.cache/pi-emulator}
own_state=${EDGESEG_PI_HOME:-$HOME/.cache/edgeseg-ci/pi-emulator}

start=$SECONDS
for lite in 0 1; do
  PI_EMU_HOME=$shared_state PI_EMU_LITE=$lite "$emulator" setup
done
mkdir -p "$own_state"
for part in qemu rootfs rootfs-lite; do
  ln -sfn "$shared_state/$part" "$own_state/$part"
done

# The two flavours side by side, one pytest process each (QEMU user mode emulates on one core;
# each process converts its own copy of the small model): "-k desktop" and its complement, so
# every test runs once. Each log is printed whole when both have ended.
logs=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$logs"' EXIT
for selection in "desktop" "not desktop"; do
  PI_EMU_HOME=$own_state EDGESEG_PI_EMULATOR=$emulator \
    nice -n 10 "$python" -m pytest tests/pi -n 0 -p no:cacheprovider -v -s -rs --durations=0 -k "$selection" \
    --basetemp "$logs/tmp-${selection// /-}" >"$logs/${selection// /-}.log" 2>&1 &
  pids+=($!)
done
status=0
for index in 0 1; do
  wait "${pids[$index]}" || status=1
done
pids=()
cat "$logs/desktop.log" "$logs/not-desktop.log"
echo "pi.sh: emulated Raspberry Pi layer took $((SECONDS - start)) s"
exit $status
