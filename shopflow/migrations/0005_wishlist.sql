-- Each customer's wishlist: skus kept for later, written only by the edge (api/routers/wishlist.py).
-- No foreign key to products: a product that leaves the catalog stays listed (shown unavailable).
CREATE TABLE wishlist_items (
    user_id  uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    sku      text        NOT NULL,
    added_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, sku)
);
-- "My wishlist, newest first".
CREATE INDEX wishlist_items_user_newest ON wishlist_items (user_id, added_at DESC);
