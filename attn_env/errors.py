"""Whose fault an error is: the user's (one line, exit 2) or ours (a traceback).

Foundation layer: imports nothing from the project. Every message meant for a
user (a bad config key or value, a bad file, a path outside a run folder)
raises :class:`UserError` or a subclass; the command line prints those as one
line. Anything else escaping a command is a bug and keeps its traceback.

``UserError`` subclasses ``ValueError`` so that library callers who caught
``ValueError`` before keep working.
"""

from __future__ import annotations

__all__ = ["ConfigError", "UnsafePathError", "UserError"]


class UserError(ValueError):
    """Bad input from the user; the message names the culprit and what was expected."""


class ConfigError(UserError):
    """A configuration value or key is wrong; the message names it."""


class UnsafePathError(UserError):
    """A path a run would read, write or delete lies outside its own folder."""
