"""The exception types a user meets: mistakes they can fix, and a stop they asked for.

They live in `runtime` because every other package may import `runtime`, never the reverse.
The CLI prints an `EdgesegError`'s message as one line and exits with code 1, Ctrl-C with
130 and `Terminated` with 128 + the signal number; anything else is a bug.
"""

from __future__ import annotations

import signal
from typing import Callable


class EdgesegError(Exception):
    """A user-facing error: the message says what is wrong and what to do."""


class ParameterError(EdgesegError):
    """A bad argument, named the way the caller spelled it.

    The message is a template in which `{name}` stands for the parameter `name`. Python
    callers read the keyword (`lr`); the CLI respells it as its flag (`--lr`), so one message
    serves every front end and no flag name leaks into the library.

    Args:
        template: The message, with `{name}` for each parameter it names.
        *parameters: The parameter names used in `template`; other braces are left alone.

    Example:
        >>> raise ParameterError("{lr} -1 must be positive", "lr")   # "lr -1 must be positive"
    """

    def __init__(self, template: str, *parameters: str):
        self.template = template
        self.parameters = parameters
        super().__init__(self.spelled())

    def spelled(self, spelling: Callable[[str], str] = str) -> str:
        """The message with each parameter written as `spelling(name)`."""
        message = self.template
        for name in self.parameters:
            message = message.replace("{" + name + "}", spelling(name))
        return message


# The termination signal received, if any: noted by the CLI's handler before it raises `Terminated`.
# Should a library swallow that exception (a bare `except:`), `atomic_path` still refuses to commit
# an output and the CLI still exits 128 + the signal's number.
TERMINATED: list[int] = []


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised in the main thread so that it unwinds exactly like Ctrl-C.

    Every clean-up that handles Ctrl-C (temporary files removed, partial videos finalised)
    then handles a `kill` or a closed terminal too.

    Attributes:
        signum: the signal's number.
    """

    def __init__(self, signum: int, message: str = ""):
        super().__init__(message)
        self.signum = signum

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name
