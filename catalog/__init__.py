"""The product catalog, a bounded context of its own: products and categories in PostgreSQL, their
events leaving through the outbox (``shopflow.outbox``), the read cache, whether and at what price a
sku sells, and the OpenSearch read model that search asks.

    products      what a product is, and the one owner of its field rules (limits, checks, messages)
    categories    what a category is, and its rules
    store         the repository: writes, each with its outbox event in one transaction; cached reads
    cache         the versioned Redis read cache of products
    reader        whether and at what price a sku sells (carts, wishlists, orders, the price book)
    search        search queries, results, cursors and request bodies (pure)
    search_index  the product index: its definition, documents, the indexer's writes, the queries run

The names most callers need are importable from here.
"""

from shopflow.catalog.categories import Category, validate_category
from shopflow.catalog.errors import CatalogError, CatalogUnavailable, Conflict, InvalidInput, NotFound
from shopflow.catalog.products import UPDATABLE, Product, ProductInput, validate_product
from shopflow.catalog.store import Catalog

__all__ = [
    "UPDATABLE",
    "Catalog",
    "CatalogError",
    "CatalogUnavailable",
    "Category",
    "Conflict",
    "InvalidInput",
    "NotFound",
    "Product",
    "ProductInput",
    "validate_category",
    "validate_product",
]
