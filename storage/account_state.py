"""An account as its `account.upserted` events leave it, whatever order they arrive in.

A full event (the default) describes the whole account: in event time order it replaces every
field, the attributes, the domains and the contacts. A merge (`merge: true`, what Segment's group
and identify calls send) sets only the fields it gives, and adds its attributes, domains and
contacts (a contact by its email: a merge giving a known email updates that contact): a trait the
sender did not send keeps its value, as Segment documents.

The same result whatever the arrival order needs each part's time kept (`AccountState.versions`,
the account row's `versions` column): a field, an attribute, a domain or a contact keeps the time
of the event that set it, and the attributes, the domains and the contacts the time of the last
full event, which removed whatever older events had set. An event changes a part only if it is not
older than that part's time (on a tie, the later arrival wins, as for every other row). Contacts
stored before their own times were kept date from the last full event, which set them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from storage.schemas import AccountUpserted, ContactData

FIELDS = ("name", "owner_email", "segment", "plan", "currency")
ATTRIBUTES, DOMAINS, CONTACTS = "attributes", "domains", "contacts"
LATEST = "latest"  # in a row's `versions`: the latest event applied (never a part's name)


@dataclass
class AccountState:
    """One account's stored fields, attributes, domains and the times that decide them."""

    account_id: str
    fields: dict[str, Any] = field(default_factory=dict)
    attributes: dict[str, Any] = field(default_factory=dict)
    domains: set[str] = field(default_factory=set)
    # "name", …, "attributes" / "domains" / "contacts" (the last full event),
    # "attributes.<key>", "domains.<domain>": the time of the event that set each
    versions: dict[str, datetime] = field(default_factory=dict)
    # The account's contacts by email, as far as this batch knows them: all of them once
    # `load_contacts` ran (the applier loads them where a full event replaces them), else only
    # those its merges set (a merge needs no other: each contact's time is in `versions`).
    contacts: dict[str, ContactData] | None = None
    _stored_contacts: dict[str, ContactData] | None = None  # as loaded (None: not loaded)
    updated_at: datetime | None = None  # the latest event applied
    claimed: set[str] = field(default_factory=set)  # domains an event of this batch set

    @classmethod
    def stored(cls, row: Mapping[str, Any]) -> AccountState:
        """Read an `account` row back (columns by name, `versions` as ISO texts)."""
        versions = {
            key: datetime.fromisoformat(at) for key, at in row["versions"].items() if key != LATEST
        }
        state = cls(
            row["account_id"],
            {name: row[name] for name in FIELDS},
            dict(row["attributes"]),
            set(row["domains"]),
            versions,
            updated_at=row["updated_at"],
        )
        if not row["versions"]:
            # Written before the times were kept: everything dates from its latest event.
            at = row["updated_at"]
            keys = [*FIELDS, ATTRIBUTES, DOMAINS, CONTACTS]
            keys += [f"{ATTRIBUTES}.{key}" for key in state.attributes]
            keys += [f"{DOMAINS}.{domain}" for domain in state.domains]
            state.versions = dict.fromkeys(keys, at)
        return state

    def load_contacts(self, stored: list[ContactData]) -> None:
        """Hold the account's stored contacts (before applying a full event, which replaces
        them)."""
        self.contacts = {contact.email: contact for contact in stored}
        self._stored_contacts = dict(self.contacts)
        since = self.versions.get(CONTACTS, self.updated_at)
        for email in self.contacts:  # stored before each contact's time was kept
            if since is not None:
                self.versions.setdefault(f"{CONTACTS}.{email}", since)

    def _newer(self, key: str, at: datetime) -> bool:
        known = self.versions.get(key)
        return known is None or at >= known

    def apply(self, data: AccountUpserted, at: datetime) -> None:
        """Apply one event of time `at` (in any order: see the module's docstring)."""
        self.updated_at = at if self.updated_at is None else max(self.updated_at, at)
        full = not data.merge
        given = data.model_fields_set
        for name in FIELDS:
            if (full or name in given) and self._newer(name, at):
                self.fields[name] = getattr(data, name)
                self.versions[name] = at
        if full or ATTRIBUTES in given:
            self._apply_set(ATTRIBUTES, self.attributes, data.attributes, at, full=full)
        if full or DOMAINS in given:
            domains = dict.fromkeys(data.domains, True)
            present = dict.fromkeys(self.domains, True)
            self.claimed.update(self._apply_set(DOMAINS, present, domains, at, full=full))
            self.domains = set(present)
            self.claimed &= self.domains
        if full or data.contacts:
            if full and self._stored_contacts is None:
                raise ValueError(f"the contacts of {self.account_id} were not loaded")
            if self.contacts is None:
                self.contacts = {}
            given_contacts = {contact.email: contact for contact in data.contacts}
            self._apply_set(CONTACTS, self.contacts, given_contacts, at, full=full)

    def contact_changes(self) -> tuple[list[str], list[ContactData]]:
        """The emails of the stored contacts to delete, and the contacts to write (new or
        changed; every one a merge set, when they were not loaded)."""
        if self.contacts is None:
            return [], []
        stored = self._stored_contacts or {}
        removed = sorted(stored.keys() - self.contacts.keys())
        return removed, [c for email, c in self.contacts.items() if stored.get(email) != c]

    def _apply_set(
        self, part: str, held: dict[str, Any], given: Mapping[str, Any], at: datetime, *, full: bool
    ) -> list[str]:
        """Apply keyed values: a full event first removes the keys set before it (or at the same
        time: the later arrival wins a tie, as everywhere). Returns the keys it set."""
        if full and self._newer(part, at):
            self.versions[part] = at
            for key in [k for k in held if self.versions[f"{part}.{k}"] <= at]:
                del held[key]
                del self.versions[f"{part}.{key}"]
        reset = self.versions.get(part)
        written = []
        for key, value in given.items():
            if (reset is None or at >= reset) and self._newer(f"{part}.{key}", at):
                held[key] = value
                self.versions[f"{part}.{key}"] = at
                written.append(key)
        return written

    def claims(self) -> dict[str, datetime]:
        """The domains an event of this batch claimed for this account, with its time (a domain
        the account already had stays with whichever account holds it)."""
        return {domain: self.versions[f"{DOMAINS}.{domain}"] for domain in self.claimed}

    def row(self) -> dict[str, Any]:
        """The `account` row of this state."""
        return {
            "account_id": self.account_id,
            **{name: self.fields.get(name) for name in FIELDS},
            "name": self.fields.get("name") or self.account_id,
            "domains": sorted(self.domains),
            "attributes": self.attributes,
            # with the latest event's time, so that no row written since reads as written before
            "versions": {
                LATEST: self.updated_at.isoformat() if self.updated_at else None,
                **{key: at.isoformat() for key, at in sorted(self.versions.items())},
            },
            "updated_at": self.updated_at,
        }
