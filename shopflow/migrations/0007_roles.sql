-- Roles and permissions (issue 14 "Access", issue 15's data and ops roles) and the audit log.
-- Code checks permissions, never role names: which role has which permission is these rows, so a
-- new role or a changed mapping needs no release. A user's roles live in user_roles only: the old
-- users.role column is moved here and dropped, so no second copy can disagree.
CREATE TABLE roles (
    name        text PRIMARY KEY,
    description text NOT NULL
);

CREATE TABLE permissions (
    name        text PRIMARY KEY,
    description text NOT NULL
);

CREATE TABLE role_permissions (
    role       text NOT NULL REFERENCES roles (name) ON DELETE CASCADE,
    permission text NOT NULL REFERENCES permissions (name) ON DELETE CASCADE,
    PRIMARY KEY (role, permission)
);

CREATE TABLE user_roles (
    user_id    uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- No cascade: a role still held by someone cannot be deleted by accident.
    role       text        NOT NULL REFERENCES roles (name),
    granted_by text        NOT NULL,  -- who: an e-mail, "cli:<os user>", "sign-up", "migration 0007"
    granted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, role)
);
CREATE INDEX user_roles_role ON user_roles (role);

INSERT INTO roles (name, description) VALUES
    ('customer', 'Shops: own carts, orders and wishlist.'),
    ('admin',    'Runs the shop and everything else: catalog, stock, all orders, unmasked taps, the ops console.'),
    ('ops',      'Operates the platform: the ops console (view and act) and topic taps, masked.'),
    ('data',     'Analyses the streams: topic taps, personal fields masked.');

INSERT INTO permissions (name, description) VALUES
    ('taps.read',   'Tap a topic (GET /v1/taps, shopflow tap) with personal fields masked.'),
    ('taps.unmask', 'Tap a topic with personal fields in the clear.'),
    ('ops.view',    'See the ops console.'),
    ('ops.act',     'Act in the ops console: restart connectors, redrive dead letters.'),
    ('shop.admin',  'Manage the catalog and stock; read every customer''s orders.');

INSERT INTO role_permissions (role, permission) VALUES
    ('admin', 'taps.read'), ('admin', 'taps.unmask'), ('admin', 'ops.view'), ('admin', 'ops.act'),
    ('admin', 'shop.admin'),
    ('ops', 'taps.read'), ('ops', 'ops.view'), ('ops', 'ops.act'),
    ('data', 'taps.read');

INSERT INTO user_roles (user_id, role, granted_by, granted_at)
SELECT id, role, 'migration 0007', created_at FROM users;

ALTER TABLE users DROP COLUMN role;

-- Who did what and when: every grant and revoke, every tap, every ops console action.
CREATE TABLE audit_log (
    id       bigserial   PRIMARY KEY,
    at       timestamptz NOT NULL DEFAULT now(),
    actor_id uuid,                  -- the user, when a signed-in user acted (no FK: the log outlives accounts)
    actor    text        NOT NULL,  -- their e-mail, or the tool ("cli:alice")
    action   text        NOT NULL,  -- "role.grant", "tap", "connector.restart", ...
    target   text        NOT NULL,
    detail   jsonb
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_actor ON audit_log (actor_id, at);
