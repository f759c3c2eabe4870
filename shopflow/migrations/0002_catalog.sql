-- The product catalog: a category tree and the products, written only through shopflow/catalog.py,
-- which commits every product change together with its outbox row (0001_outbox.sql).

-- A category's path is its slugs from the root joined by '/' (audio/headphones): it is what the
-- events and the search index carry, and a subtree is every path equal to P or starting with 'P/'.
-- COLLATE "C" lets the unique btree on path serve those prefix (LIKE 'P/%') scans.
CREATE TABLE categories (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    parent_id bigint REFERENCES categories (id) ON DELETE RESTRICT,
    slug      text NOT NULL CHECK (slug ~ '^[a-z0-9]+(-[a-z0-9]+)*$'),
    name      text NOT NULL CHECK (length(btrim(name)) > 0),
    path      text COLLATE "C" NOT NULL UNIQUE,
    CHECK (id IS DISTINCT FROM parent_id)
);
-- Children of a node (tree listing, "has children?" before a delete).
CREATE INDEX categories_parent_id ON categories (parent_id);

-- A deleted product keeps its row (deleted_at set) so its version keeps increasing if the sku comes
-- back: consumers order a sku's events by version, and a re-created sku restarting at 1 would be
-- taken for a stale event.
CREATE TABLE products (
    sku         text PRIMARY KEY CHECK (sku ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    name        text NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 300),
    description text NOT NULL DEFAULT '',
    brand       text,
    category_id bigint REFERENCES categories (id) ON DELETE RESTRICT,
    price_minor bigint NOT NULL CHECK (price_minor >= 0),
    currency    char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    attributes  jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(attributes) = 'object'),
    active      boolean NOT NULL DEFAULT true,
    version     bigint NOT NULL DEFAULT 1 CHECK (version >= 1),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz
);
-- Products of a category: re-emitting a subtree after a category move, refusing to delete a
-- category in use, and the foreign key's own check when a category is deleted (which also sees
-- deleted rows, so the index is not partial).
CREATE INDEX products_category_id ON products (category_id);
