"""The fuzz harness on a few hundred mutants of a small model: no traceback, signal or hang.

`benchmarks/fuzz_models.py` (its docstring says what it mutates and counts); the README has
a longer run on a converted DeepLab model.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.fuzz_models import OUTCOMES, Flatbuffer, run  # noqa: E402
from runtime.metadata import strip_metadata  # noqa: E402

MUTANTS = 200


def test_the_flatbuffer_walk_finds_every_kind_of_target(tiny_models):
    flatbuffer = Flatbuffer(strip_metadata(tiny_models["int8_meta"].read_bytes()))
    kinds = {"buffer_data", "tensor_shape", "tensor_type", "tensor_buffer", "scale", "zero_point", "opcode",
             "opcode_index", "operator_io", "graph_io", "vtable", "offset"}  # fmt: skip
    assert kinds <= set(flatbuffer.targets)
    assert [tensor["shape"] for tensor in flatbuffer.tensors][0] == [1, 97, 129, 3]


@pytest.mark.slow
def test_mutants_give_clean_errors_or_results(tiny_models):
    results = run(tiny_models["int8_meta"], MUTANTS, seed=0, workers=2, timeout=120, memory_mb=1024, progress=False)
    for target in ("info", "segment"):
        counts = results[target]
        assert sum(counts.values()) == MUTANTS and set(counts) == set(OUTCOMES)
        assert counts["traceback"] == counts["signal"] == counts["hang"] == 0, results["problems"][:5]
        assert counts["ok"] > 0 and counts["error"] > 0  # both paths were exercised
    assert max(results["peak_rss_mb"].values()) < 300, results["peak_rss_mb"]
