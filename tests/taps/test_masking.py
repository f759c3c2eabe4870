"""Masking personal data in taps: the .avsc marks, nested values, old writer schemas, dead letters, pseudonyms."""

from __future__ import annotations

import json
import re

import pytest
from taprecords import tap_record

from shopflow.schemas import all_schemas, load_schema
from shopflow.taps.masking import PERSONAL, Masker, UnknownPersonalKind, marks_of, personal_fields
from shopflow.taps.records import DeadLetterInfo

SECRET = "test-secret"
PSEUDONYM = re.compile(r"^(?P<kind>[a-z-]+):[0-9a-f]{10}$")


def unmarked(schema: dict) -> dict:
    """A copy of ``schema`` without any personal mark: a writer schema from before the marks."""
    return json.loads(json.dumps(schema), object_hook=lambda node: {k: v for k, v in node.items() if k != PERSONAL})


# Marks under an array, a map, a named-type reference and a union: the walk beyond ShopFlow's own shapes.
NESTED = {
    "type": "record", "name": "Nested", "namespace": "shopflow.test", "fields": [
        {"name": "id", "type": "string"},
        {"name": "contacts", "type": {"type": "array", "items": {
            "type": "record", "name": "Contact", "fields": [
                {"name": "phone", "type": ["null", "string"], PERSONAL: "phone"},
                {"name": "label", "type": "string"}]}}},
        {"name": "seen_from", "type": {"type": "map", "values": "Contact"}},
        {"name": "ips", "type": {"type": "map", "values": "string"}, PERSONAL: "ip"},
        {"name": "primary", "type": ["null", "Contact"], "default": None},
    ],
}


def test_a_registered_user_has_email_and_display_name_masked_and_user_id_kept():
    # Given a UserRegistered as the tap decodes it
    masker = Masker(SECRET)
    value = {"user_id": "u-1", "email": "ann@example.com", "display_name": "Ann Lee", "role": "CUSTOMER"}
    record = tap_record(topic="users", value=value, schema="shopflow.users.UserRegistered", schema_id=7)

    # When it is masked
    masked = masker.mask(record).value

    # Then the personal fields are pseudonyms of their kind, the rest as it was, the input untouched
    assert PSEUDONYM.match(masked["email"])["kind"] == "email"
    assert PSEUDONYM.match(masked["display_name"])["kind"] == "name"
    assert (masked["user_id"], masked["role"]) == ("u-1", "CUSTOMER")
    assert value["email"] == "ann@example.com"


def test_a_null_personal_value_stays_null():
    masker = Masker(SECRET)
    record = tap_record(value={"user_id": "u-1", "email": "a@b.c", "display_name": None},
                        schema="shopflow.users.UserRegistered")

    assert masker.mask(record).value["display_name"] is None


def test_a_shipping_address_inside_a_union_is_masked_field_by_field_but_the_country():
    masker = Masker(SECRET)
    address = {"name": "Ann Lee", "line1": "Main St 1", "line2": None, "city": "Berlin", "postal_code": "10115",
               "country": "DE"}
    lines = [{"sku": "SKU-1", "quantity": 1, "unit_price": {"amount_minor": 100, "currency": "EUR"}}]
    record = tap_record(value={"order_id": "o-1", "user_id": "u-1", "lines": lines, "shipping_address": address,
                               "payment_token": "tok_visa", "currency": "EUR"}, schema="shopflow.orders.PlaceOrder")

    masked = masker.mask(record).value

    shown = masked["shipping_address"]
    assert {k: PSEUDONYM.match(v)["kind"] for k, v in shown.items() if v is not None and k != "country"} == {
        "name": "name", "line1": "address", "city": "address", "postal_code": "address"}
    assert (shown["line2"], shown["country"]) == (None, "DE")
    assert PSEUDONYM.match(masked["payment_token"])["kind"] == "payment-token"
    assert masked["lines"] is lines  # what holds no mark is shared, not copied


def test_marks_under_arrays_maps_and_unions_are_all_masked():
    masker = Masker(SECRET, schemas={"shopflow.test.Nested": NESTED})
    value = {"id": "n-1", "contacts": [{"phone": "+49 30 1234", "label": "home"}, {"phone": None, "label": "x"}],
             "seen_from": {"mon": {"phone": "+49 30 5555", "label": "m"}}, "ips": {"a": "10.0.0.2"},
             "primary": {"phone": "+49 30 9999", "label": "work"}}

    masked = masker.mask(tap_record(value=value, schema="shopflow.test.Nested")).value

    assert [PSEUDONYM.match(c["phone"])["kind"] if c["phone"] else None for c in masked["contacts"]] == ["phone", None]
    assert [c["label"] for c in masked["contacts"]] == ["home", "x"]
    assert PSEUDONYM.match(masked["seen_from"]["mon"]["phone"])["kind"] == "phone"
    assert PSEUDONYM.match(masked["ips"]["a"])["kind"] == "ip"
    assert PSEUDONYM.match(masked["primary"]["phone"])["kind"] == "phone"
    assert masked["id"] == "n-1"


def test_a_record_written_before_the_marks_is_masked_by_the_working_trees_marks():
    # Given the registry's writer schema of an old version, without any mark
    old = unmarked(load_schema("shopflow.users.UserRegistered"))
    masker = Masker(SECRET, writer_schema={3: old}.get)

    masked = masker.mask(tap_record(value={"user_id": "u-1", "email": "old@example.com"},
                                    schema="shopflow.users.UserRegistered", schema_id=3)).value

    assert PSEUDONYM.match(masked["email"])["kind"] == "email"


def test_a_mark_only_the_writer_schema_carries_is_honoured():
    # Given a working tree that has lost a mark a newer writer still carries
    local = {"shopflow.users.UserRegistered": unmarked(load_schema("shopflow.users.UserRegistered"))}
    masker = Masker(SECRET, writer_schema={9: load_schema("shopflow.users.UserRegistered")}.get, schemas=local)

    masked = masker.mask(tap_record(value={"user_id": "u-1", "email": "new@example.com"},
                                    schema="shopflow.users.UserRegistered", schema_id=9)).value

    assert PSEUDONYM.match(masked["email"])["kind"] == "email"


def test_a_dead_letters_decoded_original_is_masked():
    masker = Masker(SECRET)
    info = DeadLetterInfo("processing-failed", "boom", "payment-requests", 0, 41)
    record = tap_record(topic="payment-requests.dlq", value={"order_id": "o-1", "payment_token": "tok_visa"},
                        schema="shopflow.payments.PaymentRequested", schema_id=5, dead_letter=info)

    masked = masker.mask(record)

    assert PSEUDONYM.match(masked.value["payment_token"])["kind"] == "payment-token"
    assert masked.dead_letter == info


def test_pseudonyms_are_stable_per_secret_so_analysts_can_count_and_join():
    one, same, other = Masker(SECRET), Masker(SECRET), Masker("another-secret")

    assert one.pseudonym("email", "ann@example.com") == same.pseudonym("email", "ann@example.com")
    assert one.pseudonym("email", "ann@example.com") != one.pseudonym("email", "bob@example.com")
    assert one.pseudonym("email", "ann@example.com") != other.pseudonym("email", "ann@example.com")


@pytest.mark.parametrize("record", [
    tap_record(value={"order_id": "o-1", "sku": "SKU-1", "quantity": 1}, schema="shopflow.inventory.ReserveStock"),
    tap_record(value=None, value_format="tombstone"),
    tap_record(value="plain text", value_format="text"),
    tap_record(value={"hex": "00ff"}, value_format="hex", schema_id=4),
], ids=["no-personal-field", "tombstone", "text", "hex"])
def test_a_record_without_personal_fields_passes_as_the_same_object(record):
    assert Masker(SECRET).mask(record) is record


def test_an_unknown_kind_is_refused_with_the_kinds_to_use():
    schema = {"type": "record", "name": "Bad", "namespace": "shopflow.test",
              "fields": [{"name": "dob", "type": "string", PERSONAL: "birthday"}]}

    with pytest.raises(UnknownPersonalKind, match=r"shopflow.test.Bad.dob: .*'birthday'; use one of .*email"):
        marks_of(schema, "shopflow.test.Bad")


def test_every_schema_mark_is_listed_for_the_closing_note():
    fields = {(f.record, f.path): f.kind for f in personal_fields()}

    assert fields[("shopflow.users.UserRegistered", "email")] == "email"
    assert fields[("shopflow.orders.PlaceOrder", "shipping_address.postal_code")] == "address"
    assert ("shopflow.orders.PlaceOrder", "user_id") not in fields  # a pseudonymous id, the analysts' join key
    assert Masker(SECRET).fields() == personal_fields(all_schemas())
