"""``python -m modelgate``: the ``modelgate`` command."""

from modelgate.cli.main import main

main(prog_name="modelgate")
