"""A status line on a terminal: what a command is doing now, written in place."""

from __future__ import annotations

import sys
from typing import TextIO


def status_line(text: str, stream: TextIO | None = None) -> None:
    """On a terminal, writes ``text`` over the current line (the next output, a progress line or
    an error, overwrites it in turn, so an error stays one line); off a terminal, nothing."""
    stream = stream or sys.stderr
    if getattr(stream, "isatty", lambda: False)():
        stream.write(f"\r\033[K{text}")
        stream.flush()
