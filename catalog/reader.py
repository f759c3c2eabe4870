"""Whether and at what price a sku sells: the one reader the edge asks for carts, wishlists and orders.

A sku sells when its product exists, is not deleted and is active; it sells at the catalog's price, in
the catalog's currency, never at a price a client sent. Deleted products keep their rows (for their
versions) and are unknown here. ``read_prices`` is the one query; a ``PriceSource`` is anything that
answers it for a list of skus: ``CatalogReader`` asks PostgreSQL each time, the edge's price book
(``shopflow.api.prices``) keeps the answers until PostgreSQL says they changed. The rules below take
either, so a cart, a wishlist and an order refuse the same skus with the same words.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import asyncpg

from shopflow.catalog.errors import CatalogUnavailable, InvalidInput


@dataclass(frozen=True, slots=True)
class Price:
    price_minor: int
    currency: str
    active: bool  # False: the product is listed but no longer sold


async def read_prices(conn: asyncpg.Connection | asyncpg.Pool, skus: Sequence[str]) -> dict[str, Price]:
    """The price of each known, not deleted sku among ``skus`` (sold or not); unknown ones are absent."""
    try:
        rows = await conn.fetch("SELECT sku, price_minor, currency, active FROM products "
                                "WHERE sku = ANY($1::text[]) AND deleted_at IS NULL", list(skus))
    except asyncpg.UndefinedTableError:
        raise CatalogUnavailable() from None
    return {r["sku"]: Price(int(r["price_minor"]), r["currency"], r["active"]) for r in rows}


class PriceSource(Protocol):
    async def lookup(self, skus: Sequence[str]) -> dict[str, Price]:
        """The price of each known, not deleted sku among ``skus``; unknown ones are absent."""
        ...


class CatalogReader:
    """A ``PriceSource`` that reads PostgreSQL at every lookup (on the caller's connection or pool)."""

    def __init__(self, conn: asyncpg.Connection | asyncpg.Pool):
        self.conn = conn

    async def lookup(self, skus: Sequence[str]) -> dict[str, Price]:
        return await read_prices(self.conn, skus) if skus else {}


class NotSellable(InvalidInput):
    """Some skus cannot be sold (unknown, no longer sold) or not together (several currencies)."""


def problem(sku: str, price: Price | None) -> str | None:
    """Why ``sku`` cannot be sold, or None when it can."""
    if price is None:
        return f"unknown sku: {sku}"
    if not price.active:
        return f"sku no longer sold: {sku}"
    return None


async def known(source: PriceSource, sku: str) -> bool:
    """Whether the sku is in the catalog (sold or not): stock may be kept for a product not sold yet."""
    return sku in await source.lookup([sku])


async def sellable(source: PriceSource, sku: str) -> str | None:
    """Why the sku cannot go in a cart or wishlist (unknown, no longer sold), or ``None`` when it can."""
    return problem(sku, (await source.lookup([sku])).get(sku))


async def selling_prices(source: PriceSource, skus: Iterable[str]) -> dict[str, Price]:
    """The prices of the skus among ``skus`` that sell now; the others are left out."""
    found = await source.lookup(sorted(set(skus)))
    return {sku: price for sku, price in found.items() if price.active}


async def price_order(source: PriceSource, skus: Sequence[str]) -> tuple[dict[str, Price], str]:
    """The price of every sku of one order, and the order's currency; ``NotSellable`` saying which skus
    cannot be sold and why, or that they are not priced in one currency."""
    found = await source.lookup(skus)
    unknown = [s for s in skus if s not in found]
    if unknown:
        raise NotSellable(f"unknown sku(s): {', '.join(unknown)}", field="sku")
    inactive = [s for s in skus if not found[s].active]
    if inactive:
        raise NotSellable(f"sku(s) no longer sold: {', '.join(inactive)}", field="sku")
    currencies = sorted({found[s].currency for s in skus})
    if len(currencies) > 1:
        raise NotSellable(f"the lines are priced in several currencies ({', '.join(currencies)}); "
                          "an order is paid in one currency, place one order per currency", field="currency")
    return found, currencies[0]
