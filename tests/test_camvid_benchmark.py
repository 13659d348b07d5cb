"""`benchmarks/camvid.py`, the CamVid protocol and the one-command recipe, on a few frames.

Numbers are meaningless at this size; these check that every step runs and writes what the
README says: the protocol's results and reuse of finished runs, and the recipe's best.keras,
int8.tflite at 360x480 and recipe.json with its wall time.
"""

from __future__ import annotations

import json
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.camvid import CHANGES, RECIPES, change_flags, recipe_command, train_command  # noqa: E402
from runtime import Segmenter  # noqa: E402

SCRIPT = REPO / "benchmarks" / "camvid.py"


def _script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=REPO, timeout=1200)


def _option(command: list[str], option: str) -> str:
    assert command.count(option) == 1, command
    return command[command.index(option) + 1]


def _args(**given) -> Namespace:
    values = dict(data=Path("camvid"), backbone_weights="imagenet", batch_size=8, alpha=None)
    return Namespace(**{**values, "epochs": None, "input_size": None, **given})


def test_changes_replace_todays_flags_and_given_flags_replace_the_changes():
    images, masks, out = Path("i"), Path("m"), Path("o")
    flags, with_val = change_flags("pascal+crop384")
    assert not with_val and change_flags("trainval")[1]
    command = train_command(_args(), images, masks, True, flags, out)
    assert _option(command, "--input-size") == "384x384" and _option(command, "--epochs") == "40"
    assert _option(command, "--weights") == "pascalvoc" and "--backbone-weights" not in command
    assert _option(command, "--val-prefix") == "0006R0"
    today = train_command(_args(), images, masks, False, [], out)
    assert _option(today, "--input-size") == "256x256" and _option(today, "--epochs") == "90"
    assert "--val-prefix" not in today
    given = train_command(_args(epochs=2, input_size="97x129"), images, masks, True, flags, out)
    assert _option(given, "--input-size") == "97x129" and _option(given, "--epochs") == "2"
    assert set(RECIPES["best"]) <= set(CHANGES)
    with pytest.raises(SystemExit, match="unknown change 'nope'"):
        change_flags("pascal+nope")


def _options(command: list[str]) -> dict[str, str | None]:
    """Each option of a command line and its value (None for a switch)."""
    return {token: (command[index + 1] if index + 1 < len(command) and not command[index + 1].startswith("--") else None)
            for index, token in enumerate(command) if token.startswith("--")}  # fmt: skip


def test_the_readme_gives_the_recipes_own_train_flags():
    """The `edgeseg train` flags the README says reproduce the recipe are the ones `--recipe best` runs."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index("```bash\n", text.index("**The recommended recipe**")) + len("```bash\n")
    block = text[start : text.index("```", start)].replace("\\\n", " ")
    readme = next(line.split()[1:] for line in block.splitlines() if line.startswith("edgeseg train "))
    recipe = recipe_command(_args(recipe="best"), Path("DIR"), Path("DIR"), Path("OUT"))
    paths = ("--images", "--masks", "--classes-file", "--out")  # the user's own
    assert {k: v for k, v in _options(readme).items() if k not in paths} == {
        k: v for k, v in _options(recipe[1:]).items() if k not in paths
    }


@pytest.mark.slow
def test_protocol_runs_score_the_unseen_recording_and_reuse_finished_runs(camvid, tmp_path):
    pytest.importorskip("tensorflow")  # the script trains and converts with edgeseg
    args = ["--data", str(camvid), "--out", str(tmp_path), "--runs", "base", "--epochs", "1", "--limit", "4",
            "--input-size", "97x129", "--batch-size", "4", "--alpha", "0.35", "--backbone-weights", "none",
            "--num-calibration", "4"]  # fmt: skip
    first = _script(*args)
    assert first.returncode == 0, first.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())["runs"]["base"]
    for part in ("unseen", "val"):
        for kind in ("float", "int8"):
            assert 0 <= results[part][kind]["miou"] <= 1
    assert results["train"]["last_unseen_miou"] is not None  # selected on 0006R0
    assert "| base |" in (tmp_path / "results.md").read_text()
    held_out = sorted(path.name[:6] for path in (tmp_path / "data" / "unseen" / "images").iterdir())
    trained = {path.name[:6] for path in (tmp_path / "data" / "train" / "images").iterdir()}
    assert held_out == ["0006R0"] * 4 and "0006R0" not in trained
    trained_at = (tmp_path / "base" / "best.keras").stat().st_mtime_ns
    again = _script(*args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "edgeseg train" not in again.stderr and "edgeseg convert" not in again.stderr
    assert (tmp_path / "base" / "best.keras").stat().st_mtime_ns == trained_at


@pytest.mark.slow
def test_the_recipe_writes_best_keras_and_int8_tflite_at_360x480_and_its_wall_time(camvid, tmp_path):
    pytest.importorskip("tensorflow")  # the script trains and converts with edgeseg
    out = tmp_path / "recipe"
    result = _script("--data", str(camvid), "--recipe", "best", "--out", str(out), "--epochs", "1", "--limit", "4",
                     "--input-size", "97x129", "--batch-size", "4", "--num-calibration", "4")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((out / "recipe.json").read_text())
    assert record["frames"] == 12 and record["wall_seconds"] > 0  # 4 of each part: train, 0006R0, val
    command = record["train_command"]
    assert _option(command, "--weights") == "pascalvoc" and "--val-prefix" not in command
    assert f"in {record['wall_seconds'] / 60:.1f} min" in result.stdout
    assert (out / "best.keras").is_file() and not [path for path in out.iterdir() if ".part" in path.name]
    segmenter = Segmenter(out / "int8.tflite")
    assert segmenter.input_size == (360, 480)
    names = (camvid / "classes.txt").read_text().split()
    assert segmenter.classes == names and segmenter.spec.ignore_index == 11  # CamVid's, embedded
    report = json.loads((out / "convert.json").read_text())
    assert report["quantization"] == "int8" and report["calibration"]
