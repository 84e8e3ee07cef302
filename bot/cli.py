"""The `kpibot` command line. Imports are lazy so that every command starts quickly."""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlalchemy.orm import Session, sessionmaker

    from bot.settings import Settings
    from storage.ingest import IngestReport

PROGRESS_MIN_BYTES = 1_000_000  # files smaller than this are ingested without a progress bar
SHOWN_REJECTIONS = 20


@click.group()
@click.pass_context
def main(ctx: click.Context) -> None:
    """kpibot: customer-success KPIs, digests and detractor alerts in Slack."""
    from pydantic import ValidationError

    from bot.settings import load_settings

    try:
        ctx.obj = load_settings()
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise click.ClickException(f"invalid settings: {problems}") from None


@contextmanager
def _database(settings: Settings, *, create: bool = True) -> Iterator[sessionmaker[Session]]:
    """The store, migrated (`_open_store` says when it may be created)."""
    from alembic.util.exc import CommandError
    from sqlalchemy.exc import OperationalError

    from storage.db import make_session_factory
    from storage.migrate import upgrade

    engine = _open_store(settings, create=create)
    try:
        try:
            upgrade(engine)  # the first connection
        except CommandError as error:
            raise click.ClickException(
                f"cannot migrate {_safe_url(settings.database_url)}: {error} "
                "(was it made by another version of kpibot?)"
            ) from None
        except OperationalError as error:
            if "database is locked" in str(error):
                raise  # `_unless_locked` says it
            # The driver's first line names the host and port, never the password.
            why = str(error.orig or error).strip().splitlines()[0]
            raise click.ClickException(
                f"cannot open {_safe_url(settings.database_url)}: {why}"
            ) from None
        yield make_session_factory(engine)
    finally:
        engine.dispose()


@contextmanager
def _unless_locked(settings: Settings) -> Iterator[None]:
    """Turn SQLite's "database is locked" (another process kept writing past the busy timeout)
    into a one-line error instead of a traceback."""
    import sqlite3

    from sqlalchemy.exc import OperationalError

    from storage.db import SQLITE_BUSY_TIMEOUT_MS

    try:
        yield
    except (OperationalError, sqlite3.OperationalError) as error:
        if "database is locked" not in str(error):
            raise
        raise click.ClickException(
            f"{_safe_url(settings.database_url)} stayed locked by another process for "
            f"{SQLITE_BUSY_TIMEOUT_MS / 1000:g} s (an import, a replay or a rebuild?): run this "
            "again once it is done (what was stored already is skipped)"
        ) from None


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.pass_obj
def db_upgrade(settings: Settings) -> None:
    """Apply the database migrations (serve does this on start too)."""
    with _database(settings):
        click.echo(f"database is up to date ({_safe_url(settings.database_url)})")


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(allow_dash=True))
@click.option(  # storage.ingest.BATCH_SIZE (not imported here: it would slow every command's start)
    "--batch-size",
    default=5_000,
    show_default=True,
    type=click.IntRange(1, 100_000),
    help="Events per transaction.",
)
@click.pass_obj
def ingest(settings: Settings, files: tuple[str, ...], batch_size: int) -> None:
    """Ingest native events from JSON Lines FILES ('-' reads standard input).

    Exits with status 1 when any event was rejected; rejected events are kept in the event log.
    """
    from storage.ingest import IngestReport, ingest_in_batches, read_json_lines

    total = IngestReport()
    with _database(settings) as factory:
        for name in files:
            with _open_lines(name) as (lines, size), _progress(name, size) as advance:
                report = ingest_in_batches(
                    factory,
                    read_json_lines(_count_bytes(lines, advance)),
                    config=settings.ingest_config,
                    batch_size=batch_size,
                )
            click.echo(f"{name}: {_summary(report)}")
            _show_rejections(report)
            total.add(report)
    if len(files) > 1:
        click.echo(f"total: {_summary(total)}")
    if total.rejected:
        sys.exit(1)


@contextmanager
def _open_lines(name: str) -> Iterator[tuple[Any, int | None]]:
    """Yield a file's lines as bytes (`storage.ingest.read_json_lines` decodes them), and its
    size when it has one."""
    if name == "-":
        yield sys.stdin.buffer, None
        return
    from pathlib import Path

    path = Path(name)
    if not path.is_file():
        raise click.ClickException(f"no such file: {name}")
    with path.open("rb") as handle:
        yield handle, path.stat().st_size


@contextmanager
def _progress(label: str, size: int | None) -> Iterator[Any]:
    if size is None or size < PROGRESS_MIN_BYTES:
        yield lambda _n: None
        return
    with click.progressbar(length=size, label=f"ingesting {label}", file=sys.stderr) as bar:
        yield bar.update


def _count_bytes(lines: Any, advance: Any) -> Iterator[bytes]:
    for line in lines:
        advance(len(line))
        yield line


def _summary(report: IngestReport) -> str:
    return (
        f"{report.applied} applied, {report.duplicate} duplicate, "
        f"{report.ignored} ignored, {report.rejected} rejected"
    )


def _show_rejections(report: IngestReport, *, replayed: bool = False) -> None:
    """Each rejected event of a file, by its number in the file; of a replay, by its id, or
    without one by its event log id as `webhooks list` shows it (#N); never by the replay's own
    order, which would read as one."""
    for rejection in report.rejections[:SHOWN_REJECTIONS]:
        who = f" ({_shown(rejection.event_id)})" if rejection.event_id else ""
        if not who and rejection.log_id is not None:
            who = f" (#{rejection.log_id})"
        what = "still rejected" if replayed else f"rejected event #{rejection.index + 1}"
        click.echo(f"  {what}{who}: {rejection.reason}", err=True)
    if len(report.rejections) > SHOWN_REJECTIONS:
        more = len(report.rejections) - SHOWN_REJECTIONS
        click.echo(f"  … and {more} more (kpibot webhooks list shows them all)", err=True)


@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("text", nargs=-1, type=click.UNPROCESSED)
@click.option("--format", "output", type=click.Choice(["text", "json"]), default="text")
@click.option("--as-of", help="Answer as of this day or instant (ISO 8601) instead of now.")
@click.pass_obj
def kpi(settings: Settings, text: tuple[str, ...], output: str, as_of: str | None) -> None:
    """Answer a KPI question exactly as /kpi does: kpibot kpi churn last-quarter by plan."""

    from metrics.answer import answer_text
    from metrics.ask import ask
    from metrics.query import QueryError

    now = _as_of(as_of, settings.timezone)
    with _reading(settings) as factory, factory() as session:
        try:
            reply = ask(
                " ".join(text),
                session=session,
                config=settings.metric_config,
                now=now,
                locale=settings.locale,
            )
        except QueryError as error:
            hint = " · ".join(f"`{s}`" for s in error.suggestions)
            example = error.example.replace("/kpi ", "kpibot kpi ", 1)
            click.echo(error.message + (f" ({hint})" if hint else ""), err=True)
            click.echo(f"Example: {example}", err=True)
            sys.exit(2)
    if reply.card is not None:
        from dataclasses import asdict

        from bot.answers import message_for
        from bot.console import render

        if output == "json":
            click.echo(json.dumps(asdict(reply.card), ensure_ascii=False, indent=2, default=str))
        else:
            message = message_for(reply, locale=settings.locale, timezone=settings.timezone)
            click.echo(render(message))
    elif reply.result is not None and output == "json":
        click.echo(json.dumps(reply.result.to_json(settings.locale), ensure_ascii=False, indent=2))
    elif reply.result is not None:
        click.echo(answer_text(reply.result, locale=settings.locale, timezone=settings.timezone))
    elif output == "json":
        click.echo(json.dumps({"kind": reply.command.kind, "lines": list(reply.lines)}))
    else:
        click.echo("\n".join(reply.lines))


@main.command()
@click.option("--user", "email", help="The email of a CSM: their Home shows their own book.")
@click.option("--as-of", help="As of this day or instant (ISO 8601) instead of now.")
@click.pass_obj
def home(settings: Settings, email: str | None, as_of: str | None) -> None:
    """Print kpibot's App Home tab as Slack shows it: a CSM's book, else the team's KPIs."""
    from bot.console import render
    from bot.home import home_for

    now = _as_of(as_of, settings.timezone)
    with _reading(settings) as factory:
        view = home_for(email, factory=factory, settings=settings, now=now)
    click.echo(render(view))


def _as_of(text: str | None, timezone: str) -> Any:
    from datetime import UTC, datetime, time
    from zoneinfo import ZoneInfo

    if not text:
        return datetime.now(UTC)
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time(23, 59, 59), ZoneInfo(timezone))
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not an ISO date or instant", param_hint="--as-of"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=ZoneInfo(timezone))


@contextmanager
def _reading(settings: Settings) -> Iterator[sessionmaker[Session]]:
    """A session factory for reading, without running migrations (fast start)."""
    from sqlalchemy import inspect

    from storage.db import make_session_factory, read_only

    engine = _open_store(settings, create=False)
    try:
        if not inspect(engine).has_table("event_log"):
            raise click.ClickException(
                "the store is empty: run `kpibot db upgrade` (or `make run`)"
            )
        yield make_session_factory(read_only(engine))
    finally:
        engine.dispose()


@main.command("import")
@click.argument(
    "kind", type=click.Choice(["accounts", "subscriptions", "invoices", "responses", "usage"])
)
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.pass_obj
def import_(settings: Settings, kind: str, file: str) -> None:
    """Backfill KIND from a CSV FILE (columns: docs/import.md), like webhooks would deliver it.

    Exits with status 1 when any row was rejected; re-importing the same file changes nothing.
    """
    from storage.csv_import import import_csv

    with _unless_locked(settings), _database(settings) as factory:
        with open(file, "rb") as handle:
            rows = sum(1 for _ in handle) - 1
        with click.progressbar(
            length=max(rows, 0), label=f"importing {kind}", file=sys.stderr
        ) as bar:
            try:
                report = import_csv(
                    factory, kind, file, config=settings.ingest_config, progress=bar.update
                )
            except ValueError as error:
                raise click.ClickException(str(error)) from None
    click.echo(f"{file}: {_summary(report)}")
    _show_rejections(report)
    for kept in report.kept[:SHOWN_REJECTIONS]:
        click.echo(f"  not replaced ({_shown(kept.event_id or '')}): {kept.reason}", err=True)
    if report.kept:
        more = len(report.kept) - SHOWN_REJECTIONS
        click.echo(
            (f"  … and {more} more; " if more > 0 else "  ")
            + f"{len(report.kept)} row(s) counted as duplicates have other values than the rows "
            "stored under their key, which stay (docs/import.md: Importing again)",
            err=True,
        )
    if report.rejected:
        sys.exit(1)


@main.command()
@click.pass_obj
def rebuild(settings: Settings) -> None:
    """Recompute every derived table from the event log (after changing currency or time zone)."""
    from sqlalchemy import func, select
    from sqlmodel import col

    from storage.db import session_scope
    from storage.rebuild import rebuild as rebuild_store
    from storage.tables import EventLog

    with _database(settings, create=False) as factory:
        with session_scope(factory) as session:
            size = session.scalar(
                select(func.count()).select_from(EventLog).where(col(EventLog.status) == "applied")
            )
        with click.progressbar(length=size or 0, label="rebuilding", file=sys.stderr) as bar:
            count = rebuild_store(
                factory,
                config=settings.ingest_config,
                options_for=settings.source_options,
                progress=bar.update,
            )
    click.echo(f"rebuilt the derived tables from {count} events")


@main.group()
def demo() -> None:
    """Demo data."""


@demo.command("seed")
@click.option("--accounts", default=200, show_default=True, help="How many customer accounts.")
@click.option("--years", default=3, show_default=True, help="Years of history.")
@click.option("--seed", default=42, show_default=True, help="Random seed: same seed, same data.")
@click.option(
    "--until",
    type=click.DateTime(["%Y-%m-%d"]),
    help="Last day of history, UTC [yesterday: no event later than now].",
)
@click.option("--workers", type=click.IntRange(1, 16), help="Parallel loaders [one per core].")
@click.option("--if-empty", is_flag=True, help="Do nothing when the store already has events.")
@click.pass_obj
def demo_seed(
    settings: Settings,
    accounts: int,
    years: int,
    seed: int,
    until: Any,
    workers: int | None,
    if_empty: bool,
) -> None:
    """Generate a realistic SaaS history and ingest it like webhooks would."""
    import time

    from sqlalchemy import exists, select
    from sqlmodel import col

    from storage.db import session_scope
    from storage.demo_load import DemoRequest, load_demo
    from storage.tables import EventLog

    with _database(settings) as factory:
        if if_empty:
            with session_scope(factory) as session:
                if session.scalar(select(exists().where(col(EventLog.id).is_not(None)))):
                    click.echo("the store already has events: demo data not added")
                    return
    request = DemoRequest(
        database_url=settings.database_url,
        config=settings.ingest_config,
        accounts=accounts,
        years=years,
        seed=seed,
        # Events fall at UTC times of their day: through yesterday, none is later than now.
        until=until.date() if until else datetime.now(UTC).date() - timedelta(days=1),
    )
    started = time.perf_counter()
    counted = [0]

    def show(n: int) -> None:
        counted[0] += n
        if sys.stderr.isatty():
            click.echo(
                f"\rseeding {accounts} accounts × {years} years: {counted[0]:,} events",
                nl=False,
                err=True,
            )

    report = load_demo(request, workers=workers, progress=show)
    if sys.stderr.isatty():
        click.echo(err=True)
    elapsed = time.perf_counter() - started
    click.echo(f"demo data: {_summary(report)} in {elapsed:.1f} s")
    _show_rejections(report)


@main.group()
def webhooks() -> None:
    """Received events, rejected ones and their replay."""


@webhooks.command("list")
@click.option(
    "--status", type=click.Choice(["queued", "applied", "ignored", "rejected"]), help="Only these."
)
@click.option("--source", help="Only this source (kpibot, stripe, delighted, …, import).")
@click.option(
    "--limit",
    default=50,
    show_default=True,
    type=click.IntRange(1, 1_000_000),
    help="How many, newest first.",
)
@click.option(
    "--before", type=click.IntRange(1), help="Only events older than this #id (the next page)."
)
@click.pass_obj
def webhooks_list(
    settings: Settings, status: str | None, source: str | None, limit: int, before: int | None
) -> None:
    """List received events with their fate; rejected ones with the reason."""
    from storage.db import session_scope
    from storage.deliveries import list_events

    with (
        _unless_locked(settings),
        _database(settings, create=False) as factory,
        session_scope(factory) as session,
    ):
        rows = list_events(session, status=status, source=source, limit=limit, before=before)
    if not rows:
        click.echo("no events")
    for row in rows:
        when = row.received_at.strftime("%Y-%m-%d %H:%M:%S")
        fields = [f"#{row.id}", when, row.source, row.event_id or "-", row.type or "-", row.status]
        click.echo("  ".join(_shown(text) for text in [*fields, row.reason or ""]).rstrip())
    if len(rows) == limit:  # there may be older ones
        click.echo(f"older ones: the same command with --before {rows[-1].id}", err=True)


def _shown(text: str) -> str:
    """`text` as one line of a listing: a sender's text with a line break or a control character
    (an escape sequence a terminal would obey) is shown quoted, with them escaped."""
    return text if text.isprintable() else json.dumps(text)


@webhooks.command("replay")
@click.argument("ids", nargs=-1, type=int)
@click.option("--source", help="Replay every rejected event of this source.")
@click.option("--all", "everything", is_flag=True, help="Replay every rejected event.")
@click.pass_obj
def webhooks_replay(
    settings: Settings, ids: tuple[int, ...], source: str | None, everything: bool
) -> None:
    """Map rejected events again and ingest them (after fixing the cause).

    Exits with status 1 when an event stays rejected, or when an id given is not a rejected event.
    """
    from sqlalchemy import select
    from sqlmodel import col

    from storage.db import session_scope
    from storage.deliveries import replay_rejected
    from storage.tables import EventLog

    if not (ids or source or everything):
        raise click.UsageError("give event log ids (see `kpibot webhooks list`), --source or --all")
    with _unless_locked(settings), _database(settings, create=False) as factory:
        with session_scope(factory) as session:
            query = select(col(EventLog.id)).where(
                col(EventLog.id).in_(ids), col(EventLog.status) == "rejected"
            )
            if source:  # the ids of another source are not replayed either
                query = query.where(col(EventLog.source) == source)
            rejected = set(session.scalars(query))
        report = replay_rejected(
            factory,
            config=settings.ingest_config,
            ids=ids,
            source=source,
            options_for=settings.source_options,
        )
    click.echo(f"replayed: {_summary(report)}")
    _show_rejections(report, replayed=True)
    missing = sorted(set(ids) - rejected)
    if missing:
        listed = ", ".join(f"#{n}" for n in missing)
        click.echo(
            f"not rejected events{f' of {source}' if source else ''}, left as they are: {listed} "
            "(see `kpibot webhooks list --status rejected`)",
            err=True,
        )
    if report.rejected or missing:
        sys.exit(1)


@main.command()
@click.pass_obj
def status(settings: Settings) -> None:
    """Say where the store is and what it holds."""
    from bot.status import store_status

    with _database(settings, create=False) as factory:
        click.echo(store_status(factory, settings))


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option(
    "--port", default=8000, show_default=True, help="Port to listen on (0: any free one)."
)
@click.pass_obj
def serve(settings: Settings, host: str, port: int) -> None:
    """Run the web server: Slack, webhooks, /healthz and /metrics (migrates the database first)."""
    import logging

    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    with _listen(host, port) as listener:
        _serve(settings, listener, host)


def _serve(settings: Settings, listener: socket.socket, host: str) -> None:
    """Open the store, say what is served where, and serve on `listener` until stopped."""
    import uvicorn

    from bot.http_protocol import HttpProtocol
    from bot.settings import WEBHOOK_SECRETS
    from bot.status import store_status
    from bot.web import create_web, describe_app
    from storage.migrate import upgrade

    port = listener.getsockname()[1]  # the one the system chose, for --port 0
    engine = _open_store(settings, create=True)
    upgrade(engine)
    app = create_web(settings, engine)
    click.echo(store_status(app.state.session_factory, settings))
    sources = [
        # Several secrets: a rotation under way (or Delighted's projects), seen at each start.
        f"{s} ({len(secrets)} secrets)" if len(secrets) > 1 else s
        for s in WEBHOOK_SECRETS
        if (secrets := settings.source_secrets(s))
    ]
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"listening on http://{shown}:{port}: " + ", ".join(describe_app(app)))
    click.echo(
        "webhook sources with a secret: "
        + (", ".join(sources) or "none (set KPIBOT_WEBHOOK_SECRET…)")
    )
    click.echo(_slack_line(settings))
    socket_mode = None
    if settings.slack_mode == "socket":
        from bot.slack_app import start_socket_mode

        socket_mode = start_socket_mode(app.state.slack_app, settings)
    _collect_less_often()
    try:
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level=settings.log_level.lower(),
            proxy_headers=True,
            timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
            http=HttpProtocol,
        )
        uvicorn.Server(config).run(sockets=[listener])
    finally:
        if socket_mode is not None:
            socket_mode.close()
        engine.dispose()


LISTEN_BACKLOG = 2_048  # connections the system holds until they are accepted (uvicorn's own)
# On SIGTERM, requests in flight get this long to finish (a batch's commit takes a second or two);
# then they are cut, as a sender that trickles its body would otherwise hold the stop forever.
# Under the 30 s most supervisors wait before they kill. A cut webhook delivery is answered 503
# (`bot.web`): its sender retries, and what it had stored is then a duplicate.
SHUTDOWN_GRACE_SECONDS = 20


def _listen(host: str, port: int) -> socket.socket:
    """A socket bound to `host`:`port` and listening, before `serve` says it listens: senders
    that connect while the app still starts wait in the backlog rather than being refused, and
    a port already taken is a one-line error before the store is touched."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=LISTEN_BACKLOG)
    except OSError as error:
        raise click.ClickException(
            f"cannot listen on {host}:{port}: {error.strerror or error} (another server there? "
            "choose another with --port)"
        ) from None


# The server allocates many short-lived containers per event (parsed payloads, rows, Decimals)
# while keeping large long-lived ones (the metrics kept in memory). At Python's default
# thresholds the young generation is collected every 700 allocations, and the older ones often
# enough that a busy server spent 10 to 20 % of its time scanning objects that were alive anyway
# (`make bench`, webhooks). Nearly all garbage here is freed by reference counting at once; the
# collector is only for cycles, which can wait a little longer.
GC_THRESHOLDS = (100_000, 50, 100)


def _collect_less_often() -> None:
    """Freeze what start-up built (never scanned again) and collect cycles less often."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def _slack_line(settings: Settings) -> str:
    if settings.slack_mode == "socket":
        return f"Slack: Socket Mode, Web API at {settings.slack_api_url}"
    if settings.slack_mode == "http":
        return f"Slack: requests at POST /slack/events, Web API at {settings.slack_api_url}"
    return (
        "Slack: offline (no SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET): ask with "
        "`kpibot kpi churn last-quarter`; messages the bot sends are printed here and kept in "
        "the outbox. Not built yet: detractor alerts and digests."
    )


def _open_store(settings: Settings, *, create: bool) -> Engine:
    """The store's engine. A SQLite file that does not exist yet is created (and said so on
    stderr) only when `create`: commands that read or fix what is there refuse instead."""
    from storage.db import make_engine

    missing = _missing_sqlite_file(settings.database_url)
    if missing is not None and not create:
        raise _no_store(missing)
    engine = make_engine(settings.database_url)
    if missing is not None:
        click.echo(f"kpibot: created a new store, {missing}", err=True)
    return engine


def _missing_sqlite_file(url: str) -> Any:
    """The absolute path of the SQLite file `url` names when there is no such file yet (a
    relative path is from the working directory: run elsewhere, it would be another store)."""
    from pathlib import Path

    from sqlalchemy.engine import make_url

    from storage.db import normalise_url

    parsed = make_url(normalise_url(url))
    name = parsed.database or ""
    if parsed.get_backend_name() != "sqlite":
        return None
    if parsed.query.get("uri") in ("true", "1") and name.startswith("file:"):
        name = name.removeprefix("file:").partition("?")[0]  # sqlite:///file:/path?uri=true
        if parsed.query.get("mode") == "memory":
            return None
    if name in ("", ":memory:"):
        return None
    path = Path(name).absolute()
    return None if path.exists() else path


def _no_store(path: Any) -> click.ClickException:
    return click.ClickException(
        f"no kpibot store at {path}: run kpibot from the folder it runs in (where its .env is), "
        "or set DATABASE_URL (a new install: `kpibot serve` or `kpibot db upgrade` creates it)"
    )


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
