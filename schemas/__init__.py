"""The event contracts: Avro schemas (.avsc), one per command and event, and the registry-framed codec."""
