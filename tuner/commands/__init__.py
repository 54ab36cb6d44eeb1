"""Click command groups that :mod:`tuner.cli` assembles into ``miml-tune`` (kept apart so the
entry module stays small), and the options they share. Only :mod:`tuner.cli` imports them."""
