"""CSV backfill: every kind lands where a webhook would put it, re-imports are no-ops, errors point
at their line."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from storage.apply import IngestConfig
from storage.csv_import import COLUMNS, IMPORT_KINDS, csv_events, import_csv
from storage.db import session_scope
from storage.ingest import Malformed
from storage.tables import (
    Account,
    AccountDomain,
    Contact,
    EventLog,
    Invoice,
    Subscription,
    SubscriptionVersion,
    SurveyResponse,
    UsageDay,
)
from tests.builders import ingest, make_account, movements

UTC_CONFIG = IngestConfig()
DOCS = Path(__file__).resolve().parents[2] / "docs" / "import.md"


def _csv(tmp_path: Path, text: str, name: str = "data.csv", *, bom: bool = False) -> Path:
    path = tmp_path / name
    path.write_text(("\ufeff" if bom else "") + text.lstrip("\n"), encoding="utf-8")
    return path


def _rows(factory, table, *order):
    with session_scope(factory) as session:
        return session.scalars(select(table).order_by(*order)).all()


def _count(factory, table) -> int:
    with session_scope(factory) as session:
        return session.scalar(select(func.count()).select_from(table)) or 0


ACCOUNTS = """
account_id,name,owner_email,segment,plan,currency,domains,contact_email,contact_name,contact_phone
acc-1,Acme,csm@us.io,SMB,pro,EUR,acme.com;acme.fr,ann@acme.com,Ann,+33 1 23
acc-2,Globex,,Enterprise,,USD,globex.com,,,
acc-1,,,,,,acme.de,bob@acme.com,Bob,
"""

SUBSCRIPTIONS = """
account_id,subscription_id,status,amount,currency,interval,quantity,effective_at
acc-1,sub-1,active,50.00,USD,month,1,2026-01-10
acc-1,sub-1,active,50.00,USD,month,3,2026-02-10T09:30:00Z
acc-1,sub-1,canceled,50.00,USD,month,3,2026-04-01
"""

INVOICES = """
account_id,invoice_id,amount,currency,paid_at
acc-1,inv-1,50.00,USD,2026-01-10
acc-1,inv-2,150,USD,2026-02-10T09:31:00+01:00
"""


def test_accounts_merge_the_contacts_and_domains_of_their_rows(session_factory, tmp_path):
    report = import_csv(session_factory, "accounts", _csv(tmp_path, ACCOUNTS), config=UTC_CONFIG)
    assert (report.applied, report.rejected) == (2, 0)
    acme, globex = _rows(session_factory, Account, Account.account_id)
    assert (acme.name, acme.owner_email, acme.segment, acme.plan, acme.currency) == (
        "Acme",
        "csm@us.io",
        "SMB",
        "pro",
        "EUR",
    )
    assert acme.domains == ["acme.com", "acme.de", "acme.fr"]
    assert (globex.name, globex.owner_email, globex.plan) == ("Globex", None, None)
    contacts = _rows(session_factory, Contact, Contact.email)
    assert [(c.account_id, c.email, c.name, c.phone) for c in contacts] == [
        ("acc-1", "ann@acme.com", "Ann", "+33 1 23"),
        ("acc-1", "bob@acme.com", "Bob", None),
    ]
    assert _count(session_factory, AccountDomain) == 4


def test_a_file_with_only_some_account_columns_changes_only_those(session_factory, tmp_path):
    """A file that lacks some of the columns describing an account (here: all but segment)
    updates what it has columns for, and leaves the rest as it is, rather than clear it."""
    import_csv(session_factory, "accounts", _csv(tmp_path, ACCOUNTS), config=UTC_CONFIG)
    segments = _csv(tmp_path, "account_id,segment\nacc-1,Mid-market\nacc-2,\n", "seg.csv")
    report = import_csv(session_factory, "accounts", segments, config=UTC_CONFIG)
    assert (report.applied, report.rejected) == (2, 0)
    acme, globex = _rows(session_factory, Account, Account.account_id)
    assert (acme.name, acme.owner_email, acme.segment, acme.plan) == (
        "Acme",
        "csm@us.io",
        "Mid-market",
        "pro",
    )
    assert acme.domains == ["acme.com", "acme.de", "acme.fr"]
    assert (globex.name, globex.segment) == ("Globex", None)  # an empty cell clears its field
    assert _count(session_factory, Contact) == 2
    # Contacts and domains a partial file gives are added: none is removed.
    added = "account_id,contact_email,contact_name\nacc-1,cy@acme.com,Cy\n"
    import_csv(session_factory, "accounts", _csv(tmp_path, added, "c.csv"), config=UTC_CONFIG)
    emails = [c.email for c in _rows(session_factory, Contact, Contact.email)]
    assert emails == ["ann@acme.com", "bob@acme.com", "cy@acme.com"]


def test_an_account_without_updated_at_is_described_as_of_the_import(session_factory, tmp_path):
    before = datetime.now(UTC)
    import_csv(session_factory, "accounts", _csv(tmp_path, ACCOUNTS), config=UTC_CONFIG)
    text = "account_id,name,updated_at\nacc-3,Initech,2025-06-01T08:00:00Z\n"
    import_csv(session_factory, "accounts", _csv(tmp_path, text, "b.csv"), config=UTC_CONFIG)
    stamps = {a.account_id: a.updated_at for a in _rows(session_factory, Account)}
    assert stamps["acc-1"] >= before
    assert stamps["acc-3"] == datetime(2025, 6, 1, 8, tzinfo=UTC)


def test_a_subscription_history_gives_its_mrr_movements(session_factory, tmp_path):
    path = _csv(tmp_path, SUBSCRIPTIONS)
    report = import_csv(session_factory, "subscriptions", path, config=UTC_CONFIG)
    assert (report.applied, report.rejected) == (3, 0)
    assert movements(session_factory) == [
        ("2026-01-10", "new", "50.00"),
        ("2026-02-10", "expansion", "100.00"),
        ("2026-04-01", "churn", "150.00"),
    ]
    versions = _rows(session_factory, SubscriptionVersion, SubscriptionVersion.effective_at)
    assert [v.effective_at for v in versions] == [
        datetime(2026, 1, 10, tzinfo=UTC),
        datetime(2026, 2, 10, 9, 30, tzinfo=UTC),
        datetime(2026, 4, 1, tzinfo=UTC),
    ]
    (current,) = _rows(session_factory, Subscription)
    assert (current.status, current.quantity, current.mrr) == ("canceled", 3, Decimal(0))


def test_invoices_land_with_amounts_and_local_days(session_factory, tmp_path):
    paris = IngestConfig(reporting_currency="USD", timezone="Europe/Paris")
    report = import_csv(session_factory, "invoices", _csv(tmp_path, INVOICES), config=paris)
    assert report.applied == 2
    first, second = _rows(session_factory, Invoice, Invoice.invoice_id)
    # a date alone is the start of that day in the reporting time zone
    assert first.paid_at == datetime(2026, 1, 9, 23, tzinfo=UTC)
    assert (first.day, first.amount, first.amount_reporting) == (
        date(2026, 1, 10),
        Decimal("50.00"),
        Decimal("50.00"),
    )
    assert (second.paid_at, second.amount) == (datetime(2026, 2, 10, 8, 31, tzinfo=UTC), 150)


def test_responses_are_attributed_like_webhook_answers(session_factory, tmp_path):
    import_csv(session_factory, "accounts", _csv(tmp_path, ACCOUNTS), config=UTC_CONFIG)
    text = """
response_id;kind;score;responded_at;account_id;respondent_email;comment;scale_min;scale_max
r-1;nps;3;2026-03-02;acc-2;;Too slow;;
r-2;nps;10;2026-03-03;;BOB@acme.com;;;
r-3;csat;4;2026-03-04;;zoe@acme.fr;Fine;1;5
r-4;nps;7;2026-03-05;;;;;
"""
    path = _csv(tmp_path, text, "responses.csv")
    report = import_csv(session_factory, "responses", path, config=UTC_CONFIG)
    assert (report.applied, report.rejected) == (4, 0)
    rows = _rows(session_factory, SurveyResponse, SurveyResponse.response_id)
    assert [(r.account_id, r.attribution, r.kind, r.score) for r in rows] == [
        ("acc-2", "account_id", "nps", 3),
        ("acc-1", "contact", "nps", 10),
        ("acc-1", "domain", "csat", 4),
        (None, "none", "nps", 7),
    ]
    assert (rows[0].comment, rows[0].scale_max, rows[2].scale_min) == ("Too slow", 10, 1)


def test_usage_rows_of_a_day_become_one_day_and_later_files_add_users(session_factory, tmp_path):
    text = "account_id,day,user_id\nacc-1,2026-03-02,u1\nacc-1,2026-03-02,u2\nacc-1,2026-03-02,u1\n"
    text += "acc-2,2026-03-02,u9\nacc-1,2026-03-03,u1\n"
    report = import_csv(session_factory, "usage", _csv(tmp_path, text), config=UTC_CONFIG)
    assert (report.total, report.applied) == (3, 3)  # one event per account and day
    days = _rows(session_factory, UsageDay, UsageDay.account_id, UsageDay.day)
    assert [(d.account_id, d.day.isoformat(), d.active_users, d.user_ids) for d in days] == [
        ("acc-1", "2026-03-02", 2, ["u1", "u2"]),
        ("acc-1", "2026-03-03", 1, ["u1"]),
        ("acc-2", "2026-03-02", 1, ["u9"]),
    ]
    more = _csv(tmp_path, "account_id,day,user_id\nacc-1,2026-03-02,u3\n", "more.csv")
    assert import_csv(session_factory, "usage", more, config=UTC_CONFIG).applied == 1
    with session_scope(session_factory) as session:
        day = session.get(UsageDay, ("acc-1", date(2026, 3, 2)))
        assert day is not None and (day.active_users, day.user_ids) == (3, ["u1", "u2", "u3"])


def _snapshot(factory):
    """Every row of the tables imports write, without surrogate ids (a rebuild renumbers them)."""
    tables = (Account, Contact, Subscription, SubscriptionVersion, Invoice, UsageDay)
    with session_scope(factory) as session:
        return {
            table.__name__: sorted(
                repr(sorted(row.model_dump(exclude={"id"}).items()))
                for row in session.scalars(select(table))
            )
            for table in tables
        }


@pytest.mark.parametrize(
    ("kind", "text"),
    [
        ("accounts", ACCOUNTS),
        ("subscriptions", SUBSCRIPTIONS),
        ("invoices", INVOICES),
        ("usage", "account_id,day,user_id\nacc-1,2026-03-02,u1\nacc-1,2026-03-02,u2\n"),
    ],
)
def test_importing_the_same_file_again_changes_nothing(session_factory, tmp_path, kind, text):
    path = _csv(tmp_path, text)
    first = import_csv(session_factory, kind, path, config=UTC_CONFIG)
    before, log = _snapshot(session_factory), _count(session_factory, EventLog)
    again = import_csv(session_factory, kind, path, config=UTC_CONFIG)
    assert (again.applied, again.rejected, again.duplicate) == (0, 0, first.total)
    assert _snapshot(session_factory) == before
    assert _count(session_factory, EventLog) == log
    header, *rows = text.strip().splitlines()  # a re-export with its columns in another order
    reordered = [",".join(reversed(line.split(","))) for line in (header, *rows)]
    path.write_text("\n".join(reordered) + "\n")
    assert import_csv(session_factory, kind, path, config=UTC_CONFIG).duplicate == first.total


def test_a_row_with_other_values_than_the_stored_one_is_named_as_not_replaced(
    session_factory, tmp_path
):
    """An invoice is a fact: a corrected row imported again does not replace it, and the report
    says so instead of counting it as a plain duplicate."""
    import_csv(
        session_factory, "invoices", _csv(tmp_path, INVOICES, "first.csv"), config=UTC_CONFIG
    )
    corrected = INVOICES.replace("acc-1,inv-1,50.00", "acc-1,inv-1,55.00")
    again = import_csv(
        session_factory, "invoices", _csv(tmp_path, corrected, "second.csv"), config=UTC_CONFIG
    )
    assert (again.applied, again.duplicate) == (0, 2)
    [kept] = again.kept
    assert (kept.index, kept.event_id) == (0, "import:invoice:inv-1")
    assert kept.reason == "line 2: already stored with other values (from first.csv line 2)"
    amounts = [i.amount for i in _rows(session_factory, Invoice, Invoice.invoice_id)]
    assert amounts == [Decimal("50.00"), Decimal("150.00")]  # the stored one stays
    # The same rows again, from another file: plain duplicates.
    same = import_csv(
        session_factory, "invoices", _csv(tmp_path, INVOICES, "copy.csv"), config=UTC_CONFIG
    )
    assert (same.duplicate, same.kept) == (2, [])


def test_a_bad_row_is_rejected_with_its_line_and_the_others_applied(session_factory, tmp_path):
    text = INVOICES + 'acc-1,inv-3,12.00,USD,2026-13-01\nacc-1,inv-4,"1,234.50",USD,2026-03-01\n'
    text += "acc-1,,5.00,USD,2026-03-01\n"
    path = _csv(tmp_path, text)
    report = import_csv(session_factory, "invoices", path, config=UTC_CONFIG)
    assert (report.applied, report.rejected) == (2, 3)
    reasons = [r.reason for r in report.rejections]
    assert reasons[0].startswith("line 4: paid_at: '2026-13-01' is not an ISO date")
    assert reasons[1] == (  # the schema's own validation, saying what to write instead
        "line 5: data.amount: '1,234.50' is not a number: write digits with a dot for the "
        "decimals, without thousands separators or currency sign (1234.50)"
    )
    assert reasons[2] == "line 6: invoice_id: required but empty"
    assert [r.event_id for r in report.rejections][:2] == [
        "import:invoice:inv-3",
        "import:invoice:inv-4",
    ]
    assert sorted(i.invoice_id for i in _rows(session_factory, Invoice)) == ["inv-1", "inv-2"]
    with session_scope(session_factory) as session:
        statuses = session.execute(select(EventLog.event_id, EventLog.status)).all()
    assert sorted(s for _, s in statuses) == [
        "applied",
        "applied",
        "rejected",
        "rejected",
        "rejected",
    ]
    with session_scope(session_factory) as session:  # as `kpibot webhooks list` shows them
        stored = session.scalars(
            select(EventLog.reason).where(EventLog.status == "rejected").order_by(EventLog.id)
        ).all()
    assert [reason.split(":")[0] for reason in stored] == [
        "data.csv line 4",
        "data.csv line 5",
        "data.csv line 6",
    ]
    assert stored[1] == f"data.csv {reasons[1]}"

    fixed = path.read_text().replace("2026-13-01", "2026-03-01").replace('"1,234.50"', "7.50")
    path.write_text(fixed)
    again = import_csv(session_factory, "invoices", path, config=UTC_CONFIG)
    assert (again.applied, again.duplicate, again.rejected) == (2, 2, 1)
    with session_scope(session_factory) as session:
        rejected = session.scalar(
            select(func.count()).select_from(EventLog).where(EventLog.status == "rejected")
        )
    assert rejected == 1  # the fixed rows took the place of their rejections


def test_two_different_rows_for_one_subscription_state_are_not_silently_dropped(
    session_factory, tmp_path
):
    text = SUBSCRIPTIONS + "acc-1,sub-1,active,90.00,USD,month,1,2026-01-10\n"
    report = import_csv(session_factory, "subscriptions", _csv(tmp_path, text), config=UTC_CONFIG)
    assert (report.applied, report.rejected) == (3, 1)
    assert report.rejections[0].reason == (
        "line 5: subscription_id sub-1 at 2026-01-10T00:00:00Z is already on line 2 "
        "with other values"
    )


def test_an_account_with_conflicting_rows_is_rejected_naming_them(session_factory, tmp_path):
    text = "account_id,name,contact_email,contact_name\nacc-1,Acme,,\nacc-1,ACME Inc,,Zoe\n"
    text += "acc-2,Globex,,\n"
    report = import_csv(session_factory, "accounts", _csv(tmp_path, text), config=UTC_CONFIG)
    assert (report.applied, report.rejected) == (1, 1)
    assert report.rejections[0].reason == (
        "line 3: name 'ACME Inc' differs from 'Acme' on line 2; "
        "line 3: contact_email is required for a contact"
    )
    assert [a.account_id for a in _rows(session_factory, Account)] == ["acc-2"]


def test_a_rejection_found_when_applying_names_its_line(session_factory, tmp_path):
    text = "account_id,invoice_id,amount,currency,paid_at\nacc-1,inv-1,10,EUR,2026-01-02\n"
    report = import_csv(session_factory, "invoices", _csv(tmp_path, text), config=UTC_CONFIG)
    assert report.rejected == 1
    assert report.rejections[0].reason.startswith("line 2: ")
    assert "EUR" in report.rejections[0].reason  # no EUR→USD rate yet


@pytest.mark.parametrize(
    ("header", "missing"),
    [
        ("account_id,invoice_id,amount,currency", "paid_at"),
        ("invoice,amount,currency,paid_at", "account_id, invoice_id"),
    ],
)
def test_missing_required_columns_fail_before_anything_is_stored(
    session_factory, tmp_path, header, missing
):
    path = _csv(tmp_path, f"{header}\nacc-1,inv-1,10,USD\n")
    with pytest.raises(ValueError, match=re.escape(f"lacks required column(s) {missing};")) as info:
        import_csv(session_factory, "invoices", path, config=UTC_CONFIG)
    assert "account_id*, invoice_id*, amount*, currency*, paid_at*" in str(info.value)
    assert _count(session_factory, EventLog) == 0


def test_unknown_kinds_and_empty_files_are_refused(session_factory, tmp_path):
    with pytest.raises(ValueError, match="accounts, subscriptions, invoices, responses, usage"):
        import_csv(session_factory, "deals", _csv(tmp_path, "a\n"), config=UTC_CONFIG)
    with pytest.raises(ValueError, match="empty"):
        import_csv(session_factory, "usage", _csv(tmp_path, ""), config=UTC_CONFIG)


def test_semicolons_bom_and_header_case_are_accepted(session_factory, tmp_path):
    text = "Account_ID;Invoice_ID;Amount;Currency;Paid_At\r\nacc-1;inv-1;12.50;usd;2026-01-02\r\n"
    path = _csv(tmp_path, text, bom=True)
    report = import_csv(session_factory, "invoices", path, config=UTC_CONFIG)
    assert (report.applied, report.rejected) == (1, 0)
    (invoice,) = _rows(session_factory, Invoice)
    assert (invoice.invoice_id, invoice.amount, invoice.currency) == (
        "inv-1",
        Decimal("12.50"),
        "USD",
    )


@pytest.mark.parametrize(
    ("kind", "bad", "fixed"),
    [
        (
            "invoices",
            "account_id,invoice_id,amount,currency,paid_at\nacc-1,inv-1,,USD,2026-01-02\n",
            "account_id,invoice_id,amount,currency,paid_at\nacc-1,inv-1,9.50,USD,2026-01-02\n",
        ),
        (
            "subscriptions",
            "account_id,subscription_id,status,amount,currency,effective_at\n"
            "acc-1,sub-1,active,,USD,2026-01-02\n",
            "account_id,subscription_id,status,amount,currency,effective_at\n"
            "acc-1,sub-1,active,49,USD,2026-01-02\n",
        ),
    ],
)
def test_a_row_with_an_empty_required_cell_fixed_and_imported_again_replaces_its_rejection(
    session_factory, tmp_path, kind, bad, fixed
):
    first = import_csv(session_factory, kind, _csv(tmp_path, bad, "bad.csv"), config=UTC_CONFIG)
    assert first.rejected == 1
    again = import_csv(session_factory, kind, _csv(tmp_path, fixed, "fixed.csv"), config=UTC_CONFIG)
    assert (again.applied, again.rejected) == (1, 0)
    with session_scope(session_factory) as session:
        assert session.execute(select(EventLog.status)).scalars().all() == ["applied"]


def test_an_excel_export_with_blank_rows_and_empty_trailing_cells_imports_cleanly(
    session_factory, tmp_path
):
    """Excel keeps the delimiters of rows it left blank (";;;;") and of empty columns past the
    header's end: neither is a row, nor a cell."""
    text = (
        "account_id;invoice_id;amount;currency;paid_at\r\n"
        "acc-1;inv-1;12.50;USD;2026-01-02;\r\n"
        ";;;;\r\n"
        "acc-1;inv-2;20;USD;2026-01-03;;\r\n"
        ";;;;\r\n"
    )
    report = import_csv(
        session_factory, "invoices", _csv(tmp_path, text, bom=True), config=UTC_CONFIG
    )
    assert (report.applied, report.duplicate, report.rejected) == (2, 0, 0), report.rejections
    assert [i.invoice_id for i in _rows(session_factory, Invoice, Invoice.invoice_id)] == [
        "inv-1",
        "inv-2",
    ]


def test_columns_kpibot_does_not_read_may_repeat_and_emails_may_differ_in_case(
    session_factory, tmp_path
):
    text = "account_id,note,owner_email,note\nacc-1,a,Lea@us.io,b\nacc-1,c,lea@us.io,d\n"
    report = import_csv(session_factory, "accounts", _csv(tmp_path, text), config=UTC_CONFIG)
    assert (report.applied, report.rejected) == (1, 0), report.rejections
    assert [a.owner_email for a in _rows(session_factory, Account)] == ["lea@us.io"]
    with pytest.raises(ValueError, match=r"column\(s\) given twice: owner_email"):
        bad = "account_id,owner_email,Owner_Email\nacc-1,a@us.io,b@us.io\n"
        import_csv(session_factory, "accounts", _csv(tmp_path, bad, "b.csv"), config=UTC_CONFIG)


def test_a_file_that_is_not_utf8_is_refused_before_anything_is_stored(session_factory, tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("account_id,name\nacc-1,Acme\nacc-2,Société\n".encode("latin-1"))
    with pytest.raises(ValueError, match="line 3 is not UTF-8"):
        import_csv(session_factory, "accounts", path, config=UTC_CONFIG)
    assert _count(session_factory, EventLog) == 0


def test_an_open_text_file_is_read_and_progress_counts_rows(session_factory):
    text = "account_id,day,user_id\n" + "".join(
        f"acc-1,2026-03-0{d},u{u}\n" for d in (1, 2) for u in range(3)
    )
    seen: list[int] = []
    report = import_csv(
        session_factory,
        "usage",
        io.StringIO(text),
        config=UTC_CONFIG,
        progress=seen.append,
        batch_size=1,
    )
    assert report.applied == 2
    assert sum(seen) == 6 and seen == [3, 3]


def test_a_row_with_more_cells_than_columns_is_rejected(session_factory, tmp_path):
    text = "account_id,invoice_id,amount,currency,paid_at\nacc-1,inv-1,1,200.00,USD,2026-01-02\n"
    report = import_csv(session_factory, "invoices", _csv(tmp_path, text), config=UTC_CONFIG)
    assert report.rejections[0].reason.startswith("line 2: 1 more cell(s) than the header")


def test_csv_events_are_deterministic_and_typed_for_the_schemas():
    rows = [
        {"response_id": "r-1", "kind": "nps", "score": "9", "responded_at": "2026-03-02T10:00"},
        {"response_id": "r-2", "kind": "nps", "score": "nine", "responded_at": "2026-03-02"},
        {"response_id": "r-3", "kind": "nps", "score": "", "responded_at": "yesterday"},
    ]
    first = list(csv_events("responses", rows, source_name="r.csv", timezone="Europe/Paris"))
    again = list(csv_events("responses", rows, source_name="r.csv", timezone="Europe/Paris"))
    assert first == again
    event, loose, bad = first
    assert event["id"] == "import:response:r-1"
    assert event["occurred_at"] == "2026-03-02T09:00:00Z"  # wall-clock time in the time zone
    assert event["data"] == {"response_id": "r-1", "kind": "nps", "score": 9}
    assert loose["data"]["score"] == "nine"  # left for the schema to reject
    assert isinstance(bad, Malformed) and bad.reason == "line 4: score: required but empty"


def test_the_docs_describe_every_column_of_every_kind():
    docs = DOCS.read_text(encoding="utf-8")
    assert "kpibot import KIND FILE.csv" in docs
    for kind in IMPORT_KINDS:
        section = docs.split(f"## {kind}", 1)[1].split("\n## ", 1)[0]
        for column in COLUMNS[kind].columns:
            assert f"`{column}`" in section, (kind, column)


def test_imported_events_rebuild_to_the_same_tables(session_factory, tmp_path):
    from storage.rebuild import rebuild

    import_csv(session_factory, "accounts", _csv(tmp_path, ACCOUNTS, "a.csv"), config=UTC_CONFIG)
    path = _csv(tmp_path, SUBSCRIPTIONS, "s.csv")
    import_csv(session_factory, "subscriptions", path, config=UTC_CONFIG)
    before, history = _snapshot(session_factory), movements(session_factory)
    rebuild(session_factory, config=UTC_CONFIG)
    assert (_snapshot(session_factory), movements(session_factory)) == (before, history)


UNCLOSED = (
    "response_id,kind,score,responded_at,account_id,comment\n"
    'r1,nps,9,2026-03-01,acme,"two\nlines"\n'
    'r2,nps,3,2026-03-02,acme,"Great tool\n'
    "r3,nps,10,2026-03-03,acme,ok\n"
    "r4,nps,0,2026-03-04,acme,terrible\n"
)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (UNCLOSED, "data.csv line 4: a quote opened in this row is never closed"),
        (UNCLOSED + "r5,nps,1,2026-03-05,acme," + "x" * 140_000 + "\n", "line 4: a value in"),
        (
            'response_id,kind,score,responded_at,comment\nr1,nps,9,2026-03-01,"a" b\n',
            "data.csv line 2: ',' expected after '\"'",
        ),
    ],
)
def test_a_file_whose_quotes_do_not_close_is_refused_before_anything_is_stored(
    session_factory, tmp_path, text, message
):
    """A lenient reader would read everything after an unclosed quote as one value: the rows
    after it would vanish from an import that says it succeeded."""
    with pytest.raises(ValueError, match=re.escape(message)):
        import_csv(session_factory, "responses", _csv(tmp_path, text), config=UTC_CONFIG)
    with pytest.raises(ValueError, match=re.escape(message.replace("data.csv", "<stream>"))):
        import_csv(session_factory, "responses", io.StringIO(text), config=UTC_CONFIG)
    assert _count(session_factory, EventLog) == 0


def test_blank_lines_before_the_header_are_skipped_and_counted_in_line_numbers(
    session_factory, tmp_path
):
    path = tmp_path / "invoices.csv"
    path.write_text("\n \r\n" + INVOICES.lstrip("\n") + "acc-1,inv-3,abc,USD,2026-03-01\n")
    report = import_csv(session_factory, "invoices", path, config=UTC_CONFIG)
    assert (report.applied, report.rejected) == (2, 1)
    assert report.rejections[0].reason.startswith("line 6: data.amount:")
    # A row is named by its first line, where a quoted value spans several.
    spanning = tmp_path / "spanning.csv"
    spanning.write_text(
        INVOICES.lstrip("\n")
        + 'acc-1,"inv\n4",abc,USD,2026-03-01\n'
        + "acc-1,inv-5,abc,USD,2026-03-01\n"
    )
    report = import_csv(session_factory, "invoices", spanning, config=UTC_CONFIG)
    assert [r.reason[:7] for r in report.rejections] == ["line 4:", "line 6:"]
    blank = tmp_path / "blank.csv"
    blank.write_text("\n \n")
    with pytest.raises(ValueError, match=r"blank\.csv is empty"):
        import_csv(session_factory, "invoices", blank, config=UTC_CONFIG)


ACCOUNT_ROWS = (
    "account_id,name,owner_email,domains,contact_email,contact_name",
    "acme,Acme,Lea@yourco.com,acme.com,ann@acme.com,Ann",
    "acme,,lea@yourco.com,acme.fr;Acme.de,bob@acme.com,",
    "acme,,,,Carl@acme.com,Carl",
)


def test_an_accounts_file_reordered_is_the_same_event_not_a_newer_one(session_factory, tmp_path):
    """Without an `updated_at`, a new account event is stamped with the time of the import: a
    re-export whose rows came in another order must not become one, and overwrite what the CRM
    sent since."""
    header, *rows = ACCOUNT_ROWS
    path = _csv(tmp_path, "\n".join([header, *rows]) + "\n")
    assert import_csv(session_factory, "accounts", path, config=UTC_CONFIG).applied == 1
    crm = make_account("acme", datetime.now(UTC).isoformat(), owner_email="sam@yourco.com")
    assert ingest(session_factory, [crm]).applied == 1
    path.write_text("\n".join([header, *reversed(rows)]) + "\n")
    again = import_csv(session_factory, "accounts", path, config=UTC_CONFIG)
    assert (again.applied, again.duplicate) == (0, 1)
    assert [a.owner_email for a in _rows(session_factory, Account)] == ["sam@yourco.com"]


def test_an_accounts_file_whose_rows_were_in_order_keeps_the_event_id_it_had():
    """An account's id was made from its contacts and domains in the rows' order: a file whose
    rows were in sorted order (contacts by email, domains) keeps that id, so the file imported
    before its order stopped counting is a duplicate when it is imported again."""
    text = "account_id,name,owner_email,segment,plan,currency,domains,contact_email,contact_name\n"
    text += "acme,Acme,Lea@yourco.com,,,,acme.com;acme.fr,ann@acme.com,Ann\n"
    text += "acme,,,,,,acme.fr,bob@acme.com,\n"
    [event] = csv_events("accounts", csv.DictReader(io.StringIO(text)), source_name="a.csv")
    assert event["id"] == "import:account:acme:b075eb67ffb58470353766ba"  # as made before
