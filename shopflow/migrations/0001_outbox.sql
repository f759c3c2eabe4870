-- The transactional outbox: a write and the event that announces it commit together, and
-- Debezium's Outbox Event Router carries the event to the topic named by aggregatetype.
-- payload is already Confluent-framed Avro (the project's codec), passed through as bytes.
CREATE TABLE outbox (
    id            uuid        PRIMARY KEY,
    aggregatetype text        NOT NULL,
    aggregateid   text        NOT NULL,
    type          text        NOT NULL,
    payload       bytea       NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
