"""The processes a run trains on: `TF_CONFIG`, read before TensorFlow starts.

Several machines train one model with `tf.distribute.MultiWorkerMirroredStrategy`, which
every process finds described in the `TF_CONFIG` environment variable: the address of every
worker, and which of them this process is. edgeseg reads it here too, without TensorFlow, to
know early whether this process is the chief (the one that writes the run folder).
The chief is the "chief" task, or worker 0 when the cluster names no chief, as TensorFlow
decides it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass

from runtime.errors import EdgesegError

# The task types that train; a parameter server or an evaluator is no part of this strategy.
TRAINING_TASKS = ("chief", "worker")


@dataclass(frozen=True)
class Cluster:
    """Where this process stands among those training together.

    Attributes:
        workers: Processes training the model together (1: this one alone).
        task: This process's task, e.g. "worker 1" (empty when alone).
        chief: Whether this process writes the run folder.
    """

    workers: int = 1
    task: str = ""
    chief: bool = True


def cluster_from_env(environ: Mapping[str, str] | None = None) -> Cluster:
    """The cluster that `TF_CONFIG` in `environ` (default: this process's) describes.

    Args:
        environ: Environment variables; default `os.environ`.

    Returns:
        A one-process `Cluster` when TF_CONFIG is unset or names one worker.

    Raises:
        EdgesegError: a TF_CONFIG that is not JSON, has no task of this process among the
            cluster's training tasks, or names tasks of other types.
    """
    text = (os.environ if environ is None else environ).get("TF_CONFIG", "").strip()
    if not text:
        return Cluster()
    try:
        config = json.loads(text)
        cluster, task = config.get("cluster", {}), config.get("task", {})
        kind, index = task.get("type"), int(task.get("index", 0))
    except (ValueError, AttributeError, TypeError) as error:
        raise EdgesegError(f"TF_CONFIG is not a cluster description ({error}); see README, Training on "
                           'several machines: {"cluster": {"worker": [...]}, "task": {"type": "worker", '
                           '"index": N}}') from None  # fmt: skip
    others = sorted(set(cluster) - set(TRAINING_TASKS))
    if others:
        raise EdgesegError(f"TF_CONFIG names {', '.join(others)} tasks; edgeseg trains on chief and worker "
                           "tasks only (MultiWorkerMirroredStrategy)")  # fmt: skip
    if kind not in TRAINING_TASKS or not 0 <= index < len(cluster.get(kind, [])):
        raise EdgesegError(f"TF_CONFIG's task {kind} {index} is not in its cluster "
                           f"({', '.join(f'{len(v)} {k}' for k, v in cluster.items()) or 'empty'})")  # fmt: skip
    workers = sum(len(cluster.get(name, [])) for name in TRAINING_TASKS)
    chief = kind == "chief" or ("chief" not in cluster and index == 0)
    return Cluster(workers, f"{kind} {index}", chief)
