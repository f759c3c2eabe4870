"""The shop admin page (console/shop.py, console/routers/shop.py).

Unit tests on given rows and answers; the integration test places orders through the real saga and reads
the numbers back from the orders read model, as the page does."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from ops_session import JSON, console_fixtures
from polling import eventually_async

from shopflow.console.shop import CHECKOUT_ROUTE, buckets_of, checkouts, low_stock_of, low_stock_query, truncate

NOW = datetime(2026, 12, 1, 23, 40, tzinfo=UTC)


def row(bucket: datetime, currency: str | None = "EUR", orders=1, confirmed=1, cancelled=0, refunded=0,
        revenue_minor=1000) -> dict:
    return {"bucket": bucket.replace(tzinfo=None), "currency": currency, "orders": orders, "confirmed": confirmed,
            "cancelled": cancelled, "refunded": refunded, "revenue_minor": revenue_minor}


def test_every_hour_of_the_window_has_a_bucket_even_without_orders():
    first = truncate(NOW, "hour").replace(hour=21)

    buckets = buckets_of([row(first.replace(hour=22))], "hour", first, NOW)

    assert [(b.start.hour, b.orders) for b in buckets] == [(21, 0), (22, 1), (23, 0)]


def test_revenue_is_kept_per_currency_and_counts_add_up_across_currencies():
    day = truncate(NOW, "day")

    bucket, = buckets_of([row(day, "EUR", orders=3, confirmed=2, cancelled=1, revenue_minor=2500),
                          row(day, "USD", orders=1, revenue_minor=999),
                          row(day, None, orders=1, confirmed=0, cancelled=1, revenue_minor=0)], "day", day, NOW)

    assert (bucket.orders, bucket.confirmed, bucket.cancelled) == (5, 3, 2)
    assert bucket.revenue_minor == {"EUR": 2500, "USD": 999}


def test_low_stock_lists_skus_with_their_product_names_and_says_when_one_has_none():
    hits = [{"_routing": "A", "_source": {"available": 0}}, {"_routing": "B", "_source": {"available": 3}}]

    low = low_stock_of(hits, {"A": "Kettle"})

    assert [(s.sku, s.name, s.available) for s in low] == [("A", "Kettle", 0), ("B", None, 3)]


def test_the_low_stock_query_asks_for_stock_docs_below_the_threshold_lowest_first_without_the_heartbeat():
    query = low_stock_query(below=5, limit=20)

    assert {"range": {"available": {"lt": 5}}} in query["query"]["bool"]["filter"]
    assert query["sort"][0] == {"available": "asc"}
    assert query["query"]["bool"]["must_not"][0]["term"]["_routing"] == "SHOPFLOW-HEARTBEAT"
    assert query["size"] == 20 and query["track_total_hits"] is True


class GivenPrometheus:
    def __init__(self, answers: dict[str, float]):
        self.answers = answers

    async def value(self, expr: str) -> float | None:
        return next((v for fragment, v in self.answers.items() if fragment in expr), None)


async def test_the_checkout_rate_is_checkouts_over_carts_that_ended():
    given = GivenPrometheus({CHECKOUT_ROUTE: 30.2, "cart-events": 9.8})

    carts = await checkouts(given, "1d")  # type: ignore[arg-type]

    assert (carts.checked_out, carts.expired, carts.rate) == (30, 10, 0.75)


async def test_no_cart_ended_is_no_rate_rather_than_zero():
    carts = await checkouts(GivenPrometheus({}), "1d")  # type: ignore[arg-type]

    assert carts.rate is None and carts.checked_out is None


# -- on the real stack -------------------------------------------------------------------------------------


ops_settings, ops = console_fixtures("console_shop")


@pytest.mark.integration
async def test_the_shops_numbers_are_the_orders_placed_through_the_saga(stack, saga_workers, codec, ops_settings, ops):
    from ops_session import projecting

    from shopflow.streams.client import SagaClient

    run = uuid.uuid4().hex[:8]
    a, b, gone = f"{run}-A", f"{run}-B", f"{run}-GONE"
    async with projecting(ops_settings, codec):
        # Given three orders confirmed and two cancelled out of stock, projected into the console's read model
        client = SagaClient(stack, codec)
        client.seed_stock({a: 100, b: 100})
        for n, lines in enumerate(([(a, 1, 1999)], [(a, 2, 1999), (b, 1, 500)], [(b, 3, 500)],
                                   [(gone, 1, 100)], [(gone, 2, 100)])):
            client.place(f"shop-{run}-{n}", lines)
        client.close()

        # When the shop page is read
        async def projected() -> dict:
            shop = (await ops.get("/shop", headers=JSON)).json()
            assert sum(day["confirmed"] + day["cancelled"] for day in shop["daily"]) == 5, shop["daily"]
            return shop

        shop = await eventually_async(projected, 60, interval_s=1, what="5 orders ended in the read model")

    # Then its numbers are those orders' (midnight may fall between placing and reading: summed over buckets)
    for table in ("hourly", "daily"):
        assert sum(bucket["orders"] for bucket in shop[table]) == 5
        assert sum(bucket["confirmed"] for bucket in shop[table]) == 3
        assert sum(bucket["revenue_minor"].get("EUR", 0) for bucket in shop[table]) == 1999 + 3998 + 500 + 1500
    assert [(s["sku"], s["units"], s["orders"], s["revenue_minor"]) for s in shop["top_skus"]] == [
        (b, 4, 2, 2000), (a, 3, 2, 5997)]
    html = (await ops.get("/shop")).text
    assert f'data-sku="{a}"' in html and 'data-testid="orders-daily"' in html


@pytest.mark.integration
def test_stock_levels_list_the_skus_below_the_threshold_lowest_first(stack):
    from catalog_pipeline import throwaway_index

    from shopflow.console.shop import stock_levels

    with throwaway_index(stack, "console-stock") as search:
        # Given three skus with 0, 3 and 10 units available
        for version, (sku, units) in enumerate((("S-EMPTY", 0), ("S-LOW", 3), ("S-PLENTY", 10)), start=1):
            search.set_stock(sku, units, version, refresh=True)

        # When the skus below 5 are asked for
        stock = stock_levels(stack, below=5, limit=10, index=search.index)

    # Then the two below it, the emptiest first, out of the three with stock
    assert [(s.sku, s.available) for s in stock.low] == [("S-EMPTY", 0), ("S-LOW", 3)]
    assert (stock.skus_below, stock.skus_tracked) == (2, 3)
