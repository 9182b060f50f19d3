"""Conversion errors: each names the offending file and what to do about it."""


class ConvertError(Exception):
    """A bad input or environment problem; the CLI prints it on one line and exits non-zero."""

    exit_code = 2
