"""Slack users as kpibot needs them: a user's email (access lists, App Home) and back, cached.

Slack's `users.info` and `users.lookupByEmail` are rate-limited (tier 4 / tier 3), and a user's
email rarely changes: answers are kept for `ttl` seconds, misses too (an unknown email stays
unknown for a while instead of costing a call per message).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

log = logging.getLogger("kpibot.slack")
DEFAULT_TTL_SECONDS = 3600.0
MAX_ENTRIES = 10_000


class UserDirectory:
    """Looks users up through the Web API and remembers the answers for `ttl` seconds."""

    def __init__(
        self,
        client: WebClient,
        *,
        ttl: float = DEFAULT_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._emails: dict[str, tuple[float, str | None]] = {}
        self._ids: dict[str, tuple[float, str | None]] = {}

    def email_of(self, user_id: str) -> str | None:
        """Return the user's email (lower case), or None when Slack has none for them."""
        return self._cached(self._emails, user_id, self._fetch_email)

    def user_id_of(self, email: str) -> str | None:
        """Return the id of the workspace member with this email, or None (users_not_found)."""
        return self._cached(self._ids, email.lower(), self._fetch_id)

    def _cached(
        self,
        cache: dict[str, tuple[float, str | None]],
        key: str,
        fetch: Callable[[str], str | None],
    ) -> str | None:
        now = self._clock()
        with self._lock:
            hit = cache.get(key)
            if hit is not None and now - hit[0] < self._ttl:
                return hit[1]
        value = fetch(key)
        with self._lock:
            if len(cache) >= MAX_ENTRIES:
                cache.clear()
            cache[key] = (now, value)
        return value

    def _fetch_email(self, user_id: str) -> str | None:
        try:
            response = self._client.users_info(user=user_id)
        except SlackApiError as error:
            if error.response.get("error") == "user_not_found":
                return None
            raise
        email = (response.get("user") or {}).get("profile", {}).get("email")
        return str(email).lower() if email else None

    def _fetch_id(self, email: str) -> str | None:
        try:
            response = self._client.users_lookupByEmail(email=email)
        except SlackApiError as error:
            if error.response.get("error") == "users_not_found":
                return None
            raise
        user_id = (response.get("user") or {}).get("id")
        return str(user_id) if user_id else None
