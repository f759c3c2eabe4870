"""Whether and at what price a sku sells (``shopflow.catalog.reader``), without servers: the one rule
that carts, wishlists, orders and the admin's stock route ask."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from shopflow.catalog.reader import NotSellable, Price, known, price_order, sellable, selling_prices

PRICES = {"LAMP": Price(1999, "EUR", True), "OLD": Price(500, "EUR", False), "MUG": Price(800, "USD", True)}


class Prices:
    """A price source over a fixed table; remembers what it was asked."""

    def __init__(self) -> None:
        self.asked: list[list[str]] = []

    async def lookup(self, skus: Sequence[str]) -> dict[str, Price]:
        self.asked.append(list(skus))
        return {sku: PRICES[sku] for sku in skus if sku in PRICES}


@pytest.mark.parametrize(("sku", "problem"), [
    ("LAMP", None), ("OLD", "sku no longer sold: OLD"), ("NOPE", "unknown sku: NOPE"),
])
async def test_a_sku_sells_when_known_and_active(sku, problem):
    assert await sellable(Prices(), sku) == problem


async def test_a_listed_but_unsold_sku_is_still_known():
    assert (await known(Prices(), "OLD"), await known(Prices(), "NOPE")) == (True, False)


async def test_selling_prices_leave_out_what_does_not_sell_and_ask_each_sku_once():
    source = Prices()
    assert await selling_prices(source, ["OLD", "LAMP", "NOPE", "LAMP"]) == {"LAMP": PRICES["LAMP"]}
    assert source.asked == [["LAMP", "NOPE", "OLD"]]


@pytest.mark.parametrize(("skus", "message"), [
    (["LAMP", "NOPE", "GONE"], "unknown sku(s): NOPE, GONE"),
    (["LAMP", "OLD"], "sku(s) no longer sold: OLD"),
    (["LAMP", "MUG"], "several currencies (EUR, USD)"),
])
async def test_an_order_is_refused_naming_the_skus(skus, message):
    with pytest.raises(NotSellable, match=message.replace("(", r"\(").replace(")", r"\)")) as refused:
        await price_order(Prices(), skus)
    assert refused.value.status == 422


async def test_an_order_is_priced_from_the_catalog_in_one_currency():
    found, currency = await price_order(Prices(), ["LAMP", "LAMP"])
    assert (found, currency) == ({"LAMP": PRICES["LAMP"]}, "EUR")
