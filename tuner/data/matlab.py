"""Reading MIML data from MATLAB ``.mat`` files in the LAMDA convention.

The MIML sets published by the LAMDA group (Zhou & Zhang's Scene and Reuters, and many later
ones) are MATLAB v5 files holding:

- ``bags``: an ``n_bags x 1`` cell array, cell ``i`` an ``n_i x d`` matrix of instances;
- ``targets``: the bag labels, ``L x n_bags`` (or ``n_bags x L``), values in {-1, +1} or {0, 1};
- optionally instance labels, a cell array of ``n_i x L`` (or ``L x n_i``) matrices, and the
  label names as a cell array of strings (``class_name``).

Variable names differ between files, so each role is looked up among common names,
case-insensitively and ignoring ``_``; ``bag_key`` / ``label_key`` name the variables
explicitly. Files are read with :func:`scipy.io.loadmat`, which reads v4 to v7 files; v7.3 files
are HDF5 and are refused with the command that converts them.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io
import scipy.sparse

from tuner.data.dataset import DataWarning, MIMLDataset, warn_constant_labels
from tuner.errors import MimlTuneError

__all__ = ["is_mat_file", "read_miml_mat"]

# Candidate variable names per role, in order of preference; matched by _norm (case, '_').
BAG_KEYS = ("bags", "bag", "data", "instances", "X")
LABEL_KEYS = ("labels", "targets", "target", "Y", "label", "bag_labels", "bag_targets")
INSTANCE_LABEL_KEYS = (
    "instance_labels",
    "inst_labels",
    "instance_targets",
    "inst_targets",
    "instance_label",
)
LABEL_NAME_KEYS = (
    "label_names",
    "class_name",
    "class_names",
    "label_name",
    "classes",
    "names",
)

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_RESAVE = "re-save it in MATLAB with save('FILE.mat', '-v7') (or load it and save -v7)"


def _norm(key: str) -> str:
    return key.lower().replace("_", "")


def is_mat_file(head: bytes) -> bool:
    """Whether the first bytes of a file are a MATLAB MAT-file header (any version)."""
    return head.startswith(b"MATLAB ") or _HDF5_SIGNATURE in (head[:8], head[512:520])


def _load(path: Path) -> dict[str, Any]:
    where = str(path)
    try:
        with path.open("rb") as f:
            head = f.read(520)
    except FileNotFoundError:
        raise MimlTuneError(f"{where}: no such file; check the path") from None
    except IsADirectoryError:
        raise MimlTuneError(f"{where}: is a directory; pass the .mat file inside it") from None
    except PermissionError:
        raise MimlTuneError(
            f"{where}: permission denied; make the file readable (chmod +r) or copy it"
        ) from None
    except OSError as exc:
        raise MimlTuneError(f"{where}: cannot read the file ({exc.strerror or exc})") from None
    if head.startswith(b"MATLAB 7.3") or _HDF5_SIGNATURE in (head[:8], head[512:520]):
        raise MimlTuneError(
            f"{where}: is a MATLAB v7.3 (HDF5) file, which miml-tune does not read; "
            + _RESAVE.replace("FILE", path.stem)
        )
    try:
        return _loadmat_isolated(path, where)
    except MimlTuneError:
        raise
    except NotImplementedError:
        raise MimlTuneError(
            f"{where}: is a MATLAB v7.3 (HDF5) file, which miml-tune does not read; "
            + _RESAVE.replace("FILE", path.stem)
        ) from None
    except Exception as exc:  # scipy raises ValueError, TypeError, MatReadError, OSError
        reason = (str(exc).splitlines() or [type(exc).__name__])[0]
        what = "" if head.startswith(b"MATLAB") else "not a MATLAB .mat file: "
        raise MimlTuneError(
            f"{where}: {what}scipy cannot read it ({type(exc).__name__}: {reason[:80]}); "
            "pass a MATLAB v5/v7 .mat file"
        ) from None


def _loadmat(path: Path, conn: Any) -> None:
    """In the child of :func:`_loadmat_isolated`: the file's variables, or the error."""
    import faulthandler

    faulthandler.disable()  # a crash is reported by the parent, in one line
    try:
        conn.send(("ok", scipy.io.loadmat(str(path), squeeze_me=False, struct_as_record=True)))
    except Exception as exc:
        conn.send(("error", exc))
    finally:
        conn.close()


def _loadmat_isolated(path: Path, where: str) -> dict[str, Any]:
    """``scipy.io.loadmat`` in a forked child: scipy's MATLAB v5 reader is C code that a damaged
    file can crash (a segmentation fault was found by fuzzing), which would take the whole
    command down with no message. The child shares this process's memory (fork), so nothing is
    imported again; a crash becomes one line here."""
    import multiprocessing

    if not hasattr(os, "fork"):
        return dict(scipy.io.loadmat(str(path), squeeze_me=False, struct_as_record=True))
    ctx = multiprocessing.get_context("fork")
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_loadmat, args=(path, send), daemon=True)
    child.start()
    send.close()
    try:
        kind, value = receive.recv()
    except EOFError:
        kind, value = "crashed", None
    finally:
        receive.close()
        child.join()
    if kind == "ok":
        return dict(value)
    if kind == "error":
        raise value
    raise MimlTuneError(
        f"{where}: the MATLAB reader crashed on this file (exit {child.exitcode}); it is "
        "damaged or not a MATLAB .mat file: pass a MATLAB v5/v7 .mat file"
    )


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        kind = "cell" if value.dtype == object else "char" if value.dtype.kind == "U" else None
        kind = kind or ("struct" if value.dtype.names else str(value.dtype))
        return f"{'x'.join(str(n) for n in value.shape)} {kind}"
    if scipy.sparse.issparse(value):
        return f"{'x'.join(str(n) for n in value.shape)} sparse"
    return type(value).__name__


def _variables(data: dict[str, Any]) -> str:
    shown = [f"{k} ({_describe(v)})" for k, v in data.items()]
    return ", ".join(shown) if shown else "none"


def _find(
    where: str,
    data: dict[str, Any],
    key: str | None,
    candidates: tuple[str, ...],
    role: str,
    option: str,
    fits: Callable[[Any], bool],
) -> str | None:
    """The variable holding ``role``: ``key`` when given, else the one common name present.

    When several common names are present, those whose value ``fits`` the role are kept.
    """
    if key is not None:
        if key in data:
            return key
        folded = [k for k in data if _norm(k) == _norm(key)]
        if len(folded) == 1:
            return folded[0]
        raise MimlTuneError(
            f"{where}: has no variable {key!r} (given as {option}); its variables are "
            f"{_variables(data)}"
        )
    found = [k for c in candidates for k in data if _norm(k) == _norm(c)]
    if len(found) > 1:
        found = [k for k in found if fits(data[k])] or found
    if len(found) > 1:
        raise MimlTuneError(
            f"{where}: several variables could be the {role}: {', '.join(map(repr, found))}; "
            + (f"pass {option} NAME to choose one" if option else "rename all but one")
        )
    return found[0] if found else None


def _require(
    where: str,
    data: dict[str, Any],
    key: str | None,
    candidates: tuple[str, ...],
    role: str,
    option: str,
    fits: Callable[[Any], bool],
) -> str:
    found = _find(where, data, key, candidates, role, option, fits)
    if found is None:
        raise MimlTuneError(
            f"{where}: found no {role} (looked for {', '.join(candidates)}, any case, '_' "
            f"ignored); its variables are {_variables(data)}; pass {option} NAME"
        )
    return found


def _is_cell(value: Any) -> bool:
    return isinstance(value, np.ndarray) and value.dtype == object and not value.dtype.names


def _is_numeric(value: Any) -> bool:
    return scipy.sparse.issparse(value) or (
        isinstance(value, np.ndarray) and value.dtype.kind in "biuf"
    )


def _cells(where: str, key: str, value: Any, what: str, option: str) -> list[Any]:
    """The cells of a MATLAB cell vector, in order."""
    if not _is_cell(value):
        raise MimlTuneError(
            f"{where}: variable {key!r} is a {_describe(value)}, not a cell array of {what}"
            + (f"; pass {option} naming the cell array" if option else "")
        )
    if value.ndim > 2 or (value.ndim == 2 and min(value.shape) > 1):
        raise MimlTuneError(
            f"{where}: cell array {key!r} is {_describe(value)}; it must be a vector "
            f"(n x 1 or 1 x n) of {what}"
        )
    return list(value.reshape(-1, order="F"))


def _matrix(where: str, value: Any, what: str) -> np.ndarray:
    """A real 2-D float64 matrix from a numeric MATLAB value (dense or sparse)."""
    if scipy.sparse.issparse(value):
        value = value.toarray()
    if (
        not isinstance(value, np.ndarray)
        or value.dtype == object
        or value.dtype.names
        or value.dtype.kind not in "biuf"
    ):
        kind = "complex" if getattr(value, "dtype", np.dtype(object)).kind == "c" else None
        raise MimlTuneError(
            f"{where}: {what} is a {kind or _describe(value)}, not a real numeric matrix"
        )
    if value.ndim != 2:
        raise MimlTuneError(f"{where}: {what} has {value.ndim} dimensions; expected a matrix")
    return np.asarray(value, dtype=np.float64)


def _read_bags(where: str, key: str, value: Any, option: str) -> tuple[np.ndarray, ...]:
    cells = _cells(where, key, value, "n_i x d instance matrices", option)
    if not cells:
        raise MimlTuneError(f"{where}: the bag cell array {key!r} is empty; there are no bags")
    bags: list[np.ndarray] = []
    n_features = -1
    for i, cell in enumerate(cells, start=1):
        at = f"bag {i} ({key}{{{i}}})"
        bag = _matrix(where, cell, at)
        if bag.shape[0] == 0 or bag.shape[1] == 0:
            raise MimlTuneError(
                f"{where}: {at} is empty ({bag.shape[0]}x{bag.shape[1]}); every bag needs at "
                "least one instance with at least one feature: drop it"
            )
        if n_features < 0:
            n_features = bag.shape[1]
        elif bag.shape[1] != n_features:
            raise MimlTuneError(
                f"{where}: {at} has {bag.shape[1]} features (columns) but bag 1 has "
                f"{n_features}; every bag is an n_i x d matrix with the same d"
            )
        with np.errstate(over="ignore"):  # reported below as too large for float32
            as_float32 = np.ascontiguousarray(bag, dtype=np.float32)
        bad = ~np.isfinite(as_float32)
        if bad.any():
            r, j = (int(x[0]) for x in np.nonzero(bad))
            raise MimlTuneError(
                f"{where}: {at} has {int(bad.sum())} non-finite value(s) (NaN, Inf, or too "
                f"large for float32), first {bag[r, j]:g} at instance {r + 1}, feature "
                f"{j + 1}; features must be finite numbers: impute or drop them"
            )
        bags.append(as_float32)
    return tuple(bags)


def _binary(where: str, values: np.ndarray, what: str, position: str) -> np.ndarray:
    """0/1 uint8 from {-1,+1} or {0,1} values; ``position`` formats a (row, col) for errors."""
    finite = np.isfinite(values)
    allowed = finite & np.isin(values, (-1.0, 0.0, 1.0))
    if not allowed.all():
        r, c = (int(x[0]) for x in np.nonzero(~allowed))
        raise MimlTuneError(
            f"{where}: {what} has value {values[r, c]:g} at {position.format(r + 1, c + 1)}; "
            "label values must be -1/+1 or 0/1"
        )
    if (values == -1).any() and (values == 0).any():
        r, c = (int(x[0]) for x in np.nonzero(values == 0))
        raise MimlTuneError(
            f"{where}: {what} mixes -1 and 0 (a 0 at {position.format(r + 1, c + 1)}); "
            "label values must be either -1/+1 or 0/1"
        )
    return (values == 1).astype(np.uint8)


def _read_labels(where: str, key: str, value: Any, n_bags: int) -> np.ndarray:
    matrix = _matrix(where, value, f"label matrix {key!r}")
    rows, cols = matrix.shape
    if rows == n_bags:
        if cols == n_bags and n_bags > 1:
            warnings.warn(
                f"{where}: label matrix {key!r} is {rows}x{cols} for {n_bags} bags, so its "
                "orientation is ambiguous; reading rows as bags (n_bags x n_labels)",
                DataWarning,
                stacklevel=3,
            )
        labels = matrix
        position = "bag {}, label {}"
    elif cols == n_bags:
        labels = matrix.T
        position = "bag {}, label {}"
    else:
        raise MimlTuneError(
            f"{where}: label matrix {key!r} is {rows}x{cols}, which matches neither "
            f"{n_bags}xL nor Lx{n_bags} for the {n_bags} bags; pass --label-key naming the "
            "bag label matrix"
        )
    if labels.shape[1] == 0:
        raise MimlTuneError(f"{where}: label matrix {key!r} has no labels ({rows}x{cols})")
    return _binary(where, labels, f"label matrix {key!r}", position)


def _read_instance_labels(
    where: str, key: str, value: Any, bags: tuple[np.ndarray, ...], n_labels: int
) -> tuple[np.ndarray, ...]:
    cells = _cells(where, key, value, "instance label matrices", "")
    if len(cells) != len(bags):
        raise MimlTuneError(
            f"{where}: instance label cell array {key!r} has {len(cells)} cells for "
            f"{len(bags)} bags; it needs one n_i x L matrix per bag"
        )
    matrices = [
        _matrix(where, cell, f"instance labels {key}{{{i}}}") for i, cell in enumerate(cells, 1)
    ]
    upright = all(m.shape == (b.shape[0], n_labels) for m, b in zip(matrices, bags, strict=True))
    flipped = all(m.shape == (n_labels, b.shape[0]) for m, b in zip(matrices, bags, strict=True))
    if not (upright or flipped):
        misfit = [
            (i, m, b)
            for i, (m, b) in enumerate(zip(matrices, bags, strict=True), start=1)
            if m.shape not in ((b.shape[0], n_labels), (n_labels, b.shape[0]))
        ]
        if not misfit:
            raise MimlTuneError(
                f"{where}: the instance label cells of {key!r} mix orientations (some "
                "instances x labels, some labels x instances); store every cell the same way"
            )
        i, m, b = misfit[0]
        raise MimlTuneError(
            f"{where}: instance labels {key}{{{i}}} are {m.shape[0]}x{m.shape[1]}, but bag {i} "
            f"has {b.shape[0]} instances and there are {n_labels} labels; each cell must be "
            f"{b.shape[0]}x{n_labels} (instances x labels) or its transpose"
        )
    out = []
    for i, m in enumerate(matrices, start=1):
        lab = m if upright else m.T
        out.append(
            np.ascontiguousarray(
                _binary(where, lab, f"instance labels {key}{{{i}}}", "instance {}, label {}")
            )
        )
    return tuple(out)


def _label_names(where: str, key: str, value: Any, n_labels: int) -> tuple[str, ...]:
    names: list[str]
    if isinstance(value, np.ndarray) and value.dtype.kind == "U":
        names = [str(v).strip() for v in value.reshape(-1)]
    elif isinstance(value, np.ndarray) and value.dtype == object and not value.dtype.names:
        names = []
        for cell in value.reshape(-1, order="F"):
            if not (isinstance(cell, np.ndarray) and cell.dtype.kind == "U" and cell.size <= 1):
                raise MimlTuneError(
                    f"{where}: label names {key!r} must be a cell array of strings, but a "
                    f"cell holds a {_describe(cell)}"
                )
            names.append(str(cell.reshape(-1)[0]).strip() if cell.size else "")
    else:
        raise MimlTuneError(
            f"{where}: label names {key!r} are a {_describe(value)}, not a cell array of strings"
        )
    if len(names) != n_labels:
        raise MimlTuneError(
            f"{where}: {key!r} holds {len(names)} label names for {n_labels} labels; it needs "
            "one name per label"
        )
    if any(not n for n in names) or len(set(names)) != len(names):
        raise MimlTuneError(
            f"{where}: label names {key!r} must be non-empty and unique, got {names[:10]}"
        )
    return tuple(names)


def read_mat_bags(
    path: str | os.PathLike[str], *, bag_key: str | None = None
) -> tuple[tuple[str, ...], tuple[np.ndarray, ...]]:
    """The bags of a MATLAB ``.mat`` file and their ids (``"1"``...), without labels: a pool of
    bags to label (``miml-tune active query``). A label matrix in the file is ignored.

    Raises:
        MimlTuneError: as :func:`read_miml_mat` for the bags.
    """
    path = Path(path)
    where = str(path)
    data = {k: v for k, v in _load(path).items() if not k.startswith("__")}
    bkey = _require(where, data, bag_key, BAG_KEYS, "bag cell array", "--bag-key", _is_cell)
    bags = _read_bags(where, bkey, data[bkey], "--bag-key NAME")
    return tuple(str(i) for i in range(1, len(bags) + 1)), tuple(bags)


def read_miml_mat(
    path: str | os.PathLike[str],
    *,
    name: str | None = None,
    bag_key: str | None = None,
    label_key: str | None = None,
) -> MIMLDataset:
    """Reads a MIML dataset from a MATLAB v5/v7 ``.mat`` file in the LAMDA convention.

    Roles are found by variable name, case-insensitively and ignoring ``_``: the bags among
    ``bags``, ``bag``, ``data``, ``instances``, ``x``; the bag labels among ``labels``,
    ``targets``, ``target``, ``y``, ``label``, ``bag_labels``, ``bag_targets``; optional instance
    labels among ``instance_labels``, ``inst_labels``, ``instance_targets``, ``inst_targets``;
    optional label names (a cell array of strings) among ``label_names``, ``class_name``,
    ``class_names``, ``classes``, ``names``. Two candidates for one role is an error; name the
    variable with ``bag_key`` / ``label_key``.

    Args:
        path: the ``.mat`` file.
        name: the dataset's name; defaults to the file's stem.
        bag_key: the variable holding the bags: a cell vector of ``n_i x d`` matrices.
        label_key: the variable holding the bag labels: ``n_bags x L`` or ``L x n_bags``, values
            in {-1, +1} or {0, 1}.

    Returns:
        The dataset: float32 bags, uint8 labels, ``instance_labels`` when the file has them,
        bag ids ``"1"``... (MATLAB's cell indices), features ``feature_0``..., labels named by
        the file or ``label_0``....

    Raises:
        MimlTuneError: missing or unreadable file, not a MAT-file, a v7.3 (HDF5) file, no or
            ambiguous bag / label variable, bags that are empty, of different feature counts or
            with non-finite values, labels other than -1/+1 or 0/1, a label matrix matching the
            bag count in neither orientation, or instance labels that do not fit their bags.

    Warns:
        DataWarning: a label no bag carries or every bag carries; a square label matrix.
    """
    path = Path(path)
    where = str(path)
    data = {k: v for k, v in _load(path).items() if not k.startswith("__")}
    bkey = _require(where, data, bag_key, BAG_KEYS, "bag cell array", "--bag-key", _is_cell)
    lkey = _require(where, data, label_key, LABEL_KEYS, "label matrix", "--label-key", _is_numeric)
    if bkey == lkey:
        raise MimlTuneError(
            f"{where}: the bags and the labels cannot both be variable {bkey!r}; pass "
            "--bag-key and --label-key naming two variables"
        )
    bags = _read_bags(where, bkey, data[bkey], "--bag-key NAME")
    labels = _read_labels(where, lkey, data[lkey], len(bags))
    n_labels = labels.shape[1]

    ikey = _find(where, data, None, INSTANCE_LABEL_KEYS, "instance labels", "", _is_cell)
    instance_labels = (
        None if ikey is None else _read_instance_labels(where, ikey, data[ikey], bags, n_labels)
    )
    nkey = _find(where, data, None, LABEL_NAME_KEYS, "label names", "", _is_cell)
    label_names = (
        tuple(f"label_{k}" for k in range(n_labels))
        if nkey is None
        else _label_names(where, nkey, data[nkey], n_labels)
    )

    warn_constant_labels(where, labels, label_names)
    return MIMLDataset(
        name=path.stem if name is None else name,
        bags=bags,
        labels=labels,
        bag_ids=tuple(str(i) for i in range(1, len(bags) + 1)),
        label_names=label_names,
        feature_names=tuple(f"feature_{j}" for j in range(bags[0].shape[1])),
        source=os.path.abspath(path),
        instance_labels=instance_labels,
    )
