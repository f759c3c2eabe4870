"""``python -m shopflow.cli``: the ``shopflow`` command without its entry-point script."""

from shopflow.cli import app

app()
