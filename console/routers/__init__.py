"""The console's pages, one router per area: ``console/routers/<area>.py`` exposes ``router``.

An area is listed in ``AREAS`` (and its link in ``console.pages.NAV``); ``routers()`` gives the
routers of the areas whose module exists, so a page being written by someone else does not stop
the console from starting. A module that exists but fails to import fails the start, as it should.
"""

from __future__ import annotations

import importlib
import importlib.util

from fastapi import APIRouter

AREAS = ("overview", "groups", "tap", "connect", "dead_letters", "saga", "shop")


def routers() -> list[APIRouter]:
    found = []
    for area in AREAS:
        name = f"{__name__}.{area}"
        if importlib.util.find_spec(name) is not None:
            found.append(importlib.import_module(name).router)
    return found
