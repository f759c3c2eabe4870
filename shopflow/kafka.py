"""How ShopFlow's processes talk to the broker with confluent-kafka: the one producer configuration.

Every producer of ShopFlow records (the edge's commands, dead letters, the saga client, tools) waits
for all in-sync replicas (``acks=all``) with idempotence on, so a retry inside the client never
duplicates or reorders a key's records, and places keys with ``murmur2_random``, the Java client's
partitioner: a key lands on the same partition whether a Java producer, Debezium, Faust or this code
wrote it, which is what keeps per-entity order. What differs between producers (how long to linger,
how long to wait for the broker) is passed as ``tuning``; the guarantees above are not negotiable.
"""

from __future__ import annotations

# The three settings no ShopFlow producer may change (see the module's doc).
GUARANTEES: dict[str, object] = {"acks": "all", "enable.idempotence": True, "partitioner": "murmur2_random"}


def client_config(bootstrap_servers: str, client_id: str) -> dict[str, object]:
    """A client that only asks the broker for metadata (a readiness probe)."""
    return {"bootstrap.servers": bootstrap_servers, "client.id": client_id}


def producer_config(bootstrap_servers: str, client_id: str, **tuning: object) -> dict[str, object]:
    """A producer's configuration: the guarantees, then ``tuning`` (librdkafka names, dots as in
    ``**{"linger.ms": 5}``)."""
    clash = sorted(set(tuning) & set(GUARANTEES))
    if clash:
        raise ValueError(f"{', '.join(clash)}: fixed for every ShopFlow producer")
    return {**client_config(bootstrap_servers, client_id), **GUARANTEES, **tuning}
