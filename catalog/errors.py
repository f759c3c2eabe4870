"""The catalog's refusals: each carries the HTTP status the edge answers with, and a message that says
what was wrong (and, where there is one, what to do), the same at the edge and on the command line."""

from __future__ import annotations


class CatalogError(Exception):
    """A catalog request that cannot be honoured; ``status`` is the HTTP status to answer with."""

    status: int = 400

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.field = field


class InvalidInput(CatalogError):
    """A value is malformed or refers to something that does not exist (e.g. an unknown category)."""

    status = 422


class NotFound(CatalogError):
    status = 404


class Conflict(CatalogError):
    """The request clashes with the current state (sku taken, category still in use, ...)."""

    status = 409


class CatalogUnavailable(CatalogError):
    """There is no ``products`` table to read from (migrations not applied)."""

    status = 503

    def __init__(self) -> None:
        super().__init__("the product catalog is not available (no products table); run `shopflow db migrate`")
