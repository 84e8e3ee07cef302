"""`make bench`: kpibot's own benchmark, on SQLite and PostgreSQL.

1. seed: `kpibot demo seed --accounts 10000 --years 3` (the reference data set), timed; skipped
   when the benchmark database already holds it;
2. metrics: every metric of the registry over its default period, last-quarter and `by plan`,
   computed in-process as `/kpi` does, in ms: cold (the first question after a data change, with
   nothing kept in memory) and the median of the warm runs after `metrics.warming.warm` (what
   `kpibot serve`'s warmer does in the background after a change); then stickiness and health
   right after a usage event, which the question itself brings in;
3. cli: `kpibot kpi mrr` as a user runs it, interpreter start included;
4. slash: a real `kpibot serve` on the reference data, a fake Slack Web API beside it, and
   signed `/kpi` requests for every metric, one after another (p50 and p99 in ms, per metric),
   then the server's memory: resident now and at its peak (SPEC: under 300 MB);
5. webhooks: a real `kpibot serve` on a fresh database, 8 concurrent signed senders posting
   2,000 events each (10 % duplicates, in random order), one event per request, then in batches of
   1,000, then in batches of 1,000 as a live stream comes (in time order, a tenth sent late, after
   events up to two days newer: `batch-live`); checks that exactly the unique events were
   applied, and reports the server's memory and the CPU time spent per event by the server and
   by PostgreSQL's processes (with the rate that much CPU allows on this machine's cores: the
   ceiling of this design here);
6. webhooks-reference: the same, on a copy of the reference data (as SPEC measures performance),
   the traffic aimed at 400 of its accounts over its last 90 days, after the server's warm-up:
   what a team already holding years of data sees, every kept copy of its data now large.

Results are printed and written to bench/results/latest.json. PostgreSQL runs when
BENCH_DATABASE_URL (a server URL, e.g. postgresql://postgres@127.0.0.1:5432/test) is set.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import Connection, make_url

from bench.traffic import onto_accounts, send, spread, unique_events
from tests.signing import TEST_WEBHOOK_SECRET

RESULTS = Path(__file__).parent / "results"
REFERENCE_DAY = date(2026, 11, 23)
QUESTION_TIME = datetime(2026, 11, 23, 18, tzinfo=UTC)


def main() -> None:
    """Run the benchmark and print a report."""
    parser = argparse.ArgumentParser(prog="make bench")
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--years", type=int, default=3)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--only", default="seed,metrics,cli,slash,webhooks,webhooks-reference")
    parser.add_argument("--per-sender", type=int, default=2_000)
    args = parser.parse_args()
    parts = set(args.only.split(","))
    RESULTS.mkdir(exist_ok=True)
    report: dict[str, Any] = {
        "machine": {"cores": os.cpu_count(), "python": platform.python_version()},
        "when": datetime.now(UTC).isoformat(),
        "backends": {},
    }
    for backend, url in _backends(args):
        print(f"\n== {backend} ({make_url(url).render_as_string(hide_password=True)})")
        results: dict[str, Any] = {}
        if parts & {"seed", "metrics", "cli", "slash"}:
            results["seed"] = _seed(url, args)
        if "metrics" in parts:
            results["metrics_ms"] = _metrics(url, args.runs)
            results["after_usage_event_ms"] = _after_usage_event(url, args.runs)
        if "cli" in parts:
            results["cli_seconds"] = _cli(url)
        if "slash" in parts:
            results["slash_ms"] = _slash(url, args.runs * 4)
        if "webhooks" in parts:
            results["webhooks"] = _webhooks(backend, args.per_sender)
        if "webhooks-reference" in parts:
            _seed(url, args)
            results["webhooks_on_reference_data"] = _webhooks(
                backend, args.per_sender, reference=url, accounts=args.accounts
            )
        report["backends"][backend] = results
    (RESULTS / "latest.json").write_text(json.dumps(report, indent=2))
    print(f"\nwritten to {RESULTS / 'latest.json'} ({os.cpu_count()} cores)")


def _backends(args: argparse.Namespace) -> list[tuple[str, str]]:
    tag = f"{args.accounts}x{args.years}"
    backends = [("sqlite", f"sqlite:///{RESULTS / f'reference-{tag}.db'}")]
    server = os.environ.get("BENCH_DATABASE_URL")
    if server:
        backends.append(("postgresql", _postgres_database(server, f"kpibot_bench_{tag}")))
    return backends


def _postgres_database(
    server: str, name: str, *, fresh: bool = False, template: str | None = None
) -> str:
    """The URL of database `name` on `server`, created if missing (empty, or a copy of
    `template`); `fresh` drops it first."""
    base = make_url(server).set(drivername="postgresql+psycopg")
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        if fresh:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        exists = connection.scalar(
            text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
        )
        if not exists:
            copy = f' TEMPLATE "{template}"' if template else ""
            connection.execute(text(f'CREATE DATABASE "{name}"{copy}'))
    admin.dispose()
    return base.set(database=name).render_as_string(hide_password=False)


def _kpibot(*args: str, url: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "DATABASE_URL": url, **env}
    return subprocess.run(  # noqa: S603  (our own CLI)
        [sys.executable, "-m", "bot", *args],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )


def _seed(url: str, args: argparse.Namespace) -> dict[str, Any]:
    from storage.db import make_engine
    from storage.migrate import upgrade
    from storage.tables import EventLog

    engine = make_engine(url)
    upgrade(engine)
    with engine.connect() as connection:
        events = connection.scalar(select(func.count()).select_from(EventLog))
    engine.dispose()
    if events:
        print(f"seed: reusing {events:,} events already loaded")
        return {"events": events, "seconds": None}
    started = time.perf_counter()
    done = _kpibot(
        "demo",
        "seed",
        f"--accounts={args.accounts}",
        f"--years={args.years}",
        f"--until={REFERENCE_DAY}",
        url=url,
    )
    seconds = time.perf_counter() - started
    print(f"seed: {done.stdout.strip()} (wall {seconds:.1f} s)")
    return {"summary": done.stdout.strip(), "seconds": round(seconds, 1)}


def _metrics(url: str, runs: int) -> dict[str, dict[str, float]]:
    from metrics.compute import compute_kpi
    from metrics.context import MetricConfig, MetricContext
    from metrics.ledger import forget
    from metrics.periods import parse_period
    from metrics.registry import METRICS
    from metrics.warming import warm
    from storage.db import make_engine, make_session_factory, read_only

    engine = make_engine(url)
    factory = make_session_factory(read_only(engine))
    config = MetricConfig()
    now = QUESTION_TIME
    timings: dict[str, dict[str, float]] = {}
    print(
        f"{'metric':<24}{'default':>16}{'last-quarter':>16}{'by plan':>16}"
        f"   (ms: cold / median of {runs} warm runs)"
    )
    for metric in METRICS:
        row: dict[str, float] = {}
        for label, period_text, by in _questions(metric):
            period = parse_period(period_text, now=now, timezone="UTC")
            samples = []
            forget()  # the first run reads the movements as the first question after a change
            for run in range(runs + 1):
                with factory() as session:
                    started = time.perf_counter()
                    compute_kpi(session=session, metric=metric, period=period, config=config, by=by)
                    samples.append((time.perf_counter() - started) * 1000)
                    if run == 0:  # then as `kpibot serve`'s warmer does, in the background
                        warm(MetricContext(session, config))
            row[f"{label} cold"] = round(samples[0], 1)
            row[label] = round(statistics.median(samples[1:]), 1)
            row[f"{label} max"] = round(max(samples[1:]), 1)
        timings[metric.id] = row
        print(
            f"{metric.id:<24}"
            + "".join(
                f"{row[f'{label} cold']:>8} /{row[label]:>6}"
                for label in ("default", "last-quarter", "by plan")
            )
        )
    engine.dispose()
    return timings


def _questions(metric: Any) -> tuple[tuple[str, str, str | None], ...]:
    """(label, period, breakdown) of the questions asked of each metric."""
    return (
        ("default", metric.default_period, None),
        ("last-quarter", "last-quarter", None),
        ("by plan", "last-quarter", "plan"),
    )


def _after_usage_event(url: str, runs: int) -> dict[str, dict[str, float]]:
    """Stickiness and health asked right after a usage event, with nothing warmed again.

    Usage changes all day long: each event marks its account, and the next question brings what
    is kept up to date itself (`metrics.ledger.tracked`). The event re-reports a stored day with
    the same users, so the data set stays the reference one.
    """
    from metrics.compute import compute_kpi
    from metrics.context import MetricConfig, MetricContext
    from metrics.ledger import forget
    from metrics.periods import parse_period
    from metrics.registry import find_metric
    from metrics.warming import warm
    from storage.apply import IngestConfig
    from storage.db import make_engine, make_session_factory, session_scope
    from storage.ingest import ingest_events
    from storage.tables import UsageDay

    engine = make_engine(url)
    factory = make_session_factory(engine)
    config = MetricConfig()
    with factory() as session:
        account_id, day, users = session.execute(
            select(UsageDay.account_id, UsageDay.day, UsageDay.user_ids)
            .where(UsageDay.day == REFERENCE_DAY)
            .limit(1)
        ).one()
    forget()
    with factory() as session:
        warm(MetricContext(session, config))
    print(f"after one usage event, not warmed again (ms: median of {runs})")
    timings: dict[str, dict[str, float]] = {}
    for metric_id in ("stickiness", "health"):
        metric = find_metric(metric_id)
        assert metric is not None
        row: dict[str, float] = {}
        for label, period_text, by in _questions(metric):
            period = parse_period(period_text, now=QUESTION_TIME, timezone="UTC")
            samples = []
            for _ in range(runs):
                report = {"account_id": account_id, "day": day.isoformat(), "user_ids": users}
                usage = {
                    "id": f"bench-usage-{time.time_ns()}",
                    "type": "usage.recorded",
                    "occurred_at": datetime.now(UTC).isoformat(),
                    "data": report,
                }
                with session_scope(factory) as session:
                    ingest_events(session, [usage], config=IngestConfig())
                with factory() as session:
                    started = time.perf_counter()
                    compute_kpi(session=session, metric=metric, period=period, config=config, by=by)
                    samples.append((time.perf_counter() - started) * 1000)
            row[label] = round(statistics.median(samples), 1)
        timings[metric_id] = row
        print(f"{metric_id:<24}" + "".join(f"{row[label]:>16}" for label in row))
    engine.dispose()
    return timings


def _cli(url: str) -> float:
    samples = []
    for _ in range(3):
        started = time.perf_counter()
        _kpibot("kpi", "mrr", url=url)
        samples.append(time.perf_counter() - started)
    print(
        f"cli: `kpibot kpi mrr` in {statistics.median(samples):.2f} s (median of 3, start included)"
    )
    return round(statistics.median(samples), 2)


def _webhooks(
    backend: str, per_sender: int, *, reference: str | None = None, accounts: int = 0
) -> dict[str, Any]:
    """8 signed senders, one event per request then batches of 1,000, on a fresh database; or,
    with `reference` (the reference data's URL), on a copy of it, aimed at its accounts."""
    results = {}
    where = "reference" if reference else "fresh"
    for mode, batch, late_share in MODES:
        url = _webhook_database(backend, f"{where}_{mode}", reference)
        events = unique_events(total=8 * per_sender, accounts=400, seed=7)
        if reference:
            ids = [f"acc-{n:06d}" for n in random.Random(5).sample(range(1, accounts + 1), 400)]
            events = onto_accounts(events, ids, last_day=REFERENCE_DAY, days=90, seed=6)
        # A live stream's requests hold consecutive slices of time; random order deals one by one.
        block = batch if late_share is not None else 1
        plans = spread(
            events, senders=8, duplicate_share=0.1, seed=8, late_share=late_share, block=block
        )
        sent = sum(len(plan) for plan in plans)
        with _server(url) as server:
            _drained(url, started=time.perf_counter())
            applied_before = _applied(url)
            if reference:
                time.sleep(WARM_UP_SECONDS)  # the warmer's first rounds, as in production
            cpu_before = server.cpu_seconds(), _postgres_cpu_seconds()
            result = send(server.base_url, TEST_WEBHOOK_SECRET, plans, batch=batch)
            drain = _drained(url, started=time.perf_counter())
            cpu = _cpu_per_event(cpu_before, (server.cpu_seconds(), _postgres_cpu_seconds()), sent)
            memory = server.memory()
            applied = _applied(url) - applied_before  # counted once the clocks have stopped
        seconds = result.seconds + drain
        exact = (
            result.counts["applied"] + result.counts["queued"] == len(events)
            and result.counts["duplicate"] == sent - len(events)
            and applied == len(events)
        )
        rate = sent / seconds
        print(
            f"webhooks {mode}{' on the reference data' if reference else ''}: {sent:,} events "
            f"in {result.requests:,} requests, "
            f"{result.seconds:.1f} s to answer them all + {drain:.1f} s until all applied = "
            f"{rate:,.0f} events/s; statuses {dict(result.statuses)}; "
            + (
                "exactly the unique events applied"
                if exact
                else f"MISMATCH {dict(result.counts)}, {applied} applied"
            )
            + f"; server memory {_mib(memory)}; {_cpu_text(cpu, backend)}"
        )
        results[mode] = {
            "events": sent,
            "seconds": round(seconds, 2),
            "answered_in_seconds": round(result.seconds, 2),
            "events_per_second": round(rate),
            "exact": exact,
            "memory_mib": memory,
            "cpu_us_per_event": cpu,
        }
    return results


# (name, events per request, share sent late in a time-ordered stream; None: random order)
MODES = (("single", 1, None), ("batch", 1_000, None), ("batch-live", 1_000, 0.1))
WARM_UP_SECONDS = 30  # on the reference data: the server builds what it keeps in memory first


def _webhook_database(backend: str, name: str, reference: str | None) -> str:
    """A database for one webhook run: empty, or a copy of the reference data."""
    if backend == "sqlite":
        path = RESULTS / f"webhooks-{name}.db"
        for leftover in RESULTS.glob(f"webhooks-{name}.db*"):
            leftover.unlink()
        if reference:
            source = Path(make_url(reference).database or "")
            with sqlite3.connect(source) as connection:  # the whole data in the main file
                connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            shutil.copyfile(source, path)
        return f"sqlite:///{path}"
    server = os.environ["BENCH_DATABASE_URL"]
    template = make_url(reference).database if reference else None
    return _postgres_database(server, f"kpibot_bench_hooks_{name}", fresh=True, template=template)


def _postgres_cpu_seconds() -> float | None:
    """CPU time of every PostgreSQL process on this machine (Linux's /proc), in seconds."""
    total, found = 0.0, False
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            name, _, fields = stat.read_text().partition(") ")
        except OSError:
            continue
        if name.endswith("(postgres"):
            utime, stime = fields.split()[11:13]
            total += (int(utime) + int(stime)) / os.sysconf("SC_CLK_TCK")
            found = True
    return total if found else None


def _cpu_per_event(
    before: tuple[float | None, float | None], after: tuple[float | None, float | None], events: int
) -> dict[str, float] | None:
    """Server and PostgreSQL CPU microseconds per event between two readings."""
    if before[0] is None or after[0] is None:
        return None
    spent = {"server": (after[0] - before[0]) / events * 1e6}
    if before[1] is not None and after[1] is not None:
        spent["postgresql"] = (after[1] - before[1]) / events * 1e6
    return {name: round(us, 1) for name, us in spent.items()}


def _cpu_text(cpu: dict[str, float] | None, backend: str) -> str:
    if cpu is None:
        return "CPU not measured"
    parts = [f"server {cpu['server']:.0f}"]
    total = cpu["server"]
    if backend == "postgresql" and "postgresql" in cpu:
        parts.append(f"PostgreSQL {cpu['postgresql']:.0f}")
        total += cpu["postgresql"]
    cores = os.cpu_count() or 1
    return (
        f"CPU per event: {' + '.join(parts)} us, at most {cores / total * 1e6:,.0f} events/s "
        f"on {cores} cores if they did nothing else"
    )


def _drained(url: str, *, started: float) -> float:
    """Wait until the server has applied every queued event; return the wait.

    Each look is one probe of the queued rows' partial index: counting the whole event log
    instead took 80 to 110 ms on the reference data, and that time (and PostgreSQL's CPU for it)
    was the benchmark's, not the server's."""
    with _connected(url) as connection:
        while connection.execute(_ANY_QUEUED).scalar():
            connection.rollback()
            time.sleep(0.01)
        return time.perf_counter() - started


def _applied(url: str) -> int:
    """How many events the event log holds as applied."""
    with _connected(url) as connection:
        return int(connection.execute(_APPLIED).scalar_one())


_ANY_QUEUED = text("SELECT EXISTS (SELECT 1 FROM event_log WHERE status = 'queued')")
_APPLIED = text("SELECT count(*) FROM event_log WHERE status = 'applied'")


@contextmanager
def _connected(url: str) -> Iterator[Connection]:
    """A connection to `url` on an engine of its own, disposed of on exit."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            yield connection
    finally:
        engine.dispose()


def _slash(url: str, runs: int) -> dict[str, dict[str, float]]:
    """Time signed `/kpi <metric> 2026-10` requests to a running server, per metric.

    The time is until the answer is in Slack's hands: the HTTP response when it carries the
    answer, else the answer's arrival at the (fake) response_url after "working on it".
    """
    from metrics.registry import METRICS
    from tests.bot.slack import send_command
    from tests.fake_slack import FakeSlack
    from tests.signing import TEST_SLACK_SIGNING_SECRET

    timings: dict[str, dict[str, float]] = {}
    with FakeSlack() as slack:
        env = {
            "SLACK_BOT_TOKEN": slack.token,
            "SLACK_SIGNING_SECRET": TEST_SLACK_SIGNING_SECRET,
            "SLACK_API_URL": slack.base_url,
        }
        with _server(url, **env) as server, httpx.Client() as client:
            base_url = server.base_url
            send_command(base_url, "help", client=client)  # Bolt's first auth.test
            for metric in METRICS:
                question = f"{metric.id} 2026-10"
                samples, acks, deferred = [], [], 0
                for n in range(runs + 2):
                    started = time.perf_counter()
                    response = send_command(
                        base_url, question, client=client, response_url=slack.response_url(str(n))
                    ).json()
                    acks.append((time.perf_counter() - started) * 1000)
                    if "blocks" not in response:  # acknowledged first: wait for the answer
                        deferred += 1
                        slack.wait_for("response_url", timeout=60)
                        slack.clear()
                    samples.append((time.perf_counter() - started) * 1000)
                samples, acks = sorted(samples[2:]), sorted(acks[2:])
                p50, p99, ack99 = statistics.median(samples), _p99(samples), _p99(acks)
                timings[metric.id] = {
                    "p50": round(p50, 1),
                    "p99": round(p99, 1),
                    "ack_p99": round(ack99, 1),
                    "deferred": deferred,
                }
                note = f"  (answered via response_url {deferred}x)" if deferred else ""
                print(
                    f"/kpi {question:<28} p50 {p50:7.1f} ms  p99 {p99:7.1f} ms  "
                    f"ack p99 {ack99:7.1f} ms{note}"
                )
            memory = server.memory()
            if memory is not None:
                timings["server_memory_mib"] = memory
            print(f"server memory after every metric: {_mib(memory)}")
    return timings


def _mib(memory: dict[str, float] | None) -> str:
    if memory is None:
        return "not measured (no /proc here)"
    return f"{memory['resident']:.0f} MiB resident, {memory['peak']:.0f} MiB at its peak"


def _p99(sorted_samples: list[float]) -> float:
    return sorted_samples[min(len(sorted_samples) - 1, round(0.99 * (len(sorted_samples) - 1)))]


class _server:
    """`kpibot serve` in its own process on a free port, stopped on exit."""

    def __init__(self, url: str, **env: str) -> None:
        self.url = url
        self.env = env

    def cpu_seconds(self) -> float | None:
        """The server's CPU time so far, all its threads (Linux's /proc), in seconds."""
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rpartition(") ")[2].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def memory(self) -> dict[str, float] | None:
        """The server's resident memory now and at its peak, in MiB (Linux's /proc)."""
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
        except OSError:
            return None
        kib = {
            line.split(":")[0]: float(line.split()[1])
            for line in status.splitlines()
            if line.startswith(("VmRSS:", "VmHWM:"))
        }
        return {"resident": kib["VmRSS"] / 1024, "peak": kib["VmHWM"] / 1024}

    def __enter__(self) -> _server:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        environment = {
            **os.environ,
            "DATABASE_URL": self.url,
            "KPIBOT_WEBHOOK_SECRET": TEST_WEBHOOK_SECRET,
            "KPIBOT_LOG_LEVEL": "WARNING",
            **self.env,
        }
        self.process = subprocess.Popen(  # noqa: S603  (our own CLI)
            [sys.executable, "-m", "bot", "serve", f"--port={port}"],
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    self.base_url = base
                    return self
            except httpx.TransportError:
                time.sleep(0.2)
        self.process.kill()
        raise RuntimeError("kpibot serve did not start")

    def __exit__(self, *_exc: object) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


if __name__ == "__main__":
    main()
