"""The runtime stays TensorFlow-free: checked in fresh processes."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
FORBIDDEN = ("tensorflow", "keras", "edgeseg", "converters")


def run_python(code: str) -> subprocess.CompletedProcess:
    # `python -c` puts the working directory first on sys.path: the repository's own packages.
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, capture_output=True, text=True,
                          timeout=120)  # fmt: skip


def test_import_runtime_loads_no_tensorflow():
    result = run_python(f"""
        import json, sys
        import runtime
        import runtime.bench, runtime.display, runtime.inspect, runtime.sinks, runtime.sources, runtime.video
        from runtime import Segmenter
        print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {FORBIDDEN!r})))
    """)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def test_run_and_bench_work_with_tensorflow_uninstalled(tiny_models, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    cv2.imwrite(str(images / "a.png"), np.zeros((30, 40, 3), np.uint8))
    model = str(tiny_models["int8"])
    # An import hook makes TensorFlow and Keras unimportable, as on a base install.
    result = run_python(f"""
        import json, sys
        class NoTensorFlow:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("tensorflow", "keras", "tf_keras"):
                    raise ImportError("No module named " + repr(name))
        sys.meta_path.insert(0, NoTensorFlow())
        from typer.testing import CliRunner
        from edgeseg.cli import app
        runner = CliRunner()
        bench = runner.invoke(app, ["bench", {model!r}, "--runs", "2", "--json"])
        run = runner.invoke(app, ["run", {model!r}, "--images", {str(images)!r}, "--output",
                                  {str(tmp_path / "out")!r} + "/", "--no-display", "--json"])
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras"))
        print(json.dumps([bench.exit_code, bench.output, run.exit_code, run.output, loaded]))
    """)
    assert result.returncode == 0, result.stderr
    bench_code, bench_output, run_code, run_output, loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded == []
    assert bench_code == 0, bench_output
    assert run_code == 0, run_output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a_labels.png", "a_overlay.png"]
