"""One router per resource, each with its own ``/v1/...`` prefix; ``api.main`` includes them all."""

from shopflow.api.routers import (
    admin,
    auth,
    carts,
    catalog,
    health,
    images,
    notification_templates,
    notifications,
    orders,
    push_subscriptions,
    search,
    taps,
    users,
    wishlist,
)

ROUTERS = (health.router, auth.router, users.router, orders.router, carts.router, wishlist.router, admin.router,
           catalog.router, search.router, taps.router, images.router, notifications.router,
           notification_templates.router, push_subscriptions.router, notifications.admin_router)
