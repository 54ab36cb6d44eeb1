"""Writing an output file whole or not at all (a temporary file renamed into place)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from tuner.errors import MimlTuneError


@contextlib.contextmanager
def written_whole(path: Path, mode: str = "w") -> Iterator[IO[Any]]:
    """A handle on a temporary file beside ``path``, renamed to ``path`` when the block ends
    without error and removed otherwise; a file-system error is one line."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        newline = None if "b" in mode else ""  # csv writes its own line ends
        with open(tmp, mode, newline=newline) as handle:
            yield handle
        os.replace(tmp, path)
    except OSError as exc:
        raise MimlTuneError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        tmp.unlink(missing_ok=True)
