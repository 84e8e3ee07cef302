"""Tests for the `/kpi` command parser (metrics/query.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metrics.periods import PERIOD_EXAMPLES, BadPeriod, FiscalCalendar
from metrics.query import (
    DIMENSIONS,
    BadQuery,
    Command,
    KpiQuery,
    QueryError,
    UnknownMetric,
    parse_command,
)
from metrics.registry import METRICS

# Monday 23 November 2026, mid-afternoon UTC: the same local date in UTC and Europe/Paris.
NOW = datetime(2026, 11, 23, 15, 30, tzinfo=UTC)
MTD = ("2026-11-01", "2026-11-23")
TODAY = ("2026-11-23", "2026-11-23")
LAST_MONTH = ("2026-10-01", "2026-10-31")
LAST_QUARTER = ("2026-07-01", "2026-09-30")
CALENDAR = FiscalCalendar()


def parse(
    text: str, *, fiscal: FiscalCalendar = CALENDAR, timezone: str = "Europe/Paris"
) -> Command:
    return parse_command(text, now=NOW, timezone=timezone, fiscal=fiscal)


def query(text: str, *, fiscal: FiscalCalendar = CALENDAR) -> KpiQuery:
    command = parse(text, fiscal=fiscal)
    assert command.kind == "metric"
    assert command.query is not None
    return command.query


def error(text: str) -> QueryError:
    with pytest.raises(QueryError) as caught:
        parse(text)
    return caught.value


def span(q: KpiQuery) -> tuple[str, str]:
    return q.period.start.isoformat(), q.period.end.isoformat()


# --- Questions about a metric ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "metric", "period", "given", "by", "filters", "compare", "share"),
    [
        ("churn", "churn", MTD, False, None, (), "previous", False),
        ("mrr", "mrr", TODAY, False, None, (), "previous", False),
        ("churn last-quarter by plan", "churn", LAST_QUARTER, True, "plan", (), "previous", False),
        (
            "CHURN Last-Month BY Segment",
            "churn",
            LAST_MONTH,
            True,
            "segment",
            (),
            "previous",
            False,
        ),
        (
            "nrr ytd where segment=enterprise vs last-year share",
            "nrr",
            ("2026-01-01", "2026-11-23"),
            True,
            None,
            (("segment", "enterprise"),),
            "last-year",
            True,
        ),
        (
            "nps 2026-Q3 where segment=Enterprise where plan=scale",
            "nps",
            LAST_QUARTER,
            True,
            None,
            (("segment", "Enterprise"), ("plan", "scale")),
            "previous",
            False,
        ),
        (
            "nps where segment=enterprise and plan=Scale by csm",
            "nps",
            MTD,
            False,
            "csm",
            (("segment", "enterprise"), ("plan", "Scale")),
            "previous",
            False,
        ),
        (
            'churn where csm="Camille Martin" by csm',
            "churn",
            MTD,
            False,
            "csm",
            (("csm", "Camille Martin"),),
            "previous",
            False,
        ),
        ("churn segment=SMB", "churn", MTD, False, None, (("segment", "SMB"),), "previous", False),
        (
            "churn where plan = Scale",
            "churn",
            MTD,
            False,
            None,
            (("plan", "Scale"),),
            "previous",
            False,
        ),
        ("churn plan= Scale", "churn", MTD, False, None, (("plan", "Scale"),), "previous", False),
        ("churn plan =Scale", "churn", MTD, False, None, (("plan", "Scale"),), "previous", False),
        ("churn share vs prev last-month", "churn", LAST_MONTH, True, None, (), "previous", True),
        ("churn vs last-year", "churn", MTD, False, None, (), "last-year", False),
        ("churn vs last year", "churn", MTD, False, None, (), "last-year", False),
        ("churn by owner", "churn", MTD, False, "csm", (), "previous", False),
        ("mrr by currencies", "mrr", TODAY, False, "currency", (), "previous", False),
        ("mrr by plan by plan", "mrr", TODAY, False, "plan", (), "previous", False),
        # Periods typed with spaces.
        ("churn last quarter", "churn", LAST_QUARTER, True, None, (), "previous", False),
        (
            "churn last 30 days",
            "churn",
            ("2026-10-25", "2026-11-23"),
            True,
            None,
            (),
            "previous",
            False,
        ),
        (
            "mrr 2026-01-01 .. 2026-03-31",
            "mrr",
            ("2026-01-01", "2026-03-31"),
            True,
            None,
            (),
            "previous",
            False,
        ),
        # Metrics typed with spaces, ids and aliases.
        ("net new mrr last-month", "net-new-mrr", LAST_MONTH, True, None, (), "previous", False),
        ("Net New MRR", "net-new-mrr", MTD, False, None, (), "previous", False),
        (
            "gross revenue churn ytd",
            "gross-revenue-churn",
            ("2026-01-01", "2026-11-23"),
            True,
            None,
            (),
            "previous",
            False,
        ),
        ("health score", "health", TODAY, False, None, (), "previous", False),
        ("logo_churn", "churn", MTD, False, None, (), "previous", False),
        # French.
        (
            "churn mois-dernier par offre où segment=entreprise vs année-dernière partager",
            "churn",
            LAST_MONTH,
            True,
            "plan",
            (("segment", "entreprise"),),
            "last-year",
            True,
        ),
        (
            "Désabonnement trimestre-dernier par propriétaire si devise=EUR et offre=Scale",
            "churn",
            LAST_QUARTER,
            True,
            "csm",
            (("currency", "EUR"), ("plan", "Scale")),
            "previous",
            False,
        ),
        (
            "churn ou segment=PME vs précédent",
            "churn",
            MTD,
            False,
            None,
            (("segment", "PME"),),
            "previous",
            False,
        ),
        ("churn vs l'an dernier", "churn", MTD, False, None, (), "last-year", False),
        ("churn vs l’an dernier", "churn", MTD, False, None, (), "last-year", False),
        ("churn vs precedent par devise", "churn", MTD, False, "currency", (), "previous", False),
        (
            "churn où csm=«Camille Martin»",
            "churn",
            MTD,
            False,
            None,
            (("csm", "Camille Martin"),),
            "previous",
            False,
        ),
        ("clients aujourd'hui", "customers", TODAY, True, None, (), "previous", False),
    ],
)
def test_metric_questions(
    text: str,
    metric: str,
    period: tuple[str, str],
    given: bool,
    by: str | None,
    filters: tuple[tuple[str, str], ...],
    compare: str,
    share: bool,
) -> None:
    q = query(text)
    assert (q.metric.id, span(q), q.period_given) == (metric, period, given)
    assert (q.by, q.filters, q.compare, q.share) == (by, filters, compare, share)
    assert q.period.timezone == "Europe/Paris"


def test_periods_follow_the_fiscal_calendar() -> None:
    q = query("churn 2026-Q1", fiscal=FiscalCalendar(start_month=4))
    assert span(q) == ("2025-04-01", "2025-06-30")
    assert q.period.fiscal == FiscalCalendar(start_month=4)


def test_the_default_period_is_today_in_the_time_zone() -> None:
    late = datetime(2026, 11, 30, 23, 30, tzinfo=UTC)  # already 1 December in Paris
    paris = parse_command("mrr", now=late, timezone="Europe/Paris").query
    utc = parse_command("mrr", now=late, timezone="UTC").query
    assert paris is not None and utc is not None
    assert (paris.period.start, utc.period.start) == (date(2026, 12, 1), date(2026, 11, 30))


def test_every_metric_id_and_alias_is_understood() -> None:
    for metric in METRICS:
        for name in (metric.id, *metric.aliases):
            assert query(name).metric == metric
            assert query(name.replace("-", " ") + " last-month").metric == metric


def test_a_filter_value_may_be_200_characters() -> None:
    assert query("churn where csm=" + "x" * 200).filters == (("csm", "x" * 200),)


# --- Other commands ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind", "metric", "argument"),
    [
        ("", "help", None, ""),
        ("   \n", "help", None, ""),
        ('"" “ ”', "help", None, ""),
        ("help", "help", None, ""),
        ("AIDE", "help", None, ""),
        ("help me please", "help", None, ""),
        ("help churn", "explain", "churn", ""),
        ("list", "list", None, ""),
        ("liste", "list", None, ""),
        ("explain churn", "explain", "churn", ""),
        ("explique net new mrr", "explain", "net-new-mrr", ""),
        ("Définition désabonnement", "explain", "churn", ""),
        ("expliquer nps", "explain", "nps", ""),
        ("account Acme Corp", "account", None, "Acme Corp"),
        ('compte "Le Petit Café "', "account", None, "Le Petit Café"),
        (
            "digest subscribe #cs weekly mon 09:00 Europe/Paris",
            "digest",
            None,
            "subscribe #cs weekly mon 09:00 Europe/Paris",
        ),
        ('digest add "unclosed', "digest", None, 'add "unclosed'),
        ("DIGEST", "digest", None, ""),
    ],
)
def test_commands(text: str, kind: str, metric: str | None, argument: str) -> None:
    command = parse(text)
    assert command.kind == kind
    assert (command.metric.id if command.metric else None) == metric
    assert command.argument == argument
    assert command.query is None


# --- Errors ------------------------------------------------------------------------------------


def test_unknown_metric_suggests_the_closest() -> None:
    err = error("chrun")
    assert isinstance(err, UnknownMetric)
    assert err.name == "chrun"
    assert err.suggestions[0] == "churn"
    assert err.message.startswith("I don't know the metric 'chrun'. Did you mean `churn`")
    assert err.example == "/kpi churn"


def test_unknown_metric_example_keeps_the_rest_of_the_question() -> None:
    err = error('chrun last-quarter by plan where csm="Camille Martin"')
    assert err.example == '/kpi churn last-quarter by plan where csm="Camille Martin"'


def test_unknown_metric_with_spaces_is_suggested_whole() -> None:
    err = error("net new mr last-month")
    assert isinstance(err, UnknownMetric)
    assert err.name == "net new mr"
    assert "net-new-mrr" in err.suggestions
    assert err.example == "/kpi net-new-mrr last-month"


def test_unknown_metric_without_close_names_points_to_the_list() -> None:
    err = error("xyzzy")
    assert isinstance(err, UnknownMetric)
    assert err.suggestions == ()
    assert "see `/kpi list`" in err.message
    assert err.example == "/kpi list"


@pytest.mark.parametrize(
    ("text", "suggestions", "example"),
    [
        ("last-month churn", ("churn",), "/kpi churn last-month"),
        ("by plan", (), "/kpi churn by plan"),
        ("segment=smb nps", ("nps",), "/kpi nps segment=smb"),
    ],
)
def test_the_metric_comes_first(text: str, suggestions: tuple[str, ...], example: str) -> None:
    err = error(text)
    assert isinstance(err, UnknownMetric)
    assert "Start with the metric" in err.message
    assert (err.suggestions, err.example) == (suggestions, example)


@pytest.mark.parametrize(
    ("text", "expected", "suggestions"),
    [
        ("mrr by region", ["'region'", *(f"`by {d}`" for d in DIMENSIONS)], DIMENSIONS),
        ("mrr by segmnt", ["'segmnt'", "`by segment`"], ("segment",)),
        ("mrr by", ["Break down by what?", "`by currency`"], ()),
        ("churn by plan by segment", ["One breakdown at a time"], ("plan", "segment")),
        ("churn where", ["`where` needs `dimension=value`"], ()),
        ("churn where enterprise", ["`where` needs `dimension=value`", "'enterprise'"], ()),
        ("churn where plan=a and", ["`and` needs `dimension=value`"], ()),
        ("churn where region=emea", ["can't filter on 'region'", "plan, segment, csm"], DIMENSIONS),
        ("churn where plan=", ["`plan=` needs a value", "where plan=scale"], ()),
        ('churn where csm=""', ["`csm=` needs a value"], ()),
        ("churn where plan=a where plan=b", ["Filter on plan only once"], ()),
        ("churn where plan=" + "x" * 201, ["200 characters"], ()),
        ("churn last-month ytd", ["One period", "'last-month'", "'ytd'"], ()),
        ("churn last-month foo", ["I didn't understand 'foo'"], ()),
        ("churn and by plan", ["I didn't understand 'and'"], ()),
        (
            "churn last-quater",
            ["period 'last-quater'", "Did you mean 'last-quarter'"],
            ("last-quarter",),
        ),
        ("churn 2026-Q5", ["quarters go from 1 to 4"], ()),
        ("churn vs", ["`vs previous` or `vs last-year`"], ("previous", "last-year")),
        ("churn vs tomorrow", ["`vs previous` or `vs last-year`"], ("previous", "last-year")),
        ("churn vs previous vs last-year", ["Compare with one thing"], ()),
        ("churn plan", ["'plan'", "`by plan`", "`where plan=scale`"], ("by plan",)),
        ("churn nps", ["'nps'", "one metric at a time"], ("churn", "nps")),
        ('churn where csm="Camille', ["quote is not closed"], ()),
        ("churn " + "x" * 500, ["506 characters", "under 500"], ()),
        ("explain", ["Which metric"], ()),
        ("explain churn last-month", ["`explain` takes only a metric"], ()),
        ("account", ["Which account?"], ()),
        ('compte ""', ["Which account?"], ()),
        ("list churn", ["`list` takes nothing", "'churn'"], ()),
    ],
)
def test_bad_queries(text: str, expected: list[str], suggestions: tuple[str, ...]) -> None:
    err = error(text)
    assert isinstance(err, BadQuery)
    for fragment in expected:
        assert fragment in err.message
    assert err.suggestions == suggestions
    assert err.example.startswith("/kpi ")


def test_explain_an_unknown_metric() -> None:
    err = error("explain chrun")
    assert isinstance(err, UnknownMetric)
    assert (err.suggestions[0], err.example) == ("churn", "/kpi explain churn")


def test_bad_period_becomes_a_bad_query_with_a_period_example() -> None:
    err = error("churn 2026-13")
    assert isinstance(err, BadQuery) and not isinstance(err, BadPeriod)
    assert "months go from 1 to 12" in err.message
    assert err.example == "/kpi churn last-quarter"
    assert err.example.split()[-1] in PERIOD_EXAMPLES


def test_long_tokens_are_shortened_in_messages() -> None:
    err = error("churn " + "y" * 300)
    assert "y" * 40 + "…" in err.message
    assert "y" * 41 not in err.message


def test_caller_mistakes_are_not_query_errors() -> None:
    with pytest.raises(ValueError, match="aware") as naive:
        parse_command("churn", now=datetime(2026, 11, 23), timezone="UTC")
    with pytest.raises(ValueError, match="time zone") as zone:
        parse_command("churn", now=NOW, timezone="Mars/Olympus")
    assert not isinstance(naive.value, QueryError)
    assert not isinstance(zone.value, QueryError)


# --- Properties: hostile input yields a QueryError, never a crash --------------------------------

NAMES = sorted({n for m in METRICS for n in (m.id, *m.aliases)} | {"net new mrr", "health score"})
WORDS = [
    *PERIOD_EXAMPLES,
    *DIMENSIONS,
    "by", "par", "where", "où", "si", "and", "et", "vs", "previous", "last-year", "précédent",
    "share", "partager", "help", "list", "explain", "account", "digest", "aide", "liste", "compte",
    "=", '"', "“", "»", "..", "last", "30", "days", "l'an", "dernier", "offre", "owner",
    "segment=enterprise", 'csm="Camille Martin"', "plan=", "=scale", "region=emea", "2026-Q5",
]  # fmt: skip
pieces = st.one_of(
    st.sampled_from(NAMES),
    st.sampled_from(WORDS),
    st.text(max_size=8),
    st.text(alphabet="-=\"'.:0123456789qwQW", max_size=10),
)


@st.composite
def grammar_ish(draw: st.DrawFn) -> str:
    parts = draw(st.lists(pieces, min_size=0, max_size=8))
    separator = draw(st.sampled_from([" ", "  ", "\t", "\n"]))
    return draw(st.sampled_from(["", " "])) + separator.join(parts)


def check_total(text: str) -> None:
    try:
        command = parse(text)
    except QueryError as err:
        assert err.message.strip()
        assert err.example.startswith("/kpi ")
        assert all(isinstance(s, str) and s for s in err.suggestions)
        assert len(err.message) < 400
    else:
        assert (command.kind == "metric") == (command.query is not None)
        assert (command.kind == "explain") == (command.metric is not None)


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=100))
def test_any_text_gives_a_command_or_a_query_error(text: str) -> None:
    check_total(text)


@settings(max_examples=400, deadline=None)
@given(text=grammar_ish())
def test_grammar_like_text_gives_a_command_or_a_query_error(text: str) -> None:
    check_total(text)


@settings(max_examples=50, deadline=None)
@given(text=st.text(min_size=480, max_size=520))
def test_long_text_gives_a_command_or_a_query_error(text: str) -> None:
    check_total(text)


@st.composite
def valid_questions(
    draw: st.DrawFn,
) -> tuple[str, str, bool, str | None, dict[str, str], str, bool]:
    metric = draw(st.sampled_from(METRICS))
    period = draw(st.sampled_from(["", *PERIOD_EXAMPLES]))
    by = draw(st.sampled_from([None, *DIMENSIONS]))
    filters = draw(
        st.dictionaries(
            st.sampled_from(DIMENSIONS),
            st.text(alphabet="abcXYZ é-", min_size=1, max_size=12).filter(str.strip),
            max_size=3,
        )
    )
    compare = draw(st.sampled_from(["previous", "last-year"]))
    share = draw(st.booleans())
    options = [
        *([period] if period else []),
        *([f"by {by}"] if by else []),
        *(f'where {dim}="{value}"' for dim, value in filters.items()),
        f"vs {compare}",
        *(["share"] if share else []),
    ]
    text = " ".join([metric.id, *draw(st.permutations(options))])
    return text, metric.id, bool(period), by, filters, compare, share


@settings(max_examples=200, deadline=None)
@given(question=valid_questions())
def test_valid_questions_parse_in_any_order(
    question: tuple[str, str, bool, str | None, dict[str, str], str, bool],
) -> None:
    text, metric, given, by, filters, compare, share = question
    q = query(text)
    assert (q.metric.id, q.period_given, q.by) == (metric, given, by)
    assert (q.compare, q.share) == (compare, share)
    assert dict(q.filters) == {dim: value.strip() for dim, value in filters.items()}
