"""Product search (``/v1/search``): full text with typo tolerance, filters, facets, sorting, pages, suggestions.

Public, read from the OpenSearch product index (``shopflow.catalog.search_index``) that the search indexer keeps in
step with the catalog; the index is the app's (``create_app(search_index=...)``), reached through
``SearchDep``. OpenSearch calls are blocking, so they run in a worker thread.

Errors: an invalid parameter (out of bounds, price_min above price_max, ...) is **422** with the
parameter named. A ``cursor`` this search did not issue, or issued for another query (text, filters
or sort changed), is **400**, like every other cursor of this API. OpenSearch being down is 503.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status

from shopflow.api.catalog_converters import search_page, suggestions_public
from shopflow.api.catalog_schemas import MAX_PRICE_MINOR, SearchPage, Suggestions
from shopflow.api.dependencies import SearchDep
from shopflow.api.errors import errors
from shopflow.catalog.products import CATEGORY_PATH_PATTERN, MAX_CATEGORY_PATH
from shopflow.catalog.search import MAX_PAGE, MAX_TEXT, InvalidQuery, SearchError, SearchQuery, Sort, decode_cursor

router = APIRouter(prefix="/v1/search", tags=["search"])

MAX_BRANDS = 20
Price = Annotated[int | None, Query(ge=0, le=MAX_PRICE_MINOR, description="Minor units, inclusive.")]
Brand = Annotated[str, Query(min_length=1, max_length=100)]


def _unavailable(exc: SearchError) -> HTTPException:
    return HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc), headers={"Retry-After": "1"})


@router.get("", response_model=SearchPage, responses=errors(400, 422, 503))
async def search(
    index: SearchDep,
    q: Annotated[str, Query(max_length=MAX_TEXT, description="Words to find in name, brand and description "
                                                        "(typos tolerated); empty lists everything.")] = "",
    category: Annotated[str | None, Query(
        pattern=CATEGORY_PATH_PATTERN, max_length=MAX_CATEGORY_PATH,
        description="A category path; matches its whole subtree.")] = None,
    brand: Annotated[list[Brand] | None, Query(description=f"Brands (any of them; at most {MAX_BRANDS}); "
                                                           "repeat the parameter for several.")] = None,
    price_min: Price = None,
    price_max: Price = None,
    in_stock: Annotated[bool | None, Query(description="true: only with stock; false: only without.")] = None,
    sort: Sort = Sort.RELEVANCE,
    cursor: Annotated[str | None, Query(max_length=2048, description="next_cursor of the previous page of "
                                                                     "this same query.")] = None,
    size: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Hits per page.")] = 20,
) -> SearchPage:
    """Search products: hits, their total, brand and category facets with counts, and the next page's cursor."""
    brands = tuple(dict.fromkeys(brand or ()))
    if len(brands) > MAX_BRANDS:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"at most {MAX_BRANDS} brands, not {len(brands)}")
    if price_min is not None and price_max is not None and price_min > price_max:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            f"price_min {price_min} is above price_max {price_max}")
    query = SearchQuery(text=q, category=category, brands=brands, price_min=price_min, price_max=price_max,
                        in_stock=in_stock, sort=sort, size=size, cursor=cursor or None)
    try:
        decode_cursor(query)
    except InvalidQuery as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None
    try:
        result = await asyncio.to_thread(index.search, query)
    except InvalidQuery as exc:  # what the parameters passed here and OpenSearch still refused
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    except SearchError as exc:
        raise _unavailable(exc) from None
    return search_page(result)


@router.get("/suggest", response_model=Suggestions, responses=errors(422, 503))
async def suggest(
    index: SearchDep,
    prefix: Annotated[str, Query(min_length=1, max_length=100, pattern=r"\S",
                                 description="What the user has typed so far.")],
    size: Annotated[int, Query(ge=1, le=20, description="Suggestions at most.")] = 8,
) -> Suggestions:
    """Products to suggest as the user types: names (or brand and name) starting with the prefix, typos tolerated."""
    try:
        found = await asyncio.to_thread(index.suggest, prefix, size)
    except InvalidQuery as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    except SearchError as exc:
        raise _unavailable(exc) from None
    return suggestions_public(found)
