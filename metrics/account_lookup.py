"""Which account a name designates: `/kpi account <name>`.

`find_accounts` tries an exact account id, else the names equal to the text regardless of case,
else those containing it (prefixes, then shorter names first), with bound parameters. SQLite's
`lower()` folds ASCII only, so when SQL finds nothing the names are read once (two columns) and
compared folded (case and accents) in Python; the closest become `UnknownAccount`'s suggestions.
"""

from __future__ import annotations

import difflib
import unicodedata
from collections.abc import Collection
from typing import Any

from sqlalchemy import Select, case, func, select
from sqlalchemy.orm import Session
from sqlmodel import col

from metrics.query import BadQuery, QueryError
from storage.tables import Account

MAX_FUZZY = 255  # longer texts get no suggestions: no account name is that long
MAX_CANDIDATES = 300
_SHOWN = 40


class UnknownAccount(QueryError):
    """No account has this id or name; `suggestions` are the closest account names."""

    def __init__(
        self, name: str, message: str, *, suggestions: tuple[str, ...] = (), example: str
    ) -> None:
        super().__init__(message, suggestions=suggestions, example=example)
        self.name = name


def find_accounts(session: Session, name: str, *, limit: int = 5) -> list[Account]:
    """Return the accounts `name` designates, best first; raise UnknownAccount if none."""
    name = name.replace("\x00", "")  # no name or id holds one, and PostgreSQL refuses it in text
    text = " ".join(name.split())
    if not text:
        raise BadQuery("Which account? Give its name.", example="/kpi account Acme Corp")
    by_id = session.get(Account, name.strip())
    if by_id is not None:
        return [by_id]
    lowered = text.lower()
    folded = func.lower(col(Account.name))
    rank = case((folded == lowered, 0), (folded.startswith(lowered, autoescape=True), 1), else_=2)
    query = (
        select(Account, rank)
        .where(folded.contains(lowered, autoescape=True))
        .order_by(rank, func.length(col(Account.name)), col(Account.name), col(Account.account_id))
        .limit(max(1, limit))
    )
    found = [(account, int(r)) for account, r in session.execute(query)]
    if not found:
        ids = _folded_matches(session, text, limit)
        accounts = {a.account_id: a for a in session.scalars(_where_id(ids))}
        found = [(accounts[i], 1) for i in ids]
    exact = [account for account, r in found if r == 0]
    return exact or [account for account, _ in found]


def _where_id(ids: Collection[str]) -> Select[Any]:
    return select(Account).where(col(Account.account_id).in_(ids))


def _fold(text: str) -> str:
    """Case- and accent-insensitive form of a name: 'Société  Générale' → 'societe generale'."""
    folded = " ".join(text.casefold().split())
    if folded.isascii():
        return folded
    decomposed = unicodedata.normalize("NFKD", folded)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _folded_names(session: Session) -> list[tuple[str, str, str]]:
    """Every account's (id, name, folded name): two columns, no row objects."""
    rows = session.execute(select(col(Account.account_id), col(Account.name)))
    return [(account_id, name, _fold(name)) for account_id, name in rows]


def _folded_matches(session: Session, text: str, limit: int) -> list[str]:
    """Ids of the accounts whose folded name equals, else contains, the folded text."""
    wanted, names = _fold(text), _folded_names(session)
    found = sorted(
        (folded != wanted, not folded.startswith(wanted), len(name), name, account_id)
        for account_id, name, folded in names
        if wanted in folded
    )
    if not found:
        raise _unknown(text, names)
    if not found[0][0]:  # exact matches only
        found = [row for row in found if not row[0]]
    return [row[-1] for row in found[: max(1, limit)]]


def _unknown(text: str, names: list[tuple[str, str, str]]) -> UnknownAccount:
    shown = f"'{text}'" if len(text) <= _SHOWN else f"'{text[:_SHOWN]}…'"
    suggestions = _closest_names(_fold(text), names) if len(text) <= MAX_FUZZY else ()
    if suggestions:
        names_shown = " or ".join(f"`{_typable(s)}`" for s in suggestions)
        message = f"I don't know the account {shown}. Did you mean {names_shown}?"
        example = f"/kpi account {_typable(suggestions[0])}"
    else:
        message = f"I don't know the account {shown}; give its name or its id."
        example = "/kpi account Acme Corp"
    return UnknownAccount(text, message, suggestions=suggestions, example=example)


def _typable(name: str) -> str:
    return " ".join(name.replace("`", "'").split())


def _closest_names(wanted: str, names: list[tuple[str, str, str]], n: int = 3) -> tuple[str, ...]:
    """The account names closest to `wanted` (folded), best first, by difflib.

    difflib over 10,000 names takes a few hundred milliseconds, so it only compares the
    MAX_CANDIDATES names sharing the most three-letter word starts with the text.
    """
    by_fold: dict[str, str] = {}
    for _, name, folded in sorted(names, key=lambda row: row[1]):
        by_fold.setdefault(folded, name)
    keys = {word[:3] for word in wanted.split()}
    shared = ((sum(key in folded for key in keys), folded) for folded in by_fold)
    candidates = sorted((-count, folded) for count, folded in shared if count)
    close = difflib.get_close_matches(
        wanted, [folded for _, folded in candidates[:MAX_CANDIDATES]], n=n, cutoff=0.6
    )
    return tuple(by_fold[folded] for folded in close)


def unknown_account(session: Session, text: str) -> UnknownAccount:
    """Return the error for an account id or name that designates nothing, with suggestions."""
    return _unknown(text, _folded_names(session))
