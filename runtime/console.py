"""Keeping C/C++ library chatter (TensorFlow start-up, converter passes, delegates) off the console."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from typing import Iterator


@contextlib.contextmanager
def held_stderr() -> Iterator[None]:
    """Send file descriptor 2 to a temporary file for the block; replay it if the block raises.

    Native libraries write to fd 2 directly, below Python's `sys.stderr`, so only swapping the
    descriptor silences them. What they said is still shown when something goes wrong.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            held.seek(0)
            sys.stderr.write(held.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
