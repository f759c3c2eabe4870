"""Faust table definitions and their value types (inventory, carts, orders, payments), on RocksDB."""
