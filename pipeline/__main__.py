"""``python -m pipeline``: the command line (see ``pipeline.cli``)."""

from pipeline.cli import main

main()
