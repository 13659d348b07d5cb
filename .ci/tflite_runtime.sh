#!/usr/bin/env bash
# CI: the test suite a second time, with tflite-runtime as the interpreter (issue 6).
#
# A second venv (CPython 3.11, the newest tflite-runtime 2.14 supports) installed as a user of
# the `tflite-runtime` extra installs it: `pip install 'edgeseg[tflite-runtime]'`, i.e. LiteRT
# and tflite-runtime side by side, numpy < 2 and OpenCV 4.x, no TensorFlow. EDGESEG_BACKEND
# makes tflite_runtime the default backend, so every runtime test that does not name a
# backend runs on it; a small pytest plugin records the interpreters created and fails the
# run unless the default ones were all tflite_runtime (and there were some). Tests that need
# TensorFlow skip; the runtime tests use the small models built by the main venv (.venv,
# made by .ci/run; PYTHON=... names another) with `python tests/conftest.py DIR`.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.ci/venv-tflite-runtime
python311=${PYTHON311:-python3.11}
main_python=${PYTHON:-.venv/bin/python}
start=$SECONDS
rm -rf "$venv"
"$python311" -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check -e ".[tflite-runtime,test]"
"$venv/bin/python" - <<'EOF'
import importlib.util, numpy
assert importlib.util.find_spec("tensorflow") is None, "the tflite-runtime venv must not have TensorFlow"
assert importlib.util.find_spec("tflite_runtime") is not None, "tflite-runtime is not installed"
assert numpy.__version__.startswith("1."), f"tflite-runtime 2.14 needs numpy 1.x, got {numpy.__version__}"
EOF

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
TF_CPP_MIN_LOG_LEVEL=3 "$main_python" tests/conftest.py "$scratch/models" >"$scratch/build.log" 2>&1 \
  || { cat "$scratch/build.log"; exit 1; }

# The plugin: which backend each interpreter made in the test process came from.
cat > "$scratch/backend_check.py" <<'EOF'
import runtime.backend

_calls = []
_find_backend = runtime.backend.find_backend


def _recording_find_backend(name=None):
    found = _find_backend(name)
    _calls.append((name, found.name))
    return found


runtime.backend.find_backend = _recording_find_backend


def pytest_sessionfinish(session, exitstatus):
    defaults = [got for asked, got in _calls if asked is None]
    others = sorted({got for got in defaults if got != "tflite_runtime"})
    print(f"\nbackend check: {len(defaults)} interpreters on the default backend "
          f"({len(_calls) - len(defaults)} more with a backend named by the test)")
    if not defaults or others:
        print(f"backend check FAILED: the default backend must be tflite_runtime here, got {others or 'no interpreter'}")
        session.exitstatus = 1
EOF

# -n 0: in one process, where the plugin sees every interpreter (the suite's own -n 2 would
# spread them over worker processes).
EDGESEG_TEST_MODELS=$scratch/models EDGESEG_BACKEND=tflite_runtime PYTHONPATH=$scratch \
  nice -n 10 "$venv/bin/python" -m pytest -n 0 -p backend_check -p no:cacheprovider -q -rs
echo "tflite_runtime.sh: took $((SECONDS - start)) s"
