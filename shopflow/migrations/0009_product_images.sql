-- Product images (the files context): the ids of a product's images, in display order, on the product
-- row itself, so every ProductUpserted the catalog writes carries them (the search hit's thumbnails);
-- and the uploads the edge issued presigned POSTs for, so a confirm, the image agent's outcome and the
-- sweep of uploads never confirmed each find their upload and its state.
ALTER TABLE products ADD COLUMN images text[] NOT NULL DEFAULT '{}';

-- issued: a presigned POST was handed out; confirmed: the object was seen (HEAD) and FileUploaded sent;
-- ready / rejected: the image agent's outcome; swept: never confirmed, its object (if any) removed;
-- deleted: an admin removed the image.
CREATE TABLE image_uploads (
    upload_id    uuid PRIMARY KEY,
    sku          text NOT NULL REFERENCES products (sku),
    content_type text NOT NULL,
    max_bytes    bigint NOT NULL CHECK (max_bytes > 0),
    uploaded_by  text NOT NULL,
    state        text NOT NULL DEFAULT 'issued'
                 CHECK (state IN ('issued', 'confirmed', 'ready', 'rejected', 'swept', 'deleted')),
    reason       text,
    detail       text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    confirmed_at timestamptz,
    processed_at timestamptz
);
-- The sweep's scan: uploads still waiting for their confirm, oldest first.
CREATE INDEX image_uploads_issued ON image_uploads (expires_at) WHERE state = 'issued';
-- A product's uploads (its images page, deleting a product's images).
CREATE INDEX image_uploads_sku ON image_uploads (sku);
