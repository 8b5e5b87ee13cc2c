"""The one error type the sandbox raises: its message is meant for a human."""

from __future__ import annotations


class SandboxError(RuntimeError):
    """The sandbox cannot be built or started; the message says why and what to do."""
