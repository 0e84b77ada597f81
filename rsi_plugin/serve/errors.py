"""The error of a self-hosted NDIF step that could not be done."""

from __future__ import annotations

__all__ = ["ServeError"]


class ServeError(RuntimeError):
    """A step of ``rsi serve`` failed: a missing tool, a port in use, a service that did not
    come up (the message names the log to read) or a deploy the controller refused."""
