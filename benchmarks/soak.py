"""Saga engine soak: orders/s over a long in-process run (no broker), and whether a sku's state stays bounded.

    .venv/bin/python -m benchmarks.soak [--orders 200000] [--skus 20] [--ms-per-order 10] [--settle-keep-ms 900000]

Needs no server. Drives ``shopflow.streams.replay.Replay`` (the agents' ``Engine.apply`` on real
per-partition RocksDB tables, every record round-tripped through its Avro schema) with one-line
orders, approving token ``tok_approve``, skus taken round robin and seeded with enough stock that
every order is confirmed. The harness clock moves ``--ms-per-order`` per order, so settled
reservation rows pass their keep time (``--settle-keep-ms``, SETTLED_KEEP_MS by default) during the
run and are swept by ``SettledRows``; the inventory then holds about keep / ms-per-order rows.

Reported: orders/s of each 10% slice, last slice / first slice (target >= 90%), the largest and the
final encoded size of a sku's inventory value (sampled every ``--sample-every`` orders) and the
inventory table's keys at the end. The harness's own bookkeeping would grow with history and is not
the engine's: every ``--clear-every`` orders the benchmark tallies and clears ``replay.log`` (every
record sent), ``replay.transitions``, ``replay.deliveries`` and the harness's per-key delivery
counts (kept for crash injection, unused here). The auditor (``Replay.report``, O(history)) is not run.
Results go to benchmarks/results.md.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections import Counter
from pathlib import Path

from benchmarks.progress import tqdm
from benchmarks.results import write_section
from shopflow.streams.engine import Engine
from shopflow.streams.inventory import SettledRows
from shopflow.streams.payments import SimulatedGateway
from shopflow.streams.replay import Replay
from shopflow.streams.replay_steps import place_order
from shopflow.tables.values import SETTLED_KEEP_MS, encode, is_reservation_key

SLICES = 10


async def soak(args) -> dict:
    skus = [f"SOAK-{i:02d}" for i in range(args.skus)]
    sizes: dict[str, int] = {}
    max_size = 0
    records: Counter[str] = Counter()
    slice_rates: list[float] = []
    slice_cpu_rates: list[float] = []
    slice_len = max(1, args.orders // SLICES)
    with tempfile.TemporaryDirectory(prefix="shopflow-soak-") as tmp:
        replay = Replay(Path(tmp), engine=Engine(gateway=SimulatedGateway()))
        replay.settled = SettledRows(args.settle_keep_ms)
        inventory = replay.tables["inventory"]
        try:
            per_sku = args.orders // len(skus) + 1
            for sku in skus:
                replay.seed_stock(sku, per_sku + 10)

            def sample() -> int:
                nonlocal max_size
                for sku in skus:
                    sizes[sku] = len(encode(inventory.get(sku) or {}))
                max_size = max(max_size, *sizes.values())
                return max(sizes.values())

            def clear() -> None:
                records.update(s.record for s in replay.log)
                replay.log.clear()
                replay.deliveries.clear()
                replay.transitions.clear()
                seen = getattr(replay, "_seen", None)  # (record, key) -> deliveries: crash matching only
                if seen is not None:
                    seen.clear()

            t_slice, cpu_slice = time.perf_counter(), time.process_time()
            with tqdm(total=args.orders, desc="orders", unit="order") as bar:
                for n in range(args.orders):
                    spec = {"order_id": f"soak-{n:07d}", "token": "tok_approve",
                            "lines": [[skus[n % len(skus)], 1, 1999]]}
                    await replay.send(place_order(spec, replay.now_ms))
                    replay.now_ms += args.ms_per_order
                    done = n + 1
                    if done % args.clear_every == 0:
                        clear()
                    if done % args.sample_every == 0:
                        sample()
                    if done % slice_len == 0 and len(slice_rates) < SLICES:
                        now, cpu = time.perf_counter(), time.process_time()
                        slice_rates.append(slice_len / (now - t_slice))
                        slice_cpu_rates.append(slice_len / (cpu - cpu_slice))
                        t_slice, cpu_slice = now, cpu
                        bar.set_postfix(slice=f"{slice_rates[-1]:,.0f}/s", sku_bytes=max(sizes.values(), default=0))
                    if done % 100 == 0:
                        bar.update(100)
                bar.update(args.orders % 100)
            clear()
            final_max = sample()
            keys = [k for k, _ in inventory.items()]
            rows = sum(1 for k in keys if is_reservation_key(k))
            return {"rates": slice_rates, "cpu_rates": slice_cpu_rates, "max_size": max_size, "final_size": final_max,
                    "keys": len(keys), "rows": rows, "records": records, "dead_letters": len(replay.dead_letters),
                    "sim_s": args.orders * args.ms_per_order / 1000}
        finally:
            replay.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--orders", type=int, default=200_000)
    ap.add_argument("--skus", type=int, default=20)
    ap.add_argument("--ms-per-order", type=int, default=10, help="harness clock advance per order")
    ap.add_argument("--settle-keep-ms", type=int, default=SETTLED_KEEP_MS,
                    help="how long a settled reservation row is kept before the sweep drops it")
    ap.add_argument("--clear-every", type=int, default=1000, help="clear the harness's record log every N orders")
    ap.add_argument("--sample-every", type=int, default=1000, help="sample the skus' value sizes every N orders")
    args = ap.parse_args()
    if args.orders < SLICES:
        ap.error(f"--orders must be at least {SLICES}")

    r = asyncio.run(soak(args))
    rates = r["rates"]
    ratio = rates[-1] / rates[0]
    confirmed, cancelled = r["records"]["OrderConfirmed"], r["records"]["OrderCancelled"]
    expected_rows = min(args.orders, args.settle_keep_ms // args.ms_per_order)
    cpu_rates = r["cpu_rates"]
    slice_rows = "\n".join(f"| {i * 10}-{(i + 1) * 10}% | {rate:,.0f} | {cpu:,.0f} |"
                           for i, (rate, cpu) in enumerate(zip(rates, cpu_rates, strict=True)))
    cmd = (f".venv/bin/python -m benchmarks.soak --orders {args.orders} --skus {args.skus} "
           f"--ms-per-order {args.ms_per_order} --settle-keep-ms {args.settle_keep_ms}")
    body = (
        f"In-process saga engine (`Replay`: `Engine.apply` on per-partition RocksDB tables, Avro round trip of "
        f"every record, no broker), one core. {args.orders:,} one-line orders, `tok_approve`, {args.skus} skus "
        f"round robin; harness clock +{args.ms_per_order} ms per order ({r['sim_s']:,.0f} s simulated), settled "
        f"reservation rows kept {args.settle_keep_ms / 1000:,.0f} s then swept. The harness's record log, "
        f"transitions and delivery list are cleared every {args.clear_every:,} orders; the auditor is not run.\n\n"
        f"| slice of the run | orders/s (wall clock) | orders per CPU second |\n| --- | ---: | ---: |\n{slice_rows}\n\n"
        f"| measure | value | target |\n| --- | ---: | ---: |\n"
        f"| last 10% / first 10%, wall clock | {rates[-1]:,.0f} / {rates[0]:,.0f} = **{ratio:.0%}** | >= 90% |\n"
        f"| last 10% / first 10%, per CPU second | {cpu_rates[-1]:,.0f} / {cpu_rates[0]:,.0f} = "
        f"{cpu_rates[-1] / cpu_rates[0]:.0%} | |\n"
        f"| orders confirmed / cancelled / dead letters | {confirmed:,} / {cancelled:,} / {r['dead_letters']} | "
        f"{args.orders:,} / 0 / 0 |\n"
        f"| sku value (inventory), encoded bytes: max sampled / final | {r['max_size']:,} / {r['final_size']:,} "
        f"| bounded |\n"
        f"| inventory keys at the end: skus + reservation rows | {r['keys'] - r['rows']:,} + {r['rows']:,} | "
        f"rows ~ keep / ms-per-order = {expected_rows:,} |\n\n"
        f"Command: `{cmd}`\n"
    )
    write_section("soak", body)
    print(body)


if __name__ == "__main__":
    main()
