"""Every webhook source kpibot has, by route name; each module is imported only when used."""

from __future__ import annotations

import importlib
from functools import cache

from storage.sources.base import Source

SOURCE_PATHS: dict[str, str] = {
    "kpibot": "storage.sources.native:NativeSource",
    "stripe": "storage.sources.stripe:StripeSource",
    "delighted": "storage.sources.delighted:DelightedSource",
    "typeform": "storage.sources.typeform:TypeformSource",
    "zendesk": "storage.sources.zendesk:ZendeskSource",
    "segment": "storage.sources.segment:SegmentSource",
}


@cache
def get_source(name: str) -> Source | None:
    """Return the source served at /webhooks/<name>, or None if there is none."""
    path = SOURCE_PATHS.get(name)
    if path is None:
        return None
    module, _, attribute = path.partition(":")
    source: Source = getattr(importlib.import_module(module), attribute)()
    return source
