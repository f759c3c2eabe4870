"""The Faust app and its agents, one module per bounded context (orders, inventory, payments, ...)."""
