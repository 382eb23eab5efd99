"""Shared by the harness and its extensions: errors of the /_keyfleet/ endpoints."""


class ControlError(Exception):
    """Raised by a control handler to answer with an HTTP error and a message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message
