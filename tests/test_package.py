"""The wheel carries what a PC install needs: the pretrained weights and the calibration photos.

The wheel is built from a copy of the sources and installed with `[train]` into a fresh virtual
environment. TensorFlow and the other dependencies are not downloaded again: the fresh
environment sees this environment's third-party packages through a `.pth` file (edgeseg's own
files excluded), and pip installs with `--no-index`, so it must find every `[train]`
requirement already satisfied there. edgeseg itself, its weights and its photographs come
from the wheel alone (checked by where they are imported from).
"""

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from conftest import REPO
from runtime.metadata import read_metadata
from runtime.palette import VOC_CLASSES

pytest.importorskip("tensorflow")

SOURCES = ("pyproject.toml", "README.md", "edgeseg", "runtime", "converters", "calibration_data")
OWN = ("edgeseg", "__editable__", "runtime", "converters", "calibration_data", "pip", "setuptools",
       "pkg_resources", "_distutils_hack", "distutils-precedence")  # fmt: skip


def _run(args, cwd, **env):
    result = subprocess.run(args, cwd=cwd, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **env},
                            capture_output=True, text=True, timeout=900)  # fmt: skip
    assert result.returncode == 0, f"{args[:3]}: {result.stderr[-3000:]}"
    return result.stdout


def _build_wheel(work: Path) -> Path:
    import shutil

    source = work / "source"
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            source.mkdir(exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(work / "dist"), str(source)], work)
    (wheel,) = (work / "dist").glob("edgeseg-*-py3-none-any.whl")
    return wheel


def _fresh_venv(work: Path) -> tuple[Path, Path]:
    """A new virtual environment that sees this one's third-party packages, not edgeseg."""
    venv = work / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], work)
    python = venv / "bin" / "python"
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], work).strip())
    shared = work / "dependencies"
    shared.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not entry.name.startswith(OWN):
            (shared / entry.name).symlink_to(entry)
    (site / "test_dependencies.pth").write_text(f"{shared}\n")
    return python, site


@pytest.mark.slow
def test_wheel_with_train_extra_converts_without_calibration_flag(tmp_path):
    wheel = _build_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    for name in ("edgeseg/pretrained/pascalvoc_deeplabv3_mnv2_1.0.npz", "edgeseg/pretrained/pascalvoc_deeplabv3_mnv2_0.5.npz",
                 "edgeseg/pretrained/LICENSE", "edgeseg/pretrained/README.md", "calibration_data/SOURCES.csv"):  # fmt: skip
        assert name in names, name
    assert len([n for n in names if n.startswith("calibration_data/") and n.endswith(".jpg")]) == 88

    python, site = _fresh_venv(tmp_path)
    _run([str(python), "-m", "pip", "install", "-q", "--no-index", f"{wheel}[train]"], tmp_path)
    where = json.loads(_run([str(python), "-c", "import json, calibration_data, edgeseg, runtime; print(json.dumps("
                             "[calibration_data.__file__, edgeseg.__file__, runtime.__file__]))"], tmp_path))  # fmt: skip
    assert all(Path(path).is_relative_to(site) for path in where), where

    run, home = tmp_path / "run", tmp_path / "home"
    run.mkdir()
    home.mkdir()
    _run([str(python), "-m", "edgeseg", "convert", "--preset", "deeplabv3_mnv2", "--weights", "pascalvoc",
          "--alpha", "0.5", "--input-size", "97x129", "--num-calibration", "8", "--out", "m.tflite",
          "--report", "r.json"], run, HOME=str(home))  # fmt: skip
    report = json.loads((run / "r.json").read_text())
    assert Path(report["calibration"]["folder"]) == site / "calibration_data"
    assert report["calibration"]["images"] == 8 and report["calibration"]["skipped"] == 0
    assert read_metadata(run / "m.tflite")["classes"] == list(VOC_CLASSES)
