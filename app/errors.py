"""Errors meant for the person at the terminal: one line, naming the file and the fix."""


class UserError(Exception):
    """A problem the user can fix; the CLI prints it on one line and exits non-zero."""

    exit_code = 2
