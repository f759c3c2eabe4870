-- Every committed change of a product NOTIFYs 'shopflow_products' with its sku ('*' after a TRUNCATE):
-- the edge prices orders from an in-process copy of the catalog's prices (api/prices.py) and drops
-- a sku's entry on its notification. Whoever writes the row (the catalog, a migration, psql), the
-- notification goes out, and only when the writing transaction commits.
CREATE FUNCTION products_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        PERFORM pg_notify('shopflow_products', '*');
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('shopflow_products', OLD.sku);
    ELSE
        PERFORM pg_notify('shopflow_products', NEW.sku);
        IF TG_OP = 'UPDATE' AND OLD.sku IS DISTINCT FROM NEW.sku THEN
            PERFORM pg_notify('shopflow_products', OLD.sku);
        END IF;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER products_notify AFTER INSERT OR UPDATE OR DELETE ON products
    FOR EACH ROW EXECUTE FUNCTION products_notify();
CREATE TRIGGER products_notify_truncate AFTER TRUNCATE ON products
    FOR EACH STATEMENT EXECUTE FUNCTION products_notify();
