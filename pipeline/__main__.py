"""``python -m pipeline`` is the ``gmm`` command."""

from pipeline.cli import main

main()
