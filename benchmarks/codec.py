"""Codec throughput: ShopFlow's registry-framed codec against bare fastavro schemaless, same run.

    .venv/bin/python -m benchmarks.codec [--records 200000] [--rounds 5]

Needs the registry up (`shopflow stack up`): the codec registers the schema once, as in
production, then every encode/decode is the hot path measured here. Best of N rounds each.
Target: the codec at >= 80% of bare fastavro's records/s. Results go to benchmarks/results.md.
"""

from __future__ import annotations

import argparse
import io
import time
import uuid

import fastavro

from benchmarks.progress import tqdm
from benchmarks.results import write_section
from shopflow.schemas import load_schema
from shopflow.schemas.codec import AvroCodec
from shopflow.schemas.orders import OrderPlaced
from shopflow.schemas.registry import SchemaRegistry
from shopflow.settings import get_settings
from shopflow.topologies.catalog import ORDERS

RECORD = OrderPlaced.AVRO_NAME


def typical_order() -> dict:
    price = lambda minor: {"amount_minor": minor, "currency": "EUR"}  # noqa: E731
    return {
        "event_id": str(uuid.uuid4()), "order_id": str(uuid.uuid4()), "user_id": "u-1842",
        "lines": [{"sku": f"SKU-{i:05d}", "quantity": i + 1, "unit_price": price(1999 + i)} for i in range(3)],
        "total": price(12000), "payment_token": "tok_approve", "occurred_at": int(time.time() * 1000),
    }


def best_rate(fn, n: int, rounds: int, label: str) -> float:
    best = 0.0
    for _ in tqdm(range(rounds), desc=label, leave=False):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = max(best, n / (time.perf_counter() - t0))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()

    schema, order = load_schema(RECORD), typical_order()
    parsed = fastavro.parse_schema(schema)
    codec = AvroCodec(SchemaRegistry(get_settings().registry_url))
    subject = ORDERS.subject(OrderPlaced)
    framed = codec.encode_value(subject, schema, order)
    body = framed[5:]

    def bare_encode():
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, parsed, order)
        return buf.getvalue()

    rates = {
        "encode bare fastavro": best_rate(bare_encode, args.records, args.rounds, "bare encode"),
        "encode codec": best_rate(lambda: codec.encode_value(subject, schema, order), args.records, args.rounds,
                                  "codec encode"),
        "decode bare fastavro": best_rate(lambda: fastavro.schemaless_reader(io.BytesIO(body), parsed, None),
                                          args.records, args.rounds, "bare decode"),
        "decode codec": best_rate(lambda: codec.decode(framed), args.records, args.rounds, "codec decode"),
    }
    enc = rates["encode codec"] / rates["encode bare fastavro"]
    dec = rates["decode codec"] / rates["decode bare fastavro"]
    table = "\n".join(f"| {k} | {v:,.0f} |" for k, v in rates.items())
    body_md = (
        f"Typical OrderPlaced (3 lines), {len(framed)} bytes framed; {args.records:,} records x best of "
        f"{args.rounds} rounds, one core.\n\n| path | records/s |\n| --- | ---: |\n{table}\n\n"
        f"Codec / bare: encode **{enc:.0%}**, decode **{dec:.0%}** (target >= 80%).\n\n"
        f"Command: `.venv/bin/python -m benchmarks.codec --records {args.records} --rounds {args.rounds}`"
    )
    write_section("codec", body_md)
    print(body_md)


if __name__ == "__main__":
    main()
