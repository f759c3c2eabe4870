-- Accounts of the REST edge. A user and the UserRegistered event that announces it are written in
-- one transaction (this table and the outbox), so the event exists exactly when the account does.
CREATE TABLE users (
    id            uuid        PRIMARY KEY,
    -- Stored lower case; the unique index makes "Ann@x.io" and "ann@x.io" one account.
    email         text        NOT NULL CHECK (email = lower(email)),
    password_hash text        NOT NULL,  -- argon2id, PHC string format
    display_name  text,
    role          text        NOT NULL DEFAULT 'customer' CHECK (role IN ('customer', 'admin')),
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_key ON users (email);
