"""What a category is and the rules its fields follow (the repository writes them, the edge's request
types are built from the same checks): a slug of lower-case words, a name, a parent, and the path of
slugs from the root that products and search filters refer to."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

from shopflow.catalog.errors import InvalidInput
from shopflow.catalog.products import MAX_SLUG, SLUG_PATTERN, check_name

_SLUG_RE: Final = re.compile(SLUG_PATTERN)
SLUG_SCHEMA: Final = {"type": "string", "pattern": SLUG_PATTERN, "maxLength": MAX_SLUG}
MAX_CATEGORY_ID: Final = 2**53 - 1  # within the bigint identity, and exact as a JSON number (see MAX_PRICE_MINOR)


@dataclass(frozen=True, slots=True)
class Category:
    id: int
    parent_id: int | None
    slug: str
    name: str
    path: str


def check_slug(value: Any, name: str = "slug") -> str:
    if not isinstance(value, str) or not _SLUG_RE.fullmatch(value) or len(value) > MAX_SLUG:
        raise InvalidInput(f"{name} {value!r} must be lower-case letters and digits in dash-separated words",
                           field=name)
    return value


def validate_category(slug: Any, name: Any) -> tuple[str, str]:
    return check_slug(slug), check_name(name)
