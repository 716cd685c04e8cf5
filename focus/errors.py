"""The focus's exceptions (one root)."""

from __future__ import annotations


class FocusError(Exception):
    """Root of the focus's errors (a bad leg, a port that cannot be bound, a failed registration)."""
