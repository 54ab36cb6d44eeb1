"""``python -m tuner.cli``: the ``miml-tune`` command."""

from tuner.cli import main

main()
