-- The orders read model, written only by the order projection (streams/order_projection.py) from
-- the `orders` topic, read by the edge. Status only moves forward (status_rank); each event is
-- applied once (orders_view_events), so redelivery and replays change nothing.
CREATE TABLE orders_view (
    order_id       text        PRIMARY KEY,
    user_id        text        NOT NULL,
    status         text        NOT NULL CHECK (status IN ('PENDING', 'CONFIRMED', 'CANCELLED', 'REFUNDED')),
    status_rank    smallint    NOT NULL,
    lines          jsonb       NOT NULL DEFAULT '[]'::jsonb,  -- [{sku, quantity, unit_price: {amount_minor, currency}}]
    total_minor    bigint,
    currency       text,
    reason         text,       -- CancelReason of a cancelled order
    detail         text,
    payment_id     text,
    created_at     timestamptz NOT NULL,  -- occurred_at of the first event seen for the order
    updated_at     timestamptz NOT NULL,  -- occurred_at of the latest event applied
    last_event_id  uuid        NOT NULL
);
-- "My orders, newest first" with keyset (cursor) pagination.
CREATE INDEX orders_view_user_newest ON orders_view (user_id, created_at DESC, order_id DESC);
CREATE INDEX orders_view_newest ON orders_view (created_at DESC, order_id DESC);

CREATE TABLE orders_view_events (
    event_id   uuid        PRIMARY KEY,
    order_id   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
