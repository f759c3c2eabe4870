-- The redrive ledger: one row per dead letter sent back to its source topic, so none is sent twice.
-- A row is claimed 'pending' (committed) before the record is produced and turns 'done', with where
-- the copy landed, in a transaction that holds the row's lock until the broker acknowledged the copy.
-- A 'pending' row is a redrive that did not finish (a crash, the broker down): the next redrive of that
-- record looks for the copy on the source partition (its redrive.of header) before producing again.
CREATE TABLE dead_letter_redrives (
    dlq_topic        text        NOT NULL,
    dlq_partition    integer     NOT NULL,
    dlq_offset       bigint      NOT NULL,
    source_topic     text        NOT NULL,
    state            text        NOT NULL CHECK (state IN ('pending', 'done')),
    redriven_by      text        NOT NULL,  -- who: an e-mail, or "cli:<os user>"
    claimed_at       timestamptz NOT NULL DEFAULT now(),
    -- The last send's start: a later attempt waits until that send can no longer land (a lease), so a
    -- redriver whose PostgreSQL session dropped mid-send cannot be overtaken by a second copy.
    attempted_at     timestamptz NOT NULL DEFAULT now(),
    redriven_at      timestamptz,
    target_partition integer,
    target_offset    bigint,
    PRIMARY KEY (dlq_topic, dlq_partition, dlq_offset),
    CHECK ((state = 'done') = (target_offset IS NOT NULL))
);
CREATE INDEX dead_letter_redrives_pending ON dead_letter_redrives (dlq_topic) WHERE state = 'pending';
