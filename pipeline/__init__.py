"""Command line, stages, caching and video IO of the re-rendering pipeline.

Kept free of imports so that lower-level packages (``geometry``) can use
``pipeline.fsutil`` and ``pipeline.video_io`` without a cycle.
"""
