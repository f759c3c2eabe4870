"""The dead-letters page on the real broker: topics with their counts, a topic's newest records with why and
where from, and redrive from the page: confirmed by a dry run, CSRF-checked, sent once, marked, audited."""
# ruff: noqa: F811 - the fixtures of redrive_support are imported, then named as test arguments

from __future__ import annotations

import pytest
from redrive_support import audit_rows, copies_on, dead_lettered, dlq_headers  # noqa: F401 - fixtures

from shopflow.topologies.catalog import dead_letter_topics

pytestmark = pytest.mark.integration

JSON = {"Accept": "application/json"}


def test_every_dead_letter_topic_of_the_catalog_is_listed_with_its_counts(ops_user_factory, ops_session):
    session = ops_session(ops_user_factory("ops"))
    view = session.client.get("/dead-letters", headers=JSON).json()

    assert [t["topic"] for t in view["topics"]] == [t.name for t in dead_letter_topics()]
    assert all(t["held"] <= t["received"] for t in view["topics"])
    html = session.client.get("/dead-letters").text
    assert all(f'data-topic="{t.name}"' in html for t in dead_letter_topics())


def test_a_dead_letter_is_shown_then_redriven_once_from_the_page(stack, ops_settings, dead_lettered,
                                                                 ops_user_factory, ops_session):
    source, dlq = dead_lettered(3)
    session = ops_session(ops_user_factory("ops"))

    # Given the topic's newest dead letters, newest first, with reason and origin
    view = session.client.get(f"/dead-letters/{dlq}", params={"limit": 2}, headers=JSON).json()
    assert [row["record"]["offset"] for row in view["records"]] == [2, 1]
    first = view["records"][0]["record"]["dead_letter"]
    assert (first["reason"], first["source_topic"], first["source_partition"], first["source_offset"]) == (
        "unexpected-record", source, 1, 2)

    # When one is redriven: the confirm step is a dry run, a post without the CSRF token is refused
    confirm = session.client.get(f"/dead-letters/{dlq}/redrive", params={"partition": 0, "offset": 2}, headers=JSON)
    assert [o["outcome"] for o in confirm.json()["outcomes"]] == ["would-send"]
    confirm_page = session.client.get(f"/dead-letters/{dlq}/redrive", params={"partition": 0, "offset": 2}).text
    assert 'data-testid="redrive-submit"' in confirm_page and 'name="offset" value="2"' in confirm_page
    assert copies_on(stack, source) == []
    assert session.client.post(f"/dead-letters/{dlq}/redrive", data={"partition": "0", "offset": "2"}
                               ).status_code == 403
    done = session.client.post(f"/dead-letters/{dlq}/redrive", headers=JSON,
                               data={"partition": "0", "offset": "2", "csrf_token": session.csrf_token})

    # Then it is sent back once, marked on the page, audited; a second redrive is refused
    assert done.status_code == 200, done.text
    assert [o["outcome"] for o in done.json()["outcomes"]] == ["sent"]
    assert len(copies_on(stack, source)) == 1
    html = session.client.get(f"/dead-letters/{dlq}").text
    assert 'data-offset="2" data-redriven="done"' in html and 'data-offset="1" data-redriven="no"' in html
    again = session.client.post(f"/dead-letters/{dlq}/redrive", headers={**session.csrf, **JSON},
                                data={"partition": "0", "offset": "2"})
    assert [o["outcome"] for o in again.json()["outcomes"]] == ["already-redriven"]
    again_page = session.client.post(f"/dead-letters/{dlq}/redrive", headers=session.csrf,
                                     data={"partition": "0", "offset": "2"}).text
    assert 'data-outcome="already-redriven"' in again_page and "0 of 1 sent back" in again_page
    assert len(copies_on(stack, source)) == 1
    [audit, *_] = audit_rows(ops_settings, "dead-letters.redrive", dlq)  # then the refused ones
    assert audit["actor"] == session.user.email and audit["detail"]["sent"] == [f"{dlq}/0/2"]


def test_every_record_a_filter_matches_when_confirmed_is_redriven_and_none_that_came_after(
        stack, dead_lettered, producer, ops_user_factory, ops_session):
    source, dlq = dead_lettered(4)
    session = ops_session(ops_user_factory("ops"))
    where = 'key in ["k1", "k3", "k9"]'

    # Given the confirm step of a redrive by filter: what matches, and the range it scanned
    shown = session.client.get(f"/dead-letters/{dlq}", params={"where": where}).text
    assert f'/dead-letters/{dlq}/redrive?where=' in shown
    confirm = session.client.get(f"/dead-letters/{dlq}/redrive", params={"where": where}, headers=JSON).json()
    assert (confirm["matched"], confirm["scan_to"], confirm["bound"]) == (2, "0:4", None)
    confirm_page = session.client.get(f"/dead-letters/{dlq}/redrive", params={"where": where}).text
    assert 'name="to" value="0:4"' in confirm_page and 'data-testid="scan-bound"' not in confirm_page

    # When a matching dead letter arrives before the confirmed redrive is posted
    producer.produce(dlq, key=b"k9", value=b"v9", headers=dlq_headers(source, "1", "9"))
    producer.flush(10)
    done = session.client.post(f"/dead-letters/{dlq}/redrive", headers={**session.csrf, **JSON},
                               data={"where": where, "to": confirm["scan_to"]})

    # Then only what was confirmed is sent; a post by filter without the confirmed range is refused
    assert done.status_code == 200, done.text
    assert sorted(o["position"] for o in done.json()["outcomes"]) == [f"{dlq}/0/1", f"{dlq}/0/3"]
    assert len(copies_on(stack, source)) == 2
    unconfirmed = session.client.post(f"/dead-letters/{dlq}/redrive", headers={**session.csrf, **JSON},
                                      data={"where": where})
    assert unconfirmed.status_code == 400 and "confirm step" in unconfirmed.json()["detail"]
    assert len(copies_on(stack, source)) == 2


def test_bad_requests_get_a_clear_error_and_a_data_user_no_page(dead_lettered, ops_user_factory, ops_session):
    _, dlq = dead_lettered(1)
    ops = ops_session(ops_user_factory("ops"))
    data = ops_session(ops_user_factory("data"))

    not_dlq = ops.client.get("/dead-letters/orders", headers=JSON)
    assert not_dlq.status_code == 404 and "not a dead-letter topic" in not_dlq.json()["detail"]
    bad_filter = ops.client.get(f"/dead-letters/{dlq}", params={"where": "value.x =="}, headers=JSON)
    assert bad_filter.status_code == 400
    neither = ops.client.post(f"/dead-letters/{dlq}/redrive", headers={**ops.csrf, **JSON}, data={})
    assert neither.status_code == 400 and "say which records" in neither.json()["detail"]
    assert data.client.get("/dead-letters", headers=JSON).status_code == 403
    assert data.client.post(f"/dead-letters/{dlq}/redrive", headers=data.csrf,
                            data={"partition": "0", "offset": "0"}).status_code == 403
