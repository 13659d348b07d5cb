"""Limits on numbers that edgeseg accepts, in one place for every command and the Python API.

Each limit is where a value stops being able to work, not a matter of taste:

- `MAX_CLASSES` = 255: a label map is uint8 (0-255), and training and evaluation need one
  uint8 value that is not a class for "ignore" in the masks (255 by default). So classes are
  0-254. (int8 logits themselves have no limit on the channel count.)
- `MAX_INPUT_SIDE` = 8192: TFLite's kernels count a tensor's elements in a 32-bit int. The
  widest activation of MobileNetV2 (the 96-channel expansion at half resolution) holds
  24 * H * W values, which passes 2**31 at a side of about 9,460; 8192 keeps every tensor
  of the network below that.
- `MAX_THREADS` = 256: threads beyond the cores only slow a model down (warned, see
  `check_threads`); beyond 256, more than any board or CPU edgeseg targets has, a count is
  a typo, refused.
- `MAX_TENSOR_BYTES_PER_INPUT_VALUE` = 4,096: what a model's tensors may take once allocated,
  beyond the file's own bytes (its weights), per value of its input. DeepLabV3+ on
  MobileNetV2 takes 40-100 bytes per input value int8 and up to about 360 float; a damaged
  file that declares a tensor 65,535 images deep takes over 30,000 and would allocate a
  gigabyte for a 97x129 input. The limit scales with the input, so a real model is more
  than 10 times below it at any size, and a damaged one cannot take more than about 10
  times what a real float model of its input size needs. (Checked by the trial load in a
  child process, `runtime.probe`, before the process that asked allocates anything.)
- `MAX_BENCH_RUNS` = 100,000 timed (or warm-up) frames of `edgeseg bench`: every timing is
  kept for the percentiles, and more would not change them.
"""

from __future__ import annotations

import os

from runtime.errors import EdgesegError

MAX_CLASSES = 255
MAX_INPUT_SIDE = 8192
MAX_THREADS = 256
MAX_BENCH_RUNS = 100_000
MAX_TENSOR_BYTES_PER_INPUT_VALUE = 4096


def check_threads(count: int | None, option: str = "num_threads") -> str | None:
    """Check an interpreter thread count.

    Args:
        count: the count asked for; None means every core and is always fine.
        option: how the caller names it in messages (e.g. "--threads").

    Returns:
        A warning to show when `count` is more than the machine's cores, else None.

    Raises:
        EdgesegError: a count below 1 or above `MAX_THREADS`.
    """
    if count is None:
        return None
    cores = os.cpu_count() or 1
    if not 1 <= count <= MAX_THREADS:
        raise EdgesegError(f"{option} {count}: use 1 to {MAX_THREADS} threads (this machine has {cores} cores)")
    if count > cores:
        return f"{option} {count} is more than the {cores} CPU cores here: expect it to run slower, not faster"
    return None
