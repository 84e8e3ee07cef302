"""`verify_any`: a delivery signed with any of a route's secrets is taken."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from storage.sources.base import (
    Delivery,
    SignedButRefused,
    SourceEvent,
    WebhookRejected,
    verify_any,
)

DELIVERY = Delivery({}, b"{}", datetime(2026, 11, 23, 9, tzinfo=UTC))


class _Recording:
    """A source whose delivery is signed with `signer`, refused as stale when `stale`."""

    name = "recording"
    secret_setting = "RECORDING_SECRET"

    def __init__(self, signer: str, *, stale: bool = False) -> None:
        self.signer, self.stale, self.tried = signer, stale, []

    def verify(self, delivery: Delivery, secret: str) -> None:
        self.tried.append(secret)
        if secret != self.signer:
            raise WebhookRejected(401, f"not signed with {secret}")
        if self.stale:
            raise SignedButRefused(401, "stale")

    def events(self, payload: Any, delivery: Delivery) -> list[SourceEvent]:
        return []


def test_every_secret_is_tried_whichever_signed_the_delivery() -> None:
    """The check takes as long whichever secret matches: it tells nobody which one did."""
    for signer in ("a", "b", "c"):
        source = _Recording(signer)
        verify_any(source, DELIVERY, ("a", "b", "c"))
        assert source.tried == ["a", "b", "c"]


def test_unsigned_by_every_secret_gets_the_first_secrets_refusal() -> None:
    with pytest.raises(WebhookRejected) as refused:
        verify_any(_Recording("z"), DELIVERY, ("a", "b"))
    assert (refused.value.status, refused.value.reason) == (401, "not signed with a")


def test_a_signed_but_refused_delivery_gets_its_own_secrets_reason() -> None:
    with pytest.raises(SignedButRefused) as refused:
        verify_any(_Recording("b", stale=True), DELIVERY, ("a", "b"))
    assert refused.value.reason == "stale"


def test_no_secret_refuses() -> None:
    with pytest.raises(WebhookRejected) as refused:
        verify_any(_Recording("a"), DELIVERY, ())
    assert refused.value.status == 401
