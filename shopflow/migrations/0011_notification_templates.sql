-- Notifications, the delivery side: message templates per (template, channel, locale), rendered by
-- shopflow.notify.templates (Jinja2, sandboxed, strict), and the Web Push subscriptions users register.
-- (0010_notifications.sql holds the sender's tables: preferences, delivery ledger, history.)
CREATE TABLE notification_templates (
    template   text        NOT NULL CHECK (template ~ '^[a-z][a-z0-9_]{0,62}$'),
    channel    text        NOT NULL CHECK (channel IN ('EMAIL', 'SMS', 'PUSH')),
    locale     text        NOT NULL CHECK (locale ~ '^[a-z]{2}(-[A-Z]{2})?$'),
    subject    text        NOT NULL,
    text_body  text        NOT NULL,
    -- Email only: messages are multipart text + HTML.
    html_body  text,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (template, channel, locale)
);

-- A browser's subscription (PushSubscription.toJSON()); the endpoint is unique, so registering the
-- same subscription twice keeps one row; a 404/410 from the endpoint deletes it.
CREATE TABLE push_subscriptions (
    subscription_id uuid        PRIMARY KEY,
    user_id         uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    endpoint        text        NOT NULL UNIQUE,
    p256dh          text        NOT NULL,
    auth            text        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX push_subscriptions_user ON push_subscriptions (user_id);

-- The seeded templates, locale "en"; their parameters are listed in shopflow.notify.templates.SAMPLE_PARAMS.
INSERT INTO notification_templates (template, channel, locale, subject, text_body, html_body) VALUES
('order_confirmed', 'EMAIL', 'en', 'Your order {{ order_id }} is confirmed',
 E'Thank you for your order.\n\nOrder {{ order_id }} is confirmed; we charged {{ total }}.\nWe will tell you when it ships.\n\nShopFlow',
 '<p>Thank you for your order.</p><p>Order <strong>{{ order_id }}</strong> is confirmed; we charged <strong>{{ total }}</strong>.</p><p>We will tell you when it ships.</p><p>ShopFlow</p>'),
('order_confirmed', 'SMS', 'en', '', 'ShopFlow: order {{ order_id }} is confirmed ({{ total }}).', NULL),
('order_confirmed', 'PUSH', 'en', 'Order confirmed', 'Order {{ order_id }} is confirmed ({{ total }}).', NULL),

('order_cancelled', 'EMAIL', 'en', 'Your order {{ order_id }} was cancelled',
 E'We are sorry: order {{ order_id }} was cancelled.\nReason: {{ reason }}.\n\nShopFlow',
 '<p>We are sorry: order <strong>{{ order_id }}</strong> was cancelled.</p><p>Reason: {{ reason }}.</p><p>ShopFlow</p>'),
('order_cancelled', 'SMS', 'en', '', 'ShopFlow: order {{ order_id }} was cancelled ({{ reason }}).', NULL),
('order_cancelled', 'PUSH', 'en', 'Order cancelled', 'Order {{ order_id }} was cancelled: {{ reason }}.', NULL),

('order_refunded', 'EMAIL', 'en', 'Your refund for order {{ order_id }}',
 E'We refunded {{ amount }} for order {{ order_id }}.\nIt may take a few days to show on your statement.\n\nShopFlow',
 '<p>We refunded <strong>{{ amount }}</strong> for order <strong>{{ order_id }}</strong>.</p><p>It may take a few days to show on your statement.</p><p>ShopFlow</p>'),
('order_refunded', 'SMS', 'en', '', 'ShopFlow: {{ amount }} refunded for order {{ order_id }}.', NULL),
('order_refunded', 'PUSH', 'en', 'Refund issued', '{{ amount }} refunded for order {{ order_id }}.', NULL),

('welcome', 'EMAIL', 'en', 'Welcome to ShopFlow, {{ display_name }}',
 E'Hello {{ display_name }},\n\nyour ShopFlow account is ready.\n\nShopFlow',
 '<p>Hello {{ display_name }},</p><p>your ShopFlow account is ready.</p><p>ShopFlow</p>'),
('welcome', 'SMS', 'en', '', 'Welcome to ShopFlow, {{ display_name }}!', NULL),
('welcome', 'PUSH', 'en', 'Welcome', 'Welcome to ShopFlow, {{ display_name }}!', NULL),

('cart_expiring', 'EMAIL', 'en', 'Your cart expires in {{ minutes_left }} minutes',
 E'The items in your cart are held for {{ minutes_left }} more minutes.\nCheck out before they are released.\n\nShopFlow',
 '<p>The items in your cart are held for <strong>{{ minutes_left }}</strong> more minutes.</p><p>Check out before they are released.</p><p>ShopFlow</p>'),
('cart_expiring', 'SMS', 'en', '', 'ShopFlow: your cart expires in {{ minutes_left }} minutes.', NULL),
('cart_expiring', 'PUSH', 'en', 'Cart expiring', 'Your cart expires in {{ minutes_left }} minutes.', NULL),

('low_stock', 'EMAIL', 'en', 'Low stock: {{ sku }} ({{ available }} left)',
 E'Sku {{ sku }} is down to {{ available }} available units (threshold {{ threshold }}).\nRestock it or adjust the threshold.\n\nShopFlow',
 '<p>Sku <strong>{{ sku }}</strong> is down to <strong>{{ available }}</strong> available units (threshold {{ threshold }}).</p><p>Restock it or adjust the threshold.</p><p>ShopFlow</p>'),
('low_stock', 'SMS', 'en', '', 'ShopFlow: {{ sku }} low, {{ available }} left (threshold {{ threshold }}).', NULL),
('low_stock', 'PUSH', 'en', 'Low stock', '{{ sku }}: {{ available }} left (threshold {{ threshold }}).', NULL);
