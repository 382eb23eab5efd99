"""Shared by the harness and its extensions: errors of the /_keyfleet/ endpoints."""

from __future__ import annotations

from typing import Any


class ControlError(Exception):
    """Raised by a control handler to answer with an HTTP error and a message.

    ``body`` adds fields to the JSON answer next to ``"error"`` (e.g. what a
    settle that timed out is still waiting for).
    """

    def __init__(self, status: int, message: str, body: dict[str, Any] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.body = dict(body or {})
