"""Backfill from CSV files through the ingestion service, with exactly the rules of the webhooks.

Rows become native events whose ids derive from each row's natural key, so importing a file twice
changes nothing. A row that cannot become an event is logged as rejected with its line number.
A date without a time means the start of that day in the reporting time zone; a date-time without
an offset is a wall-clock time there. Values stay text: the event schemas parse and validate them.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from itertools import chain
from os import PathLike
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session, sessionmaker
from sqlmodel import col

from storage.apply import IngestConfig
from storage.db import dumps, session_scope
from storage.ingest import (
    BATCH_SIZE,
    IngestReport,
    Malformed,
    Rejection,
    batched,
    ingest_in_batches,
)
from storage.tables import EventLog, table_of

IMPORT_SOURCE = "import"
IMPORT_KINDS = ("accounts", "subscriptions", "invoices", "responses", "usage")
USAGE_WINDOW = 50_000  # usage rows grouped together; a day split across windows still merges
MAX_EVENT_ID = 255
_INTEGER = re.compile(r"[+-]?[0-9]{1,18}")
_LIST_SEPARATORS = re.compile(r"[;,\s]+")
_ACCOUNT_FIELDS = ("name", "owner_email", "segment", "plan", "currency", "updated_at")


@dataclass(frozen=True)
class ImportKind:
    """One CSV kind: its columns (name → one-line meaning) and the native event its rows become."""

    event_type: str
    noun: str  # names its event ids: import:<noun>:…
    required: dict[str, str]
    optional: dict[str, str]
    time_column: str
    integers: tuple[str, ...] = ()
    keyed_by_time: bool = False  # one event per id and time (a history), not per id

    @property
    def columns(self) -> tuple[str, ...]:
        """Return every column this kind reads, required ones first."""
        return (*self.required, *self.optional)

    def describe(self) -> str:
        """Return the column list as shown in errors: required ones marked with *."""
        return ", ".join([*(f"{c}*" for c in self.required), *self.optional])


COLUMNS: dict[str, ImportKind] = {
    "accounts": ImportKind(
        "account.upserted",
        "account",
        {"account_id": "your stable id of the customer account"},
        {
            "name": "company name (default: the account_id)",
            "owner_email": "email of the owning CSM (receives detractor alerts)",
            "segment": "segment for breakdowns, e.g. SMB, Mid-market, Enterprise",
            "plan": "plan name for breakdowns",
            "currency": "ISO 4217 billing currency, e.g. EUR",
            "domains": "the company's email domains, separated by ; (attributes survey answers)",
            "contact_email": "one contact per row: the rows of an account merge their contacts",
            "contact_name": "that contact's name",
            "contact_phone": "that contact's phone number",
            "updated_at": "when this description became true (default: the time of the import)",
        },
        time_column="updated_at",
    ),
    "subscriptions": ImportKind(
        "subscription.updated",
        "subscription",
        {
            "account_id": "the account the subscription belongs to",
            "subscription_id": "your stable id of the subscription",
            "status": "active, trialing, past_due, paused or canceled",
            "amount": "price per unit and interval before discounts, e.g. 49.90",
            "currency": "ISO 4217 code of the amount",
            "effective_at": "when this state began: one row per change gives the history",
        },
        {
            "interval": "day, week, month (default), quarter or year",
            "interval_count": "billed every N intervals (default 1)",
            "quantity": "number of units, e.g. seats (default 1)",
            "discount_percent": "recurring discount in percent, 0 to 100",
            "discount_amount": "recurring discount per interval, in the currency",
        },
        time_column="effective_at",
        integers=("interval_count", "quantity"),
        keyed_by_time=True,
    ),
    "invoices": ImportKind(
        "invoice.paid",
        "invoice",
        {
            "account_id": "the account that paid",
            "invoice_id": "your stable id of the invoice",
            "amount": "amount paid, e.g. 1200.00 (to the cent at most)",
            "currency": "ISO 4217 code of the amount",
            "paid_at": "when it was paid",
        },
        {},
        time_column="paid_at",
    ),
    "responses": ImportKind(
        "survey.responded",
        "response",
        {
            "response_id": "the survey tool's id of the answer",
            "kind": "nps or csat",
            "score": "the answer, a whole number on the scale",
            "responded_at": "when the customer answered",
        },
        {
            "account_id": "the account that answered (else found from respondent_email)",
            "respondent_email": "who answered: matched to a contact, else to an account's domain",
            "respondent_name": "their name",
            "scale_min": "lowest score of the scale (default 0 for NPS, 1 for CSAT)",
            "scale_max": "highest score of the scale (default 10 for NPS, 5 for CSAT)",
            "comment": "the verbatim comment",
            "source": "the survey tool, e.g. typeform",
        },
        time_column="responded_at",
        integers=("score", "scale_min", "scale_max"),
    ),
    "usage": ImportKind(
        "usage.recorded",
        "usage",
        {
            "account_id": "the account of the user",
            "day": "a day the user was active (a date)",
            "user_id": "one active user per row: the rows of a day add up",
        },
        {},
        time_column="day",
    ),
}


class _BadRow(ValueError):
    """A row that cannot become an event; the message says why (without its line number)."""


@dataclass(frozen=True)
class _Context:
    kind: ImportKind
    source_name: str
    zone: ZoneInfo
    now: datetime


Located = tuple[tuple[int, ...], Any]  # the CSV lines an item came from, and the item


def import_kind(kind: str) -> ImportKind:
    """Return the columns of `kind`, or raise ValueError listing the kinds."""
    if kind not in COLUMNS:
        raise ValueError(f"unknown import kind {kind!r}: use one of {', '.join(IMPORT_KINDS)}")
    return COLUMNS[kind]


def check_header(kind: str, header: Iterable[str]) -> None:
    """Raise ValueError unless `header` has every required column of `kind`, each of its
    columns once (columns kpibot does not read may repeat: they are ignored)."""
    spec = import_kind(kind)
    names = [_column(name) for name in header]
    doubled = sorted({name for name in names if names.count(name) > 1 and name in spec.columns})
    if doubled:
        raise ValueError(f"column(s) given twice: {', '.join(doubled)}")
    missing = [column for column in spec.required if column not in names]
    if missing:
        raise ValueError(
            f"{kind} CSV lacks required column(s) {', '.join(missing)}; "
            f"expected columns: {spec.describe()} (* = required)"
        )


def csv_events(
    kind: str,
    rows: Iterable[dict[str, str]],
    *,
    source_name: str,
    timezone: str = "UTC",
    now: datetime | None = None,
) -> Iterator[Any]:
    """Yield the native events (dicts) of CSV rows, or `Malformed` items for unusable rows.

    Line numbers are the reader's when `rows` is a `csv.DictReader`, else counted from 2.
    """
    for _lines, item in _located(kind, rows, source_name=source_name, timezone=timezone, now=now):
        yield item


@dataclass
class ImportReport(IngestReport):
    """What an import did; `kept` names the rows that were duplicates of a stored row by their
    key but not by their values: the stored one stays (see docs/import.md, Importing again)."""

    kept: list[Rejection] = field(default_factory=list)


def import_csv(
    factory: sessionmaker[Session],
    kind: str,
    path_or_file: str | PathLike[str] | TextIO,
    *,
    config: IngestConfig,
    progress: Callable[[int], None] | None = None,
    batch_size: int = BATCH_SIZE,
) -> ImportReport:
    """Import a CSV file of `kind` through the ingestion service; return what happened.

    The header is checked before any row is stored; `progress(n)` counts rows as they are stored,
    and every rejection's reason names the CSV line(s) it came from.
    """
    import_kind(kind)
    report = ImportReport()
    with _open(path_or_file) as (lines, name):
        reader = _reader(lines, name)
        check_header(kind, reader.fieldnames or ())
        items = _located(kind, reader, source_name=name, timezone=config.timezone)
        offset = 0
        try:
            for batch in batched(items, batch_size):
                part = ingest_in_batches(
                    factory,
                    [item for _lines, item in batch],
                    config=config,
                    source=IMPORT_SOURCE,
                    batch_size=len(batch),
                )
                part.rejections = [_with_lines(r, batch[r.index]) for r in part.rejections]
                _name_the_file(factory, name, part.rejections)
                report.kept.extend(_kept(factory, batch, part.outcomes, offset))
                report.add(part, offset=offset)
                offset += len(batch)
                if progress:
                    progress(sum(len(lines) for lines, _item in batch))
        except UnicodeDecodeError as error:
            raise ValueError(
                f"{name} is not UTF-8 text ({error.reason}) after line {reader.line_num}: "
                "save it as 'CSV UTF-8'"
            ) from None
        except csv.Error as error:
            raise ValueError(f"{name} line {reader.line_num}: {error}") from None
    return report


def _name_the_file(factory: sessionmaker[Session], name: str, rejections: list[Rejection]) -> None:
    """Keep each rejected row's reason in the event log with its file and line(s), as the import
    prints it: `kpibot webhooks list` then says where the row to fix is."""
    located = [(r.event_id, f"{name} {r.reason}") for r in rejections if r.event_id]
    if located:
        with session_scope(factory) as session:
            locate_rejections(session, located)


def locate_rejections(session: Session, reasons: list[tuple[str, str]]) -> None:
    """Set the reason of these rejected imported events (event id, reason naming the file and
    line) in the event log."""
    table = table_of(EventLog)
    statement = (
        update(table)
        .where(
            table.c.source == IMPORT_SOURCE,
            table.c.event_id == bindparam("logged"),
            table.c.status == "rejected",
        )
        .values(reason=bindparam("why"))
    )
    session.connection().execute(
        statement, [{"logged": event_id, "why": why} for event_id, why in reasons]
    )


def location(body: str | dict[str, Any]) -> str | None:
    """Where an imported event's row was, as its stored body (text, or decoded) says
    ("data.csv line 5"), or None."""
    try:
        where = (json.loads(body) if isinstance(body, str) else body).get("import")
    except (ValueError, AttributeError):
        return None
    if not isinstance(where, dict) or "file" not in where or "line" not in where:
        return None
    return f"{where['file']} line {where['line']}"


def _kept(
    factory: sessionmaker[Session], batch: list[Located], outcomes: list[str], offset: int
) -> list[Rejection]:
    """The duplicates of `batch` whose stored event says otherwise (same key, other values):
    an invoice, a subscription state or a response is a fact, and is not replaced by a row."""
    duplicates = {
        item["id"]: (index, lines, item)
        for index, ((lines, item), outcome) in enumerate(zip(batch, outcomes, strict=True))
        if outcome == "duplicate" and isinstance(item, dict)
    }
    if not duplicates:
        return []
    kept = []
    with session_scope(factory) as session:
        for part in batched(sorted(duplicates), 500):
            stored = session.execute(
                select(col(EventLog.event_id), col(EventLog.body)).where(
                    col(EventLog.source) == IMPORT_SOURCE, col(EventLog.event_id).in_(part)
                )
            )
            for event_id, body in stored:
                index, lines, item = duplicates[event_id]
                before = json.loads(body)
                if (before.get("data"), before.get("occurred_at")) == (
                    item["data"],
                    item["occurred_at"],
                ):
                    continue
                where = location(before)
                reason = f"{_where(lines)}: already stored with other values" + (
                    f" (from {where})" if where else ""
                )
                kept.append(Rejection(index + offset, event_id, reason))
    return sorted(kept, key=lambda r: r.index)


def _with_lines(rejection: Rejection, located: Located) -> Rejection:
    lines, item = located
    if isinstance(item, Malformed):  # its reason already names its lines
        return rejection
    return Rejection(rejection.index, rejection.event_id, f"{_where(lines)}: {rejection.reason}")


def _where(lines: tuple[int, ...]) -> str:
    if len(lines) == 1:
        return f"line {lines[0]}"
    shown = ", ".join(str(n) for n in lines[:5])
    return f"lines {shown}" + (f" and {len(lines) - 5} more" if len(lines) > 5 else "")


@contextmanager
def _open(path_or_file: str | PathLike[str] | TextIO) -> Iterator[tuple[Iterator[str], str]]:
    """Yield the lines of a file and its name, once the whole file was found readable (UTF-8,
    quotes that close): a file that is not is refused before any of it is stored."""
    if not isinstance(path_or_file, str | PathLike):
        lines = list(path_or_file)  # read twice: checked whole, then imported
        name = getattr(path_or_file, "name", "<stream>")
        _check_records(iter(lines), name)
        yield iter(lines), name
        return
    path = Path(path_or_file)
    _check_utf8(path)
    with path.open(encoding="utf-8-sig", newline="") as handle:
        _check_records(handle, path.name)
    with path.open(encoding="utf-8-sig", newline="") as handle:
        yield iter(handle), path.name


def _check_utf8(path: Path) -> None:
    """Refuse a file that is not UTF-8 before any of it is stored (Excel's plain CSV is not)."""
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as error:
                raise ValueError(
                    f"{path.name} line {number} is not UTF-8 ({error.reason}): "
                    "save the file as 'CSV UTF-8'"
                ) from None


def _check_records(lines: Iterator[str], name: str) -> None:
    """Raise ValueError, naming the line, unless the CSV reader can read every record to the end
    of the file: a quote that is never closed would take every line after it into one value."""
    records = _reader(lines, name).reader
    start = records.line_num + 1  # the line the record being read starts on
    try:
        for _record in records:
            start = records.line_num + 1
    except csv.Error as error:
        raise ValueError(_unreadable(name, start, records.line_num, error)) from None


def _unreadable(name: str, start: int, line: int, error: csv.Error) -> str:
    reason = str(error)
    doubled = 'a quote inside a value is written twice: ""'
    if reason == "unexpected end of data":
        return (
            f"{name} line {start}: a quote opened in this row is never closed, so every line "
            f"after it would be read as one value: close it ({doubled})"
        )
    if reason.startswith("field larger than field limit"):
        return (
            f"{name} line {start}: a value in this row goes on for more than "
            f"{csv.field_size_limit():,} characters: is a quote opened there never closed? "
            f"({doubled})"
        )
    return f"{name} line {line}: {reason}: a quoted value ends at its closing quote ({doubled})"


def _reader(lines: Iterator[str], name: str) -> csv.DictReader[str]:
    """Return a strict reader (an unclosed quote is an error, not the rest of the file) whose
    delimiter is whichever of , ; or tab the header uses most. The header is the first line that
    is not blank; the reader has read the blank lines before it, so its line numbers count them."""
    blank: list[str] = []
    header = ""
    for line in lines:
        if line.lstrip("\ufeff").strip():
            header = line.lstrip("\ufeff")
            break
        blank.append(line)
    if not header:
        raise ValueError(f"{name} is empty: it needs a header row naming its columns")
    delimiter = max(",;\t", key=header.count)
    reader = csv.DictReader(chain(blank, [header], lines), delimiter=delimiter, strict=True)
    for _line in blank:  # one record each: a blank line holds no quote
        next(reader.reader)
    return reader


def _column(name: str | None) -> str:
    return (name or "").strip().lstrip("\ufeff").strip().lower()


def _located(
    kind: str,
    rows: Iterable[dict[str, str]],
    *,
    source_name: str,
    timezone: str,
    now: datetime | None = None,
) -> Iterator[Located]:
    context = _Context(import_kind(kind), source_name, ZoneInfo(timezone), now or datetime.now(UTC))
    numbered: Iterable[tuple[int, dict[str, str]]] = (
        ((rows.line_num - _line_breaks(row), row) for row in rows)
        if isinstance(rows, csv.DictReader)
        else enumerate(rows, start=2)
    )
    # A spreadsheet's blank rows (";;;;" in an Excel export) are no rows at all.
    numbered = ((line, row) for line, row in numbered if not _blank(row))
    build = {"accounts": _account_events, "usage": _usage_events}.get(kind, _keyed_events)
    return build(iter(numbered), context)


def _line_breaks(row: dict[Any, Any]) -> int:
    """How many line breaks the row's quoted values hold: the reader's `line_num` is the row's
    last line, and a row is named by its first."""
    return sum(cell.count("\n") or cell.count("\r") for cell in _all_cells(row))


def _blank(row: dict[Any, Any]) -> bool:
    """Whether every cell of the row, extra ones included, is empty."""
    return not any(cell.strip() for cell in _all_cells(row))


def _all_cells(row: dict[Any, Any]) -> Iterator[str]:
    """The row's cells as text, the extra ones past the header's columns included."""
    for value in row.values():
        for cell in value if isinstance(value, list) else [value]:
            yield cell or ""


def _cells(row: dict[Any, Any], spec: ImportKind) -> dict[str, str]:
    """Return the row's non-empty cells by column, or raise `_BadRow`."""
    extra = [cell for cell in row.get(None) or () if cell.strip()]  # empty extras: a trailing ;
    if extra:
        raise _BadRow(
            f"{len(extra)} more cell(s) than the header has columns "
            "(quote values that contain the delimiter)"
        )
    cells = {_column(key): value.strip() for key, value in row.items() if key and value}
    cells = {key: value for key, value in cells.items() if value}
    missing = [column for column in spec.required if column not in cells]
    if missing:
        raise _BadRow(f"{', '.join(missing)}: required but empty")
    return cells


def _instant(column: str, text: str, zone: ZoneInfo) -> datetime:
    """Parse an ISO date (start of that day in `zone`) or date-time (naive: in `zone`) as UTC."""
    try:
        try:
            moment = datetime.combine(date.fromisoformat(text), time(), zone)
        except ValueError:
            moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=zone)
        return moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise _BadRow(
            f"{column}: {text!r} is not an ISO date (YYYY-MM-DD) or date-time "
            "(YYYY-MM-DDTHH:MM:SS, optionally with an offset such as +02:00 or Z)"
        ) from None


def _day(column: str, text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise _BadRow(f"{column}: {text!r} is not an ISO date (YYYY-MM-DD)") from None


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _digest(value: Any) -> str:
    """Return a short hash of `value` that ignores key order (a re-export may reorder columns)."""
    text = json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def _event_id(noun: str, *parts: str) -> str:
    """Return import:<noun>:<parts…>, or a digest of it when that is too long for an id."""
    text = ":".join(("import", noun, *parts))
    return text if len(text) <= MAX_EVENT_ID else f"import:{noun}:{_digest(text)}"


def _event(
    context: _Context, event_id: str, at: datetime, data: dict[str, Any], line: int
) -> dict[str, Any]:
    return {
        "id": event_id,
        "type": context.kind.event_type,
        "occurred_at": _iso(at),
        "data": data,
        "import": {"file": context.source_name, "line": line},  # ignored by the schema
    }


def _malformed(
    context: _Context,
    lines: tuple[int, ...],
    rows: dict[Any, Any],
    reason: str,
    event_id: str | None = None,
) -> Located:
    """A rejected item; without a natural id, one from the row's text, so re-imports replace it."""
    cells = {"(extra)" if key is None else key: value for key, value in rows.items()}
    raw = dumps({"file": context.source_name, "lines": list(lines), "rows": [cells]})
    event_id = event_id or _event_id(context.kind.noun, "row", _digest(cells))
    return lines, Malformed(raw, f"{_where(lines)}: {reason}", event_id)


def _keyed_events(
    rows: Iterator[tuple[int, dict[str, str]]], context: _Context
) -> Iterator[Located]:
    """Subscriptions, invoices and responses: one event per row, keyed by its id (and time)."""
    spec = context.kind
    key_column = f"{spec.noun}_id"
    seen: dict[str, tuple[int, str]] = {}  # event id → (first line, digest of its event)
    for line, row in rows:
        natural_id = _natural_id(row, context)
        try:
            cells = _cells(row, spec)
            at = _instant(spec.time_column, cells[spec.time_column], context.zone)
        except _BadRow as bad:
            if natural_id is not None:  # a fixed re-import replaces this rejection
                seen.setdefault(natural_id, (line, "rejected"))
            yield _malformed(context, (line,), row, str(bad), natural_id)
            continue
        data: dict[str, Any] = {
            column: _integer(value) if column in spec.integers else value
            for column, value in cells.items()
            if column in spec.columns and column != spec.time_column
        }
        parts = [cells[key_column], _iso(at)] if spec.keyed_by_time else [cells[key_column]]
        event_id = _event_id(spec.noun, *parts)
        digest = _digest([data, _iso(at)])
        first_line, first_digest = seen.setdefault(event_id, (line, digest))
        if first_digest != digest:
            reason = f"{' at '.join(parts)} is already on line {first_line} with other values"
            yield _malformed(context, (line,), row, f"{key_column} {reason}")
            continue
        yield (line,), _event(context, event_id, at, data, line)


def _natural_id(row: dict[Any, Any], context: _Context) -> str | None:
    """The event id of a keyed row from its key cells (and time, for a history), whatever else
    is wrong with it, so that its fixed re-import takes the place of its rejection; None when
    they cannot be read."""
    spec = context.kind
    cells = {
        _column(key): (value or "").strip() for key, value in row.items() if isinstance(key, str)
    }
    key = cells.get(f"{spec.noun}_id")
    if not key:
        return None
    if not spec.keyed_by_time:
        return _event_id(spec.noun, key)
    try:
        at = _instant(spec.time_column, cells.get(spec.time_column, ""), context.zone)
    except _BadRow:
        return None
    return _event_id(spec.noun, key, _iso(at))


def _integer(text: str) -> int | str:
    """Return whole numbers as int (the schemas want JSON numbers there); anything else as is."""
    return int(text) if _INTEGER.fullmatch(text) else text


def _account_events(
    rows: Iterator[tuple[int, dict[str, str]]], context: _Context
) -> Iterator[Located]:
    """One event per account with all its rows' contacts: a complete description (it replaces
    the account's fields, contacts and domains), or, from a file without every describing
    column, a merge of what its columns give (`_partial`)."""
    groups: dict[str, list[tuple[int, dict[str, str]]]] = {}
    header: set[str] = set()
    for line, row in rows:
        header.update(_column(key) for key in row if isinstance(key, str))
        try:
            cells = _cells(row, context.kind)
        except _BadRow as bad:
            yield _malformed(context, (line,), row, str(bad))
            continue
        groups.setdefault(cells["account_id"], []).append((line, cells))
    for account_id, group in groups.items():
        yield _account_event(account_id, group, context, _partial(header))


# What a file must have columns for to describe its accounts completely
_DESCRIBING = frozenset({"name", "owner_email", "segment", "plan", "currency", "domains"})


def _partial(header: set[str]) -> set[str] | None:
    """The account columns of a file that describes only some of its accounts' parts (a merge:
    the parts it has no column for stay as they are); None for a complete description."""
    if header >= _DESCRIBING and "contact_email" in header:
        return None
    return header


def _comparable(column: str, value: str) -> str:
    """A cell as two rows of one account are compared (an email's case does not matter)."""
    return value.lower() if column == "owner_email" else value


def _account_event(
    account_id: str,
    group: list[tuple[int, dict[str, str]]],
    context: _Context,
    partial: set[str] | None = None,
) -> Located:
    lines = tuple(line for line, _cells in group)
    fields: dict[str, tuple[int, str]] = {}
    values: dict[str, str] = {}  # of each field, the same whatever the order of the rows
    problems: list[str] = []
    contacts: dict[str, dict[str, str]] = {}
    domains: set[str] = set()
    for line, cells in group:
        for column in _ACCOUNT_FIELDS:
            if column in cells:
                first_line, first = fields.setdefault(column, (line, cells[column]))
                if _comparable(column, first) != _comparable(column, cells[column]):
                    problems.append(
                        f"line {line}: {column} {cells[column]!r} differs from "
                        f"{first!r} on line {first_line}"
                    )
                values[column] = min(values.get(column, first), cells[column])
        contact = {
            k: cells[f"contact_{k}"] for k in ("email", "name", "phone") if f"contact_{k}" in cells
        }
        if contact and "email" not in contact:
            problems.append(f"line {line}: contact_email is required for a contact")
        elif contact:
            contacts[contact["email"].lower()] = contact
        domains.update(d.lower() for d in _LIST_SEPARATORS.split(cells.get("domains", "")) if d)
    at = context.now
    if "updated_at" in fields:
        try:
            at = _instant("updated_at", fields["updated_at"][1], context.zone)
        except _BadRow as bad:
            problems.append(f"line {fields['updated_at'][0]}: {bad}")
    rows = [cells for _line, cells in group]
    if problems:
        event_id = _event_id("account", account_id, "rows", _digest(rows))
        raw = dumps({"file": context.source_name, "lines": list(lines), "rows": rows})
        return lines, Malformed(raw, "; ".join(problems), event_id)
    data: dict[str, Any] = {"account_id": account_id}
    if partial is not None:
        # Only the columns the file has: a field's empty cell clears it, and the domains and
        # contacts it gives are added to the account's.
        data["merge"] = True
        data.update({c: None for c in _ACCOUNT_FIELDS if c in partial and c != "updated_at"})
    data.update({c: v for c, v in values.items() if c != "updated_at"})
    # Sorted, so that the id is the same whatever the order of the rows (a re-export): a file
    # whose rows were in this order already keeps the id it had when its rows' order counted.
    if partial is None or "domains" in partial:
        data["domains"] = sorted(domains)
    if partial is None or "contact_email" in partial:
        data["contacts"] = [contacts[email] for email in sorted(contacts)]
    stated = _iso(at) if "updated_at" in fields else None  # the import time is not part of the id
    event_id = _event_id("account", account_id, _digest([data, stated]))
    return lines, _event(context, event_id, at, data, lines[0])


def _usage_events(
    rows: Iterator[tuple[int, dict[str, str]]], context: _Context
) -> Iterator[Located]:
    """One merging usage event per account and day (within each window of rows)."""
    for window in batched(rows, USAGE_WINDOW):
        days: dict[tuple[str, date], tuple[list[int], set[str]]] = {}
        for line, row in window:
            try:
                cells = _cells(row, context.kind)
                day = _day("day", cells["day"])
            except _BadRow as bad:
                yield _malformed(context, (line,), row, str(bad))
                continue
            lines, users = days.setdefault((cells["account_id"], day), ([], set()))
            lines.append(line)
            users.add(cells["user_id"])
        for (account_id, day), (lines, users) in days.items():
            user_ids = sorted(users)
            event_id = _event_id("usage", account_id, day.isoformat(), _digest(user_ids))
            data = {
                "account_id": account_id,
                "day": day.isoformat(),
                "user_ids": user_ids,
                "merge": True,
            }
            at = datetime.combine(day, time(), context.zone).astimezone(UTC)
            yield tuple(lines), _event(context, event_id, at, data, lines[0])
