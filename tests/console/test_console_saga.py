"""The saga health page (console/saga.py, console/routers/saga.py).

Unit tests read given Prometheus answers and a given board; the integration tests run the real saga and
monitor, and read the page and an order's story from the console.
(Named test_console_saga.py: tests/topologies/test_saga.py has the plain name.)"""

from __future__ import annotations

import math

import pytest
from ops_session import JSON, console_fixtures
from polling import eventually_async

from shopflow.console.prometheus import PrometheusUnavailable, Sample
from shopflow.console.saga import NO_BOARD, P99_RULE, saga_health
from shopflow.settings import Settings
from shopflow.streams.stuck_orders import StuckBoard, StuckOrder, board_key_of


class GivenPrometheus:
    """Answers each query whose text contains a given fragment; an empty vector otherwise."""

    def __init__(self, answers: dict[str, list[Sample]] | None = None, down: bool = False):
        self.answers, self.down, self.asked = answers or {}, down, []

    async def query(self, expr: str) -> list[Sample]:
        self.asked.append(expr)
        if self.down:
            raise PrometheusUnavailable("Prometheus at http://127.0.0.1:9090 does not answer")
        return next((samples for fragment, samples in self.answers.items() if fragment in expr), [])

    async def value(self, expr: str) -> float | None:
        samples = await self.query(expr)
        return samples[0].value if samples else None


KEY = "shopflow:monitor:stuck-orders:test"


class GivenRedis:
    def __init__(self, values: dict[str, str] | None = None):
        self.values = values or {}

    async def get(self, key: str) -> str | None:
        return self.values.get(key)


def board(now_ms: int) -> StuckBoard:
    stuck = StuckOrder(order_id="o-1", state="RESERVED", entered_at_ms=now_ms - 60_000, deadline_ms=now_ms - 30_000,
                       placed_at_ms=now_ms - 60_001, awaiting=["payment-results PaymentSucceeded"], path=[])
    return StuckBoard(published_at_ms=now_ms, total=1, orders=[stuck])


async def test_the_page_shows_the_monitors_numbers_and_its_stuck_orders():
    import time

    now_ms = int(time.time() * 1000)
    prometheus = GivenPrometheus({
        "shopflow_orders)": [Sample({"state": "CONFIRMED"}, 7), Sample({"state": "PENDING"}, 2)],
        "increase(shopflow_compensations_total": [Sample({"reason": "OUT_OF_STOCK"}, 3)],
        "max by (reason) (shopflow_compensations_total)": [Sample({"reason": "OUT_OF_STOCK"}, 5)],
        P99_RULE: [Sample({"outcome": "CONFIRMED"}, 0.2)],
        "histogram_quantile(0.5, sum by (le) (rate(shopflow_order_completion_seconds_bucket[5m])))":
            [Sample({}, 0.05)],
    })
    redis = GivenRedis({KEY: board(now_ms).model_dump_json()})

    view = await saga_health(prometheus, redis, KEY)

    assert list(view.orders_by_state.items()) == [("PENDING", 2), ("CONFIRMED", 7)]  # the saga's order
    assert view.stuck == board(now_ms)
    out_of_stock = next(c for c in view.compensations if c.reason == "OUT_OF_STOCK")
    assert (out_of_stock.last_hour, out_of_stock.since_monitor_start) == (3, 5)
    assert {c.reason for c in view.compensations} >= {"OUT_OF_STOCK", "PAYMENT_FAILED", "TIMEOUT"}
    confirmed = next(row for row in view.latency if row.outcome == "CONFIRMED" and row.window == "5m")
    overall = next(row for row in view.latency if row.outcome == "all" and row.window == "5m")
    assert (confirmed.p99, overall.p50) == (0.2, 0.05)
    assert view.notes == []


async def test_without_prometheus_and_monitor_the_page_says_what_to_do():
    view = await saga_health(GivenPrometheus(down=True), GivenRedis(), KEY)

    assert view.orders_by_state == {} and view.stuck is None
    assert any("does not answer" in note for note in view.notes)
    assert NO_BOARD in view.notes


async def test_a_percentile_with_no_order_ended_is_unknown_not_nan():
    prometheus = GivenPrometheus({P99_RULE: [Sample({"outcome": "CONFIRMED"}, math.nan)]})

    view = await saga_health(prometheus, GivenRedis(), KEY)

    assert next(row for row in view.latency if row.outcome == "CONFIRMED").p99 is None


@pytest.mark.parametrize("query", ["max by (state) (shopflow_orders)", "sum(shopflow:orders_completed:rate1m) * 60"])
async def test_it_reads_the_monitors_series_and_recording_rules(query):
    prometheus = GivenPrometheus()

    await saga_health(prometheus, GivenRedis(), KEY)

    assert query in prometheus.asked


def test_each_deployment_has_its_own_stuck_orders_board(tmp_path):
    # Given the real deployment and a test's (a throwaway schema), on one Redis
    real = Settings(home=tmp_path)
    test = real.model_copy(update={"postgres_schema": "opstest_1a2b"})

    # Then their monitors publish, and their consoles read, under different keys
    assert board_key_of(real) != board_key_of(test)
    assert board_key_of(test) == board_key_of(test.model_copy(update={"ops_port": 1}))  # same deployment


# -- on the real stack -------------------------------------------------------------------------------------

ops_settings, ops = console_fixtures("console_saga")


@pytest.mark.integration
async def test_an_order_whose_payment_never_answers_shows_as_stuck_with_its_path(stack, topic_factory, producer,
                                                                                codec, running_monitor, ops):
    import uuid

    from shopflow.schemas.orders import OrderPlaced
    from shopflow.schemas.payments import PaymentRequested
    from shopflow.schemas.records import Money, OrderLine, datetime_of_ms
    from shopflow.streams.client import now_ms
    from shopflow.topologies.catalog import ORDERS, PAYMENT_REQUESTS, PAYMENT_RESULTS

    # Given stand-ins for the saga's topics with no payments agent on them, and a 2 s payment deadline
    stand_in = {t.name: topic_factory(t.name, partitions=2) for t in (ORDERS, PAYMENT_REQUESTS, PAYMENT_RESULTS)}
    running_monitor(list(stand_in.values()))
    order_id = f"stuck-{uuid.uuid4().hex[:10]}"
    total = Money(1999, "EUR")

    # When an order is placed and its payment requested, and nothing answers
    for topic, record in ((ORDERS, OrderPlaced(str(uuid.uuid4()), order_id, "u-1", (OrderLine("SKU-A", 1, total),),
                                                total, "tok_approve", datetime_of_ms(now_ms()))),
                          (PAYMENT_REQUESTS, PaymentRequested(str(uuid.uuid4()), order_id, "u-1", total, "tok_approve",
                                                              datetime_of_ms(now_ms())))):
        producer.produce(stand_in[topic.name], key=order_id.encode(), value=codec.encode(topic, record))
    producer.flush(10)

    # Then the saga page lists it past its deadline, with the records it went through and what it waits for
    async def listed() -> dict:
        page = (await ops.get("/saga", headers=JSON)).json()
        found = [o for o in (page["stuck"] or {"orders": []})["orders"] if o["order_id"] == order_id]
        assert found, f"{order_id} not among the stuck orders: {page['stuck']} {page['notes']}"
        return found[0]

    stuck = await eventually_async(listed, 30, interval_s=0.5, what="the order listed as stuck")
    assert stuck["state"] == "RESERVED"
    assert [(s["topic"], s["record"]) for s in stuck["path"]] == [
        (stand_in[ORDERS.name], "OrderPlaced"), (stand_in[PAYMENT_REQUESTS.name], "PaymentRequested")]
    assert stuck["awaiting"] == ["payment-results PaymentFailed", "payment-results PaymentSucceeded"]
    html = (await ops.get("/saga")).text
    assert f'data-order="{order_id}"' in html and "PaymentRequested" in html


SAGA_STEPS = ["PlaceOrder", "OrderPlaced", "ReserveStock", "StockReserved", "PaymentRequested", "PaymentSucceeded",
              "OrderConfirmed", "CommitStock"]


@pytest.mark.integration
async def test_an_orders_story_lists_every_record_it_caused_in_order(stack, saga_workers, codec, ops):
    import uuid

    from shopflow.streams.client import SagaClient

    # Given an order of two skus confirmed by the real saga
    run = uuid.uuid4().hex[:8]
    order_id = f"story-{run}"
    client = SagaClient(stack, codec)
    client.seed_stock({f"{run}-A": 10, f"{run}-B": 10})
    client.place(order_id, [(f"{run}-A", 1, 1000), (f"{run}-B", 2, 500)])
    client.close()

    # When its story is asked for (the read model of this console's schema does not have it), until the
    # saga has written its last records: each topic is read to its end as of the request, and the saga's
    # last step writes OrderConfirmed and the CommitStocks at the same moment, on different topics
    expected = sorted(SAGA_STEPS + ["ReserveStock", "StockReserved", "CommitStock"])

    async def told() -> dict:
        story = (await ops.get(f"/saga/orders/{order_id}", params={"since": "15m"}, headers=JSON)).json()
        assert sorted(r["record"] for r in story["records"]) == expected, story["records"]
        return story

    story = await eventually_async(told, 60, interval_s=1, what="the order's whole story")

    # Then every record it caused is there once, each step after the one that caused it
    records = [r["record"] for r in story["records"]]
    firsts = [records.index(step) for step in SAGA_STEPS]
    assert firsts == sorted(firsts), records
    assert [r["at_ms"] for r in story["records"]] == sorted(r["at_ms"] for r in story["records"])
    assert {r["topic"] for r in story["records"]} == {"order-commands", "orders", "stock-requests", "stock-results",
                                                      "payment-requests", "payment-results"}
    assert story["complete"] and not story["in_read_model"]
    stock_scan = next(s for s in story["scans"] if s["topic"] == "stock-requests")
    assert len(stock_scan["partitions"]) <= 2  # the partitions of its two skus only
    html = (await ops.get(f"/saga/orders/{order_id}", params={"since": "15m"})).text
    assert html.count('data-testid="story-record"') == len(records)


@pytest.mark.integration
@pytest.mark.parametrize("path", ["/saga/orders/o%20x", "/saga/orders/o-1?since=yesterday",
                                  "/saga/orders?order_id=a%22b"])
async def test_bad_input_gets_a_400_that_says_what_to_accept(path, ops):
    answer = await ops.get(path, headers=JSON)

    assert answer.status_code == 400
    assert answer.json()["detail"]


@pytest.mark.integration
async def test_a_customer_and_an_anonymous_visitor_are_refused(ops_settings):
    from ops_session import signed_in

    from shopflow.access import Role

    async with signed_in(ops_settings, Role.CUSTOMER) as customer:
        for path in ("/saga", "/saga/orders/o-1", "/shop"):
            assert (await customer.get(path, headers=JSON)).status_code == 403, path
        customer.cookies.clear()
        for path in ("/saga", "/saga/orders/o-1", "/shop"):
            assert (await customer.get(path, headers=JSON)).status_code == 401, path
            assert (await customer.get(path)).headers["location"].startswith("/login?next="), path


@pytest.mark.integration
async def test_a_projected_orders_story_is_searched_from_its_placing_to_its_settling(stack, saga_workers, codec,
                                                                                    ops_settings, ops):
    import uuid

    from ops_session import projecting

    from shopflow.streams.client import SagaClient

    run = uuid.uuid4().hex[:8]
    order_id = f"story-{run}"
    async with projecting(ops_settings, codec):
        # Given an order confirmed by the saga and in the console's orders read model
        client = SagaClient(stack, codec)
        client.seed_stock({f"{run}-A": 10})
        client.place(order_id, [(f"{run}-A", 1, 1000)])
        client.close()

        # When its story is asked for
        async def told() -> dict:
            story = (await ops.get(f"/saga/orders/{order_id}", headers=JSON)).json()
            assert story["in_read_model"] and story["status"] == "CONFIRMED", story
            assert "CommitStock" in [r["record"] for r in story["records"]], story["records"]
            return story

        story = await eventually_async(told, 60, interval_s=1, what="the projected order's whole story")

    # Then the search was bounded by the read model's times: before its first record, up to a settle after
    first, last = story["records"][0]["at_ms"], story["records"][-1]["at_ms"]
    for scan in story["scans"]:
        assert scan["from_ms"] <= first and scan["until_ms"] is not None and scan["until_ms"] >= last, scan
    assert [r["record"] for r in story["records"]] == SAGA_STEPS
