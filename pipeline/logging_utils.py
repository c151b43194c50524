"""Logging for the command line: INFO by default, DEBUG with -v; rank-prefixed under torchrun."""

from __future__ import annotations

import logging
import os
import sys


def setup_logging(verbose: bool) -> None:
    rank = os.environ.get("RANK")
    prefix = f"[rank {rank}] " if rank is not None and os.environ.get("WORLD_SIZE", "1") != "1" else ""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"{prefix}%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    if not verbose:
        for noisy in ("PIL", "matplotlib", "urllib3", "httpx"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
