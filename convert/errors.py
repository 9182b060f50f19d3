"""The one error base: a problem the person at the terminal can fix.

Raised anywhere (checkpoint reading, quantization, the library, the chat runtime), printed by
the CLI on one line that names the file and the fix, with a non-zero exit.
"""


class UserError(Exception):
    """A bad input or environment problem; the CLI prints it on one line and exits non-zero."""

    exit_code = 2
