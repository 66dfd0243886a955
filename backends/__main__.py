"""``python -m backends``: the ``modelgate worker`` command on its own."""

from backends.cli import worker

worker(prog_name="python -m backends")
