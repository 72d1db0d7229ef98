"""Small domain errors raised by the data layer; the API maps them to status codes (404/409/422/403)."""

from __future__ import annotations


class DomainError(Exception):
    """A refused operation; `field` names the input at fault, `message` says why (stable: tests assert it)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message

    @property
    def detail(self) -> str:
        return f"{self.field}: {self.message}"


class NotFound(DomainError):
    """An id that names nothing stored."""


class Conflict(DomainError):
    """The request is well formed but clashes with what is stored (duplicate, no lease, reused key)."""


class Invalid(DomainError):
    """Values the schema could not catch: shapes, dtypes, ranges against the experiment's spaces."""


class Forbidden(DomainError):
    """The caller is known but may not touch this resource."""
