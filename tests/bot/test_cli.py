"""The `kpibot` command line, run as a user runs it (a subprocess with its own environment)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.builders import make_account, make_fx, make_invoice, make_subscription

KPIBOT = [sys.executable, "-m", "bot"]


def run(args, *, database_url, cwd, stdin=None, **env):
    environment = {**os.environ, "DATABASE_URL": database_url, **env}
    return subprocess.run(  # noqa: S603  (our own CLI, with arguments the test wrote)
        [*KPIBOT, *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        env=environment,
        timeout=120,
    )


def test_demo_data_by_default_ends_yesterday_with_nothing_later_than_now(tmp_path: Path):
    """`make run`'s first start: a history up to now, never an event still to come."""
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    seeded = run(
        ["demo", "seed", "--accounts", "20", "--years", "1"], database_url=url, cwd=tmp_path
    )
    assert seeded.returncode == 0, seeded.stderr
    with sqlite3.connect(tmp_path / "demo.db") as connection:
        (stored,) = connection.execute("SELECT max(occurred_at) FROM event_log").fetchone()
    latest = datetime.fromisoformat(stored).replace(tzinfo=UTC)  # stored as UTC
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    assert today - timedelta(days=2) <= latest < today  # (2: the seed may end just before 0:00)


def test_ingest_reports_counts_and_rejections(database_url, tmp_path: Path):
    lines = [
        json.dumps(make_account()),
        json.dumps(make_subscription("2026-01-01", amount="120.00", interval="year")),
        "{not json",
        json.dumps(make_invoice("2026-01-01", currency="XYZ")),
    ]
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n")

    first = run(["ingest", str(path)], database_url=database_url, cwd=tmp_path)
    assert first.returncode == 1, first.stderr
    assert "2 applied, 0 duplicate, 0 ignored, 2 rejected" in first.stdout
    assert "line 3 is not JSON" in first.stderr
    assert "data.currency: unknown currency 'XYZ'" in first.stderr

    again = run(
        ["ingest", "-"], database_url=database_url, cwd=tmp_path, stdin=lines[0] + "\n" + lines[1]
    )
    assert again.returncode == 0, again.stderr
    assert "-: 0 applied, 2 duplicate, 0 ignored, 0 rejected" in again.stdout

    status = run(["status"], database_url=database_url, cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert "paying customers: 1" in status.stdout
    assert "MRR: 10.00 USD" in status.stdout


def test_ingest_reads_a_byte_order_mark_and_refuses_text_that_is_not_utf8(
    database_url, tmp_path: Path
):
    """Notepad and PowerShell start their UTF-8 files with a byte-order mark; a Latin-1 line is
    rejected with its number, not stored with its accents replaced."""
    path = tmp_path / "events.jsonl"
    account = make_account("acc-bom", name="Société Générale")
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(account, ensure_ascii=False).encode() + b"\n")
    first = run(["ingest", str(path)], database_url=database_url, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "1 applied, 0 duplicate, 0 ignored, 0 rejected" in first.stdout

    latin = tmp_path / "latin1.jsonl"
    latin.write_bytes(
        json.dumps(make_account("acc-2", name="Société"), ensure_ascii=False).encode("latin-1")
        + b"\n"
    )
    second = run(["ingest", str(latin)], database_url=database_url, cwd=tmp_path)
    assert second.returncode == 1
    assert "0 applied, 0 duplicate, 0 ignored, 1 rejected" in second.stdout
    assert "line 1 is not UTF-8" in second.stderr

    zero = run(["ingest", "--batch-size", "0", str(path)], database_url=database_url, cwd=tmp_path)
    assert zero.returncode == 2 and "--batch-size" in zero.stderr


def test_replay_exits_1_while_an_event_stays_rejected_or_an_id_is_not_a_rejected_event(
    database_url, tmp_path: Path
):
    path = tmp_path / "events.jsonl"
    bad = make_invoice("2026-01-01", currency="XYZ")
    # more USD than an amount column holds, once its rate is known: it cannot be applied
    gold = {**make_invoice("2026-03-01", amount="1000000000000", currency="XAU"), "id": "gold"}
    path.write_text("\n".join(json.dumps(e) for e in (make_account(), bad, gold)) + "\n")
    assert run(["ingest", str(path)], database_url=database_url, cwd=tmp_path).returncode == 1
    listed = run(
        ["webhooks", "list", "--status", "rejected"], database_url=database_url, cwd=tmp_path
    )
    [line] = [line for line in listed.stdout.splitlines() if "XYZ" in line]
    log_id = line.split()[0].lstrip("#")

    still = run(["webhooks", "replay", log_id], database_url=database_url, cwd=tmp_path)
    assert still.returncode == 1
    assert "replayed: 0 applied, 0 duplicate, 0 ignored, 1 rejected" in still.stdout

    unknown = run(["webhooks", "replay", "99999"], database_url=database_url, cwd=tmp_path)
    assert unknown.returncode == 1
    assert "not rejected events, left as they are: #99999" in unknown.stderr

    rate = make_fx("2026-01-01", "100000000", base="XAU")
    path.write_text(json.dumps(rate) + "\n")
    assert run(["ingest", str(path)], database_url=database_url, cwd=tmp_path).returncode == 0
    everything = run(["webhooks", "replay", "--all"], database_url=database_url, cwd=tmp_path)
    assert everything.returncode == 1, everything.stderr  # gold cannot be applied: no traceback
    assert "replayed: 0 applied, 0 duplicate, 0 ignored, 2 rejected" in everything.stdout
    assert f"still rejected ({bad['id']}): data.currency: unknown currency" in everything.stderr
    assert "still rejected (gold): could not be applied (" in everything.stderr
    assert "#" not in everything.stderr  # a replay's order is no event log id


def test_replay_of_ids_of_another_source_than_given_says_it_replayed_none(
    database_url, tmp_path: Path
):
    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps(make_invoice("2026-01-01", currency="XYZ")) + "\n")
    assert run(["ingest", str(path)], database_url=database_url, cwd=tmp_path).returncode == 1
    listed = run(["webhooks", "list"], database_url=database_url, cwd=tmp_path)
    [log_id] = [line.split()[0].lstrip("#") for line in listed.stdout.splitlines()]
    other = run(
        ["webhooks", "replay", log_id, "--source", "import"],
        database_url=database_url,
        cwd=tmp_path,
    )
    assert other.returncode == 1
    assert f"not rejected events of import, left as they are: #{log_id}" in other.stderr


def test_webhooks_list_shows_a_line_break_or_an_escape_in_an_id_escaped(
    database_url, tmp_path: Path
):
    """A sender's id is shown on its row's line: a line break in it would print a forged row,
    an escape sequence would reach the terminal."""
    path = tmp_path / "events.jsonl"
    forged = "x\n#1  2026-01-01 00:00:00  kpibot  fake  account.upserted  applied"
    events = [{**make_invoice("2026-01-01", currency="XYZ"), "id": forged}]
    events.append({**make_invoice("2026-01-02", currency="XYZ"), "id": "y\x1b[2J"})
    path.write_text("\n".join(json.dumps(e) for e in events) + "\n")
    ingested = run(["ingest", str(path)], database_url=database_url, cwd=tmp_path)
    assert "\x1b" not in ingested.stderr and "(x\n" not in ingested.stderr
    listed = run(["webhooks", "list"], database_url=database_url, cwd=tmp_path)
    lines = listed.stdout.splitlines()
    assert len(lines) == 2 and "\x1b" not in listed.stdout
    assert json.dumps(forged) in listed.stdout and '"y\\u001b[2J"' in listed.stdout


def test_webhooks_list_pages_with_before(database_url, tmp_path: Path):
    path = tmp_path / "events.jsonl"
    events = [
        {**make_invoice(f"2026-01-0{n}", currency="XYZ"), "id": f"bad-{n}"} for n in (1, 2, 3)
    ]
    path.write_text("\n".join(json.dumps(e) for e in events) + "\n")
    run(["ingest", str(path)], database_url=database_url, cwd=tmp_path)
    first = run(["webhooks", "list", "--limit", "2"], database_url=database_url, cwd=tmp_path)
    ids = [line.split()[0].lstrip("#") for line in first.stdout.splitlines()]
    assert [line.split()[4] for line in first.stdout.splitlines()] == ["bad-3", "bad-2"]
    assert f"the same command with --before {ids[-1]}" in first.stderr
    older = ["webhooks", "list", "--limit", "2", "--before", ids[-1]]
    second = run(older, database_url=database_url, cwd=tmp_path)
    assert [line.split()[4] for line in second.stdout.splitlines()] == ["bad-1"]
    assert "--before" not in second.stderr  # the last page
    zero = run(["webhooks", "list", "--limit", "0"], database_url=database_url, cwd=tmp_path)
    assert zero.returncode == 2 and "--limit" in zero.stderr


def test_a_database_that_cannot_be_reached_is_a_one_line_error(tmp_path: Path):
    url = "postgresql+psycopg://kpibot:s3cret-pw@127.0.0.1:1/kpibot"
    listed = run(["webhooks", "list"], database_url=url, cwd=tmp_path)
    assert listed.returncode == 1
    [line] = listed.stderr.strip().splitlines()
    assert line.startswith("Error: cannot open postgresql+psycopg://kpibot:***@127.0.0.1:1/kpibot")
    assert "s3cret-pw" not in listed.stderr


def test_a_replayed_event_without_an_id_is_named_by_its_log_id(database_url, tmp_path: Path):
    path = tmp_path / "events.jsonl"
    no_id = {k: v for k, v in make_invoice("2026-01-01").items() if k != "id"}
    path.write_text(json.dumps(no_id) + "\n")
    assert run(["ingest", str(path)], database_url=database_url, cwd=tmp_path).returncode == 1
    listed = run(["webhooks", "list"], database_url=database_url, cwd=tmp_path)
    [log_id] = [line.split()[0] for line in listed.stdout.splitlines()]
    for _ in range(2):  # the same row each time
        again = run(["webhooks", "replay", "--all"], database_url=database_url, cwd=tmp_path)
        assert again.returncode == 1
        assert f"still rejected ({log_id}): id: " in again.stderr, again.stderr


def test_a_database_locked_by_another_process_is_a_one_line_error(tmp_path: Path, monkeypatch):
    """SQLite has one writer: a command that waited its busy timeout out says so, instead of a
    traceback. (Run in this process, its timeout shortened: a real one lasts 30 s.)"""
    from click.testing import CliRunner

    from bot.cli import main
    from storage import db

    database = tmp_path / "kpibot.db"
    url = f"sqlite:///{database}"
    assert run(["db", "upgrade"], database_url=url, cwd=tmp_path).returncode == 0
    path = tmp_path / "invoices.csv"
    path.write_text("account_id,invoice_id,amount,currency,paid_at\nacc-1,i-1,1,USD,2026-01-05\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setattr(db, "SQLITE_BUSY_TIMEOUT_MS", 100)
    holder = sqlite3.connect(database, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # another process writing
        for args in (["import", "invoices", str(path)], ["webhooks", "replay", "--all"]):
            result = CliRunner().invoke(main, args)
            assert result.exit_code == 1, result.output
            assert result.exception is None or isinstance(result.exception, SystemExit)
            [line] = result.stderr.splitlines()[-1:]
            assert line == (
                f"Error: {url} stayed locked by another process for 0.1 s (an import, a replay "
                "or a rebuild?): run this again once it is done (what was stored already is "
                "skipped)"
            )
    finally:
        holder.close()


def test_bad_settings_are_a_clear_error(tmp_path: Path):
    result = run(
        ["db", "upgrade"], database_url="sqlite:///x.db", cwd=tmp_path, KPIBOT_TIMEZONE="Mars/Base"
    )
    assert result.returncode != 0
    assert "unknown IANA time zone 'Mars/Base'" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_command_run_away_from_the_store_refuses_or_says_it_creates_one(tmp_path: Path):
    """The default store is a path relative to the working directory: run from another folder,
    commands that read or fix the store refuse (creating nothing), and those that may start one
    (an import before the first `serve`) say where they created it."""
    elsewhere = tmp_path / "csv"
    elsewhere.mkdir()
    store = elsewhere / "data" / "kpibot.db"
    url = "sqlite:///data/kpibot.db"
    for args in (
        ["webhooks", "list"],
        ["webhooks", "replay", "--all"],
        ["rebuild"],
        ["kpi", "mrr"],
        ["home"],
        ["status"],
    ):
        refused = run(args, database_url=url, cwd=elsewhere)
        assert refused.returncode == 1, (args, refused.stdout)
        assert f"no kpibot store at {store}: run kpibot from the folder" in refused.stderr, args
        assert "Traceback" not in refused.stderr
        assert not store.exists(), args

    (elsewhere / "invoices.csv").write_text(
        "account_id,invoice_id,amount,currency,paid_at\nacme,in_1,10.00,USD,2026-01-02\n"
    )
    created = run(["import", "invoices", "invoices.csv"], database_url=url, cwd=elsewhere)
    assert created.returncode == 0, created.stderr
    assert f"kpibot: created a new store, {store}" in created.stderr
    again = run(["import", "invoices", "invoices.csv"], database_url=url, cwd=elsewhere)
    assert "created a new store" not in again.stderr
    listed = run(["webhooks", "list"], database_url=url, cwd=elsewhere)
    assert listed.returncode == 0, listed.stderr
    assert "import:invoice:in_1" in listed.stdout
    # SQLite's URI form names the same file (read-only here), and an in-memory store is no file.
    as_uri = f"sqlite:///file:{store}?mode=ro&uri=true"
    read = run(["webhooks", "list"], database_url=as_uri, cwd=tmp_path)
    assert "import:invoice:in_1" in read.stdout, read.stderr
    memory = run(["db", "upgrade"], database_url="sqlite://", cwd=tmp_path)
    assert memory.returncode == 0, memory.stderr
    assert "created a new store" not in memory.stderr


def test_rebuild_gives_the_same_mrr(database_url, tmp_path: Path):
    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps(make_subscription("2026-01-01", amount="75.00")) + "\n")
    assert run(["ingest", str(path)], database_url=database_url, cwd=tmp_path).returncode == 0
    rebuilt = run(["rebuild"], database_url=database_url, cwd=tmp_path)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "rebuilt the derived tables from 1 events" in rebuilt.stdout
    status = run(["status"], database_url=database_url, cwd=tmp_path)
    assert "MRR: 75.00 USD" in status.stdout


def _seed_churn_example(database_url, tmp_path: Path) -> None:
    from tests.builders import cancel, paying_accounts

    events = paying_accounts(500, amount="10.00", since="2026-09-01")
    events += [cancel(f"acc-{n}", "2026-10-15", amount="10.00") for n in range(1, 6)]
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(json.dumps(e) for e in events) + "\n")
    assert run(["ingest", str(path)], database_url=database_url, cwd=tmp_path).returncode == 0


def test_kpi_answers_as_text_and_json(database_url, tmp_path: Path):
    _seed_churn_example(database_url, tmp_path)
    text = run(
        ["kpi", "churn", "2026-10", "--as-of", "2026-11-23"],
        database_url=database_url,
        cwd=tmp_path,
    )
    assert text.returncode == 0, text.stderr
    assert "Logo churn — October 2026 (1 – 31 Oct 2026, UTC)" in text.stdout
    assert "1%" in text.stdout and "5 of 500 customers at start churned" in text.stdout

    raw = run(
        ["kpi", "churn", "2026-10", "--format", "json", "--as-of", "2026-11-23"],
        database_url=database_url,
        cwd=tmp_path,
    )
    answer = json.loads(raw.stdout)
    assert answer["value"] == 1
    assert answer["period"] == {
        "start": "2026-10-01",
        "end": "2026-10-31",
        "label": "October 2026",
        "timezone": "UTC",
    }
    assert answer["inputs"] == {"churned": 5, "customers_start": 500}
    assert answer["previous"]["value"] is None and answer["previous"]["reason"]


def test_kpi_in_french(database_url, tmp_path: Path):
    _seed_churn_example(database_url, tmp_path)
    result = run(
        ["kpi", "desabonnement", "2026-10"],
        database_url=database_url,
        cwd=tmp_path,
        KPIBOT_LOCALE="fr",
    )
    assert result.returncode == 0, result.stderr
    assert "octobre 2026" in result.stdout and "1\u00a0%" in result.stdout


def test_kpi_misunderstood_is_help_not_a_traceback(database_url, tmp_path: Path):
    _seed_churn_example(database_url, tmp_path)
    result = run(["kpi", "chrun", "last-quarter"], database_url=database_url, cwd=tmp_path)
    assert result.returncode == 2
    assert "Did you mean `churn`?" in result.stderr
    assert "Example: kpibot kpi churn last-quarter" in result.stderr
    assert "Traceback" not in result.stderr


def _a_credential(name: str) -> bool:
    """A setting of a secret or of Slack, which a developer's shell may export."""
    name = name.upper()
    return name.startswith("SLACK_") or name.endswith(("_SECRET", "_API_KEY", "_TOKEN"))


def test_serve_migrates_and_answers_health_checks(tmp_path: Path):
    """It says where it listens once it does (on the port the system chose, for --port 0): a
    request sent right then waits for the app to start instead of being refused."""
    import httpx

    environment = {
        **{k: v for k, v in os.environ.items() if not _a_credential(k)},
        "DATABASE_URL": f"sqlite:///{tmp_path / 'serve.db'}",
        "TYPEFORM_WEBHOOK_SECRET": "typeform-new-7f3a, typeform-old-c41d",
        "SEGMENT_WEBHOOK_SECRET": "segment-only-9b2e",
    }
    process = subprocess.Popen(  # noqa: S603  (our own CLI)
        [*KPIBOT, "serve", "--port", "0"],
        cwd=tmp_path,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    try:
        said = []
        while not said or not said[-1].startswith("listening on"):
            line = process.stdout.readline()
            assert line, "".join(said)  # it stopped before listening
            said.append(line)
        address = said[-1].split()[2].rstrip(":")
        # The next line says which routes are on. (Read here: what readline buffered would not
        # reach communicate() below.) A rotation under way shows, and the secrets themselves do
        # not.
        sources = process.stdout.readline()
        assert sources == "webhook sources with a secret: typeform (2 secrets), segment\n"
        assert address.startswith("http://127.0.0.1:") and not address.endswith(":0")
        response = httpx.get(f"{address}/healthz", timeout=30)  # at once: no retry
        assert response.json() == {"status": "ok", "database": "ok"}
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=10)
    assert "POST /webhooks/{source}" in said[-1] + output
    everything = "".join(said) + sources + output
    assert "typeform-new" not in everything and "segment-only" not in everything


def test_serve_on_a_port_already_taken_is_a_one_line_error(tmp_path: Path):
    import socket

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        store = tmp_path / "serve.db"
        result = run(
            ["serve", "--port", str(port)], database_url=f"sqlite:///{store}", cwd=tmp_path
        )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in result.stderr
    assert "Traceback" not in result.stderr
    assert not store.exists()  # no store created for a server that cannot run


def test_import_backfills_a_csv_and_reimporting_changes_nothing(database_url, tmp_path: Path):
    path = tmp_path / "invoices.csv"
    path.write_text(
        "account_id,invoice_id,amount,currency,paid_at\n"
        "acc-1,inv-1,10.00,USD,2026-01-05\n"
        "acc-1,inv-2,-3,USD,2026-01-06\n"
    )
    first = run(["import", "invoices", str(path)], database_url=database_url, cwd=tmp_path)
    assert first.returncode == 1
    assert "1 applied, 0 duplicate, 0 ignored, 1 rejected" in first.stdout
    assert "line 3: data.amount" in first.stderr
    again = run(["import", "invoices", str(path)], database_url=database_url, cwd=tmp_path)
    assert "0 applied, 1 duplicate" in again.stdout
    listed = run(
        ["webhooks", "list", "--status", "rejected"], database_url=database_url, cwd=tmp_path
    )
    assert "import:invoice:inv-2" in listed.stdout and "data.amount" in listed.stdout
    path.write_text(path.read_text().replace("inv-1,10.00", "inv-1,12.00"))
    corrected = run(["import", "invoices", str(path)], database_url=database_url, cwd=tmp_path)
    assert "0 applied, 1 duplicate" in corrected.stdout
    assert (
        "not replaced (import:invoice:inv-1): line 2: already stored with other values "
        "(from invoices.csv line 2)" in corrected.stderr
    )


def _seed_book(database_url, tmp_path: Path) -> None:
    from tests.builders import make_response

    events = [
        make_account("acme", name="Acme Corp", owner_email="ana@example.com"),
        make_subscription("2026-01-05", account_id="acme", amount="1200.00", interval="year"),
        make_response("2026-11-20", account_id="acme", score=2, comment="Nobody calls back"),
        make_account("globex", name="Globex", owner_email="bob@example.com"),
        make_subscription("2026-01-05", account_id="globex", subscription_id="g", amount="70.00"),
    ]
    path = tmp_path / "book.jsonl"
    path.write_text("\n".join(json.dumps(e) for e in events) + "\n")
    assert run(["ingest", str(path)], database_url=database_url, cwd=tmp_path).returncode == 0


def test_kpi_account_prints_the_card_offline(database_url, tmp_path: Path):
    _seed_book(database_url, tmp_path)
    card = run(
        ["kpi", "account", "acme corp", "--as-of", "2026-11-23"],
        database_url=database_url,
        cwd=tmp_path,
    )
    assert card.returncode == 0, card.stderr
    assert "Acme Corp" in card.stdout and "$100.00" in card.stdout
    assert "Nobody calls back" in card.stdout
    assert "*" not in card.stdout.replace("* ", "")  # rendered for a terminal, not mrkdwn

    unknown = run(["kpi", "account", "Globx"], database_url=database_url, cwd=tmp_path)
    assert unknown.returncode == 2
    assert "Globex" in unknown.stderr


def test_home_prints_a_csm_book_or_the_team_kpis(database_url, tmp_path: Path):
    _seed_book(database_url, tmp_path)
    ana = run(
        ["home", "--user", "ana@example.com", "--as-of", "2026-11-23"],
        database_url=database_url,
        cwd=tmp_path,
    )
    assert ana.returncode == 0, ana.stderr
    assert "Acme Corp" in ana.stdout and "Globex" not in ana.stdout
    team = run(["home", "--as-of", "2026-11-23"], database_url=database_url, cwd=tmp_path)
    assert team.returncode == 0, team.stderr
    assert "$170.00" in team.stdout and "Acme Corp" not in team.stdout
