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


def short(value: object, limit: int = 80) -> str:
    """A ``repr``-like form of ``value`` of at most about ``limit`` characters, on one line.

    Error messages quote user values with it: a YAML alias bomb parses into a small structure
    whose full ``repr`` is gigabytes long, so the value is walked with a character budget and
    the walk stops as soon as the budget is spent (``...`` marks the cut). Containers that hold
    themselves show as ``[...]``, and an integer too long to print shows its digit count.
    """
    out: list[str] = []
    budget = [limit]

    def emit(text: str) -> None:
        out.append(text)
        budget[0] -= len(text)
        if budget[0] < 0:
            raise _Spent

    def walk(item: object, seen: frozenset[int]) -> None:
        if isinstance(item, (dict, list, tuple, set, frozenset)):
            if id(item) in seen:
                emit("[...]" if isinstance(item, list) else "{...}")
                return
            inner = seen | {id(item)}
            if isinstance(item, dict):
                emit("{")
                for i, (key, val) in enumerate(item.items()):
                    emit(", " if i else "")
                    walk(key, inner)
                    emit(": ")
                    walk(val, inner)
                emit("}")
                return
            brackets = {list: "[]", tuple: "()"}.get(type(item), "{}")
            opening, closing = brackets[0], brackets[1]
            emit(opening)
            for i, val in enumerate(item):
                emit(", " if i else "")
                walk(val, inner)
            emit("," + closing if isinstance(item, tuple) and len(item) == 1 else closing)
        elif isinstance(item, (str, bytes)):
            emit(repr(item[: limit + 1]))
        elif isinstance(item, int) and not isinstance(item, bool) and abs(item) >= 10**limit:
            emit(f"<an integer of about {int(item.bit_length() * 0.30103) + 1} digits>")
        else:
            emit(" ".join(repr(item)[: limit + 1].split()))

    try:
        walk(value, frozenset())
    except _Spent:
        return "".join(out)[:limit] + "..."
    return "".join(out)


class _Spent(Exception):
    """The character budget of :func:`short` is spent."""


def one_line(text: str, limit: int = 300) -> str:
    """``text`` on one line, cut to ``limit`` characters: how a one-line error quotes another
    message (a library's, a model's) that may span lines or quote a long value."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def did_you_mean(name: str, choices: list[str]) -> str:
    """`` (did you mean X?)`` for the choices that ``name`` begins, is part of, or nearly spells
    (names compared in lower case, '-' as '_'); empty when none is close."""
    import difflib

    key = name.strip().lower().replace("-", "_")
    if not key:
        return ""
    near = [c for c in choices if c.lower().startswith(key) or key in c.lower()]
    near += [c for c in difflib.get_close_matches(key, choices, n=3, cutoff=0.6) if c not in near]
    return f" (did you mean {' or '.join(near[:3])}?)" if near else ""
