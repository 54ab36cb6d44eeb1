"""The project's exception for bad user input or state."""


class MimlTuneError(ValueError):
    """Bad input or state that a person can fix.

    The message says what was wrong, the value received, what is allowed and, when there is one,
    the fix. The command line prints it as one line and exits with status 2, without a traceback.
    """


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none): what a
    one-line error quotes of a library's multi-line message."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
