"""The ops console: a web page (and JSON API) for the people who run ShopFlow."""
