"""Training on several machines: two worker processes on 127.0.0.1 against one process alone.

Each run is a fresh process (TensorFlow fixes its cluster at start), on tiny random data.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeseg.cluster import Cluster, cluster_from_env
from runtime.errors import EdgesegError

# One training run through the Python API; argv: data folder, run folder, epochs, resume (0/1),
# and optionally a step after which this process dies as a killed machine would.
WORKER = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    import edgeseg
    from edgeseg import loop
    from edgeseg.presets import get_config

    data, out, epochs, resume = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
    if len(sys.argv) > 5:
        die_after, fit = int(sys.argv[5]), loop.fit

        def dying_fit(*args, **kwargs):
            def on_step(step):
                if step == die_after:
                    os._exit(9)
            return fit(*args, **kwargs, on_step=on_step)

        loop.fit = dying_fit
    # Pascal VOC weights: a random backbone with frozen batch norm hands the ASPP near-zero,
    # degenerate features whose gradients are rounding noise. No dropout: each replica draws its
    # own mask, which a single process would not. SGD at a small rate, for two steps only: on
    # random labels training amplifies rounding differences of the reduction order tens of times
    # a step. On an AVX-512 Xeon, one process with one thread against two ends 2e-9 apart after
    # one step, 5e-7 after two, 2e-5 after three and 3e-4 after four; replicas that normalise by
    # their own half-batch (batch norm not synchronized) end 1e-2 apart after two.
    # No crop is padded with ignored pixels: each replica averages the loss over its own counted
    # pixels, which equals the global batch's mean only when every replica counts as many.
    config = get_config(num_classes=3, input_size=(33, 33), backbone_alpha=0.5).replace(aspp_dropout=0.0)
    result = edgeseg.train(config, data / "img", data / "msk", out, val_images=data / "img", val_masks=data / "msk",
                           classes=3, weights="pascalvoc", batch_size=4, epochs=epochs, scale_range=(1.25, 1.5),
                           optimizer="sgd", lr=5e-4, seed=3, resume=resume)
    print("steps", result.steps)
""")


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def _tiny_data(root: Path) -> Path:
    """Four 80x80 random images (one global batch of 4) and masks of three classes (no ignored pixels)."""
    rng = np.random.default_rng(0)
    for folder in ("img", "msk"):
        (root / folder).mkdir(parents=True)
    for index in range(4):
        cv2.imwrite(str(root / "img" / f"{index}.png"), rng.integers(0, 255, (80, 80, 3), dtype=np.uint8))
        cv2.imwrite(str(root / "msk" / f"{index}.png"), rng.integers(0, 3, (80, 80), dtype=np.uint8))
    return root


def _environment(tf_config: dict | None) -> dict:
    env = {key: value for key, value in os.environ.items() if key != "TF_CONFIG"}
    env.update(CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2")
    if tf_config is not None:
        env["TF_CONFIG"] = json.dumps(tf_config)
    return env


def _start(args: list, tf_config: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", WORKER, *map(str, args)], env=_environment(tf_config),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def _finish(process: subprocess.Popen, timeout: float = 600) -> str:
    stdout, stderr = process.communicate(timeout=timeout)
    assert process.returncode == 0, stderr[-3000:]
    return stdout


def _start_workers(outs: list[Path], data: Path, epochs: int, resume: bool = False, die_after=None):
    """One process per run folder, worker i with TF_CONFIG naming both; worker 1 may die after a step."""
    workers = [f"127.0.0.1:{port}" for port in _free_ports(len(outs))]
    return [_start([data, out, epochs, int(resume), *([die_after] if die_after and index == 1 else [])],
                   {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
            for index, out in enumerate(outs)]  # fmt: skip


def _weights(path: Path) -> list[np.ndarray]:
    from edgeseg.model import load_model

    return load_model(path).get_weights()


def _largest_difference(a: Path, b: Path, relative: bool = False) -> float:
    """The largest difference between the weights of two models (relative to the second's size)."""
    return max(float(np.max(np.abs(x - y) / (np.abs(y) + 1e-3 if relative else 1.0)))
               for x, y in zip(_weights(a), _weights(b)))  # fmt: skip


@pytest.mark.slow
def test_two_workers_train_as_one_process_with_the_global_batch(tmp_path):
    pytest.importorskip("tensorflow")
    data = _tiny_data(tmp_path / "data")
    started = time.perf_counter()
    chief, worker = _start_workers([tmp_path / "chief", tmp_path / "worker"], data, epochs=2)
    single = _start([data, tmp_path / "single", 2, 0])
    for process in (chief, worker):
        assert "steps 2" in _finish(process)
    seconds = time.perf_counter() - started
    assert "steps 2" in _finish(single)

    difference = _largest_difference(tmp_path / "chief" / "last.keras", tmp_path / "single" / "last.keras")
    relative = _largest_difference(tmp_path / "chief" / "last.keras", tmp_path / "single" / "last.keras", True)
    moved = _backbone_movement(tmp_path / "single" / "last.keras")
    print(f"two workers: {seconds:.0f} s; largest weight difference to one process {difference:.2e} "
          f"(relative {relative:.2e}); training moved backbone weights by up to {moved:.2e}")
    assert moved > 1e-3  # the weights compared did train
    for name in ("best.keras", "history.csv", "curves.png", "classes.json"):
        assert (tmp_path / "chief" / name).is_file(), name
    assert not (tmp_path / "worker").exists()  # the other worker wrote nothing
    with zipfile.ZipFile(tmp_path / "chief" / "last.keras") as archive:
        state = json.loads(archive.read("edgeseg_training.json"))
    assert state["step"] == 2 and len(state["history"]) == 2
    _expect_equal_weights(difference)


def _expect_equal_weights(difference: float) -> None:
    assert difference < 1e-5, f"weights differ from one process's by {difference:.2e}"


def _backbone_movement(path: Path) -> float:
    """The largest change of a backbone weight from the Pascal VOC weights the runs start from."""
    from edgeseg.backbone import is_backbone_layer
    from edgeseg.model import config_of, load_model
    from edgeseg.pretrained import fine_tune_config, fine_tune_model

    model = load_model(path)
    start = fine_tune_model("pascalvoc", fine_tune_config("pascalvoc", config_of(model)))
    trained = {layer.name: layer.get_weights() for layer in model.layers}
    return max(float(np.max(np.abs(a - b))) for layer in start.layers if is_backbone_layer(layer.name)
               for a, b in zip(layer.get_weights(), trained[layer.name]))  # fmt: skip


@pytest.mark.slow
def test_resume_after_a_worker_is_killed(tmp_path):
    pytest.importorskip("tensorflow")
    data = _tiny_data(tmp_path / "data")
    single = _start([data, tmp_path / "single", 2, 0])
    # One run folder both workers see (a shared folder, as on NFS): worker 1 dies in epoch 2.
    out = tmp_path / "run"
    chief, worker = _start_workers([out, out], data, epochs=2, die_after=2)
    worker.wait(timeout=600)
    assert worker.returncode == 9, worker.stderr.read()[-3000:]
    # The chief waits for its lost peer (or fails): stop it as the machine's owner would.
    deadline = time.monotonic() + 60
    while chief.poll() is None and time.monotonic() < deadline:
        time.sleep(1)
    chief.kill()
    chief.communicate()
    with zipfile.ZipFile(out / "last.keras") as archive:
        assert json.loads(archive.read("edgeseg_training.json"))["step"] == 1  # epoch 1 was saved

    for process in _start_workers([out, out], data, epochs=2, resume=True):
        assert "steps 2" in _finish(process)
    _finish(single)
    _expect_equal_weights(_largest_difference(out / "last.keras", tmp_path / "single" / "last.keras"))


# === TF_CONFIG, read without TensorFlow ===


def _tf_config(cluster: dict, kind: str, index: int) -> dict:
    return {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": kind, "index": index}})}


def test_cluster_roles_from_tf_config():
    two = {"worker": ["a:1", "b:2"]}
    assert cluster_from_env({}) == Cluster(1, "", True)
    assert cluster_from_env(_tf_config(two, "worker", 0)) == Cluster(2, "worker 0", True)
    assert cluster_from_env(_tf_config(two, "worker", 1)) == Cluster(2, "worker 1", False)
    with_chief = {"chief": ["c:0"], "worker": ["a:1"]}
    assert cluster_from_env(_tf_config(with_chief, "chief", 0)).chief
    assert not cluster_from_env(_tf_config(with_chief, "worker", 0)).chief
    assert cluster_from_env(_tf_config({"worker": ["a:1"]}, "worker", 0)).workers == 1


@pytest.mark.parametrize("environ, fragment", [
    ({"TF_CONFIG": "{not json"}, "not a cluster description"),
    (_tf_config({"worker": ["a:1"]}, "worker", 3), "worker 3 is not in its cluster"),
    (_tf_config({"worker": ["a:1"], "ps": ["p:2"]}, "worker", 0), "names ps tasks"),
])  # fmt: skip
def test_bad_tf_config_is_one_clear_error(environ, fragment):
    with pytest.raises(EdgesegError, match=fragment):
        cluster_from_env(environ)
