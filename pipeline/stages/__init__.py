"""The pipeline stages as thin cached wrappers around the domain functions.

Each module states its stage key (what the output depends on) and how to produce the output;
``cached`` holds the one reuse / recompute / refuse rule they all follow.
"""
