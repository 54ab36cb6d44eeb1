"""Options and output helpers that the command modules of :mod:`tuner.cli` share."""

from __future__ import annotations

import json
import math
from typing import Any

import click

_TRACKING = click.option(
    "--tracking-uri", help="MLflow store [MLFLOW_TRACKING_URI or sqlite:///mlflow.db]."
)
_JSON = click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")


def _json_safe(value: Any) -> Any:
    """NaN and infinities as null: strict JSON has no such numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def json_line(result: Any) -> str:
    """A command's result as the one strict-JSON line ``--json`` prints."""
    return json.dumps(_json_safe(result), sort_keys=True)
