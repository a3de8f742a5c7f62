"""Error types shared by every layer (the ground floor: this module imports nothing of poselift).

Anything derived from :class:`PoseliftError` is a problem with the user's input or files; the
command line prints it as one line, without a traceback, and exits with status 2.
"""

from __future__ import annotations


class PoseliftError(Exception):
    """Base of every error that the command line reports as one line."""


class UserError(PoseliftError):
    """A mistake in the user's command line or input (a bad option, a missing file)."""


class CheckpointError(PoseliftError, RuntimeError):
    """A checkpoint file that cannot be used: missing, corrupt, foreign or inconsistent."""
