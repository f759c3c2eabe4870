"""Kafka Connect / Debezium connectors: one JSON per connector, applied through Connect's REST API."""
