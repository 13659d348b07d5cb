"""The one exception type for mistakes a user can fix (bad file, bad option, bad data).

It lives in `runtime` because every other package may import `runtime`, never the reverse.
The CLI prints its message as one line and exits with code 1; anything else is a bug.
"""

from __future__ import annotations

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
