-- Notifications, the sender's side: what each user chose, and what became of every notification.
-- (0011_notification_templates.sql holds the delivery side: templates and push subscriptions.)

-- One row per user who chose something; no row: every channel on, no quiet hours.
CREATE TABLE notification_preferences (
    user_id      uuid        PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    channels_off text[]      NOT NULL DEFAULT '{}',
    quiet_start  smallint    CHECK (quiet_start BETWEEN 0 AND 23),
    quiet_end    smallint    CHECK (quiet_end BETWEEN 0 AND 23),
    time_zone    text        NOT NULL DEFAULT 'UTC',
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CHECK ((quiet_start IS NULL) = (quiet_end IS NULL))
);

-- The delivery ledger, which is also the user's history: one row per notification_id (the request's
-- key, derived from its cause and channel), claimed before the channel is called, so a request seen
-- again sends nothing once its row is final. sending: claimed (a claim older than the sender's lease is
-- a crashed sender's, and may be taken again); waiting: on the retry topic (a failure to retry, or quiet
-- hours); delivered / failed / skipped / gone: final.
CREATE TABLE notification_deliveries (
    notification_id text        PRIMARY KEY,
    user_id         text        NOT NULL,  -- as the request names it; no FK: kept even when the account goes
    channel         text        NOT NULL CHECK (channel IN ('EMAIL', 'SMS', 'PUSH')),
    template        text        NOT NULL,
    order_id        text,
    status          text        NOT NULL
                    CHECK (status IN ('sending', 'waiting', 'delivered', 'failed', 'skipped', 'gone')),
    attempts        integer     NOT NULL DEFAULT 0,
    detail          text,       -- the provider's message id, or why it failed or was skipped
    subject         text,       -- what the user was told, for their history
    claimed_at      timestamptz,
    requested_at    timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notification_deliveries_user ON notification_deliveries (user_id, requested_at DESC);
