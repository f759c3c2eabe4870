"""One router per resource, each with its own ``/v1/...`` prefix; ``api.main`` includes them all."""

from shopflow.api.routers import admin, auth, catalog, health, orders, search, users

ROUTERS = (health.router, auth.router, users.router, orders.router, admin.router, catalog.router, search.router)
