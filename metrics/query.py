"""Parse what a user types after `/kpi` (or `kpibot kpi`) into a `Command`; pure, no database.

Grammar (SPEC.md, "Slash command /kpi"), case- and accent-insensitive, whitespace-separated tokens:
`<metric> [period] [by <dim>] [where <dim>=<value>]... [vs previous|last-year] [share]`, plus
`help`, `list`, `explain <metric>`, `account <name>`, `digest <text>`; empty text is help.

Conventions chosen here:

- The metric comes first and may be typed with spaces (`net new mrr`, `health score`): the longest
  run of up to four leading tokens that names a metric wins. A period may be typed with spaces too
  (`last quarter`, `last 30 days`). Everything after the metric comes in any order.
- Filters: `where`/`où`/`si` introduce one, `and`/`et` chain another, and a bare `dim=value` works
  as well (`dim = value` with spaces too). Double quotes (also “ ” « ») group words into one token:
  `where csm="Camille Martin"`. Values keep their case; one value per dimension.
- `help <metric>` is `explain <metric>`. `account` and `digest` keep the rest of the text as typed.
- Every problem with the text is a `QueryError`: `message` is short English Slack mrkdwn (things to
  type in backticks), `suggestions` are words to type (metric ids, dimensions, periods), `example`
  is a plain command starting with `/kpi ` and no backticks (the CLI swaps the prefix).
- A naive `now` or an unknown `timezone` is the caller's bug: `ValueError`, before the text is read.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Literal

from metrics.periods import BadPeriod, FiscalCalendar, Period, parse_period
from metrics.registry import METRICS, Metric, find_metric, normalise_name, suggest_metrics

DIMENSIONS = ("plan", "segment", "csm", "currency")
MAX_TEXT = 500
MAX_VALUE = 200
EXAMPLE = "/kpi churn last-quarter by plan"

Compare = Literal["previous", "last-year"]
CommandKind = Literal["metric", "help", "list", "explain", "account", "digest"]

_CALENDAR = FiscalCalendar()  # frozen, so safe as a default argument
_SHOWN = 40  # characters of the user's text echoed in a message
_MAX_WORDS = 4  # the most tokens a metric or period typed with spaces may span
_DIMENSION_ALIASES = {
    **dict.fromkeys(("plan", "plans", "offre", "offres"), "plan"),
    **dict.fromkeys(("segment", "segments"), "segment"),
    **dict.fromkeys(("csm", "csms", "owner", "owners", "proprietaire", "proprietaires"), "csm"),
    **dict.fromkeys(("currency", "currencies", "devise", "devises"), "currency"),
}
_FILTER_EXAMPLES = {
    "plan": "plan=scale",
    "segment": "segment=enterprise",
    "csm": 'csm="Camille Martin"',
    "currency": "currency=EUR",
}
_COMMANDS: dict[str, CommandKind] = {
    **dict.fromkeys(("help", "aide", "?", "-h", "--help"), "help"),
    **dict.fromkeys(("list", "liste"), "list"),
    **dict.fromkeys(("explain", "explique", "expliquer", "definition"), "explain"),
    **dict.fromkeys(("account", "compte"), "account"),
    **dict.fromkeys(("digest",), "digest"),
}
_COMPARES: dict[str, Compare] = {
    **dict.fromkeys(("previous", "prev", "precedent", "precedente"), "previous"),
    **dict.fromkeys(("last-year", "annee-derniere", "l-an-dernier"), "last-year"),
}
_BY = frozenset({"by", "par"})
_WHERE = frozenset({"where", "ou", "si"})
_AND = frozenset({"and", "et", "&"})
_VS = frozenset({"vs", "vs.", "versus"})
_SHARE = frozenset({"share", "partager", "partage"})
_KEYWORDS = _BY | _WHERE | _AND | _VS | _SHARE
_QUOTES = '"“”«»'
_QUOTE = re.compile(f"[{_QUOTES}]")
_TOKEN = re.compile(rf"(?:[^\s{_QUOTES}]|[{_QUOTES}][^{_QUOTES}]*[{_QUOTES}])+")
_METRIC_NAMES = [normalise_name(name) for m in METRICS for name in (m.id, *m.aliases)]


@dataclass(frozen=True)
class KpiQuery:
    """One KPI question: a metric over a period, optionally broken down, filtered and shared."""

    metric: Metric
    period: Period
    period_given: bool  # False when the metric's default period was used
    by: str | None = None  # one of DIMENSIONS
    filters: tuple[tuple[str, str], ...] = ()  # (dimension, value as typed)
    compare: Compare = "previous"
    share: bool = False


@dataclass(frozen=True)
class Command:
    """What the user asked for: a KPI answer, help, the metric list, a definition, an account…"""

    kind: CommandKind
    query: KpiQuery | None = None  # kind == "metric"
    metric: Metric | None = None  # kind == "explain"
    argument: str = ""  # kind == "account": the account name; "digest": the rest, unparsed


class QueryError(ValueError):
    """What was not understood, shown as help: `message`, `suggestions` and an `example`."""

    def __init__(
        self, message: str, *, suggestions: tuple[str, ...] = (), example: str = EXAMPLE
    ) -> None:
        super().__init__(message)
        self.message = message
        self.suggestions = suggestions
        self.example = example


class UnknownMetric(QueryError):
    """The text names no metric kpibot knows; `name` is what the user typed in its place."""

    def __init__(
        self, name: str, message: str, *, suggestions: tuple[str, ...] = (), example: str = EXAMPLE
    ) -> None:
        super().__init__(message, suggestions=suggestions, example=example)
        self.name = name


class BadQuery(QueryError):
    """Any other problem with the text: a bad period, dimension, filter, comparison or token."""


def parse_command(
    text: str, *, now: datetime, timezone: str, fiscal: FiscalCalendar = _CALENDAR
) -> Command:
    """Return the command `text` asks for; raise only `QueryError` subclasses for its content."""
    resolve = partial(parse_period, now=now, timezone=timezone, fiscal=fiscal)
    resolve("today")  # a naive `now` or unknown zone raises ValueError here, whatever the text
    stripped = text.strip()
    if len(stripped) > MAX_TEXT:
        raise BadQuery(f"That is {len(stripped)} characters; keep a question under {MAX_TEXT}.")
    if not stripped:
        return Command("help")
    head, *tail = stripped.split(maxsplit=1)
    rest = tail[0].strip() if tail else ""
    kind = _COMMANDS.get(_word(head))
    if kind == "help":
        metric = find_metric(rest) if rest else None
        return Command("explain", metric=metric) if metric else Command("help")
    if kind == "list":
        if rest:
            raise BadQuery(f"`list` takes nothing after it; I didn't understand {_shown(rest)}.")
        return Command("list")
    if kind == "explain":
        return Command("explain", metric=_explained_metric(rest))
    if kind == "account":
        name = _unquote(rest)
        if not name:
            raise BadQuery("Which account? Give its name.", example="/kpi account Acme Corp")
        return Command("account", argument=name)
    if kind == "digest":
        return Command("digest", argument=rest)
    tokens = _tokens(stripped)
    if not tokens:  # only quotes
        return Command("help")
    metric, used = _leading_metric(tokens)
    if metric is None:
        raise _no_metric(tokens, resolve)
    return Command("metric", query=_QueryParser(tokens, metric, resolve).parse(used))


class _QueryParser:
    """Reads the options after the metric, one at a time, into the fields of a KpiQuery."""

    def __init__(self, tokens: list[str], metric: Metric, resolve: Callable[[str], Period]):
        self.tokens = tokens
        self.metric = metric
        self.resolve = resolve
        self.period: Period | None = None
        self.period_text = ""
        self.by: str | None = None
        self.filters: list[tuple[str, str]] = []
        self.compare: Compare | None = None
        self.share = False

    def parse(self, start: int) -> KpiQuery:
        i, after_filter = start, False
        while i < len(self.tokens):
            word = _word(self.tokens[i])
            if word in _WHERE or (word in _AND and after_filter):
                i, after_filter = self.filter(i + 1, after=self.tokens[i]), True
            elif "=" in self.tokens[i] or self.token(i + 1).startswith("="):
                i, after_filter = self.filter(i, after=None), True
            elif word in _BY or word in _VS:
                i, after_filter = (self.breakdown if word in _BY else self.comparison)(i), False
            elif word in _SHARE:
                i, after_filter, self.share = i + 1, False, True
            else:
                i, after_filter = self.period_at(i), False
        given, period = self.period is not None, self.period
        period = period or self.resolve(self.metric.default_period)
        filters, compare = tuple(self.filters), self.compare or "previous"
        return KpiQuery(self.metric, period, given, self.by, filters, compare, self.share)

    def token(self, i: int) -> str:
        return self.tokens[i] if i < len(self.tokens) else ""

    def example(self, option: str) -> str:
        return f"/kpi {self.metric.id} {option}"

    def bad(self, message: str, option: str, suggestions: tuple[str, ...] = ()) -> BadQuery:
        return BadQuery(message, suggestions=suggestions, example=self.example(option))

    def breakdown(self, i: int) -> int:
        dims = ", ".join(f"`by {d}`" for d in DIMENSIONS)
        typed = self.token(i + 1)
        if not typed:
            raise self.bad(f"Break down by what? Use {dims}.", "by plan")
        dimension = _DIMENSION_ALIASES.get(_word(typed))
        if dimension is None:
            message = f"I can't break down by {_shown(typed)}. Use {dims}."
            raise self.bad(message, "by plan", _close_dimensions(typed))
        if self.by not in (None, dimension):
            message = f"One breakdown at a time: `by {self.by}` or `by {dimension}`."
            raise self.bad(message, f"by {dimension}", (self.by or "", dimension))
        self.by = dimension
        return i + 2

    def filter(self, i: int, *, after: str | None) -> int:
        """Read `dim=value` (or `dim = value`) at `i`; return the index after it."""
        typed, next_token = self.token(i), self.token(i + 1)
        if "=" in typed:
            left, value = typed.split("=", 1)
            used = 1
        elif typed and next_token.startswith("="):
            left, value = typed, next_token[1:]
            used = 2
        else:
            got = f"; I got {_shown(typed)}" if typed else ""
            message = f"`{after}` needs `dimension=value`, like `segment=enterprise`{got}."
            raise self.bad(message, "where segment=enterprise")
        following = self.token(i + used)
        if not value.strip() and _word(following) not in _KEYWORDS and "=" not in following:
            value, used = self.token(i + used), used + 1
        dimension = _DIMENSION_ALIASES.get(_word(left))
        if dimension is None:
            message = f"I can't filter on {_shown(left)}. Filter on {', '.join(DIMENSIONS)}."
            raise self.bad(message, "where segment=enterprise", _close_dimensions(left))
        value = value.strip()
        sample = self.example(f"where {_FILTER_EXAMPLES[dimension]}")
        if not value:
            raise BadQuery(f"`{dimension}=` needs a value, like `{sample[5:]}`.", example=sample)
        if len(value) > MAX_VALUE:
            raise BadQuery(f"A filter value fits in {MAX_VALUE} characters.", example=sample)
        if any(dim == dimension for dim, _ in self.filters):
            raise BadQuery(f"Filter on {dimension} only once: one value per dimension.")
        self.filters.append((dimension, value))
        return i + used

    def comparison(self, i: int) -> int:
        for n in range(3, 0, -1):
            words = self.tokens[i + 1 : i + 1 + n]
            compare = _COMPARES.get(_word("-".join(words))) if len(words) == n else None
            if compare is None:
                continue
            if self.compare not in (None, compare):
                raise BadQuery("Compare with one thing: `vs previous` or `vs last-year`.")
            self.compare = compare
            return i + 1 + n
        message = "Compare with `vs previous` or `vs last-year`."
        raise self.bad(message, "last-quarter vs last-year", ("previous", "last-year"))

    def period_at(self, i: int) -> int:
        """Read the period at `i`, maybe typed over several tokens; return the index after it."""
        period, used = None, 1
        for n in range(min(_MAX_WORDS, len(self.tokens) - i), 1, -1):
            words = self.tokens[i : i + n]
            if not any(_word(w) in _KEYWORDS or "=" in w for w in words):
                period = _first_period(("-".join(words), "".join(words)), self.resolve)
                if period is not None:
                    used = n
                    break
        typed = " ".join(self.tokens[i : i + used])
        try:
            period = period or self.resolve(typed)
        except BadPeriod as error:
            raise self.not_understood(typed, error) from None
        if self.period is not None:
            message = f"One period, please: I read {_shown(self.period_text)} and {_shown(typed)}."
            raise self.bad(message, self.period_text)
        self.period, self.period_text = period, typed
        return i + used

    def not_understood(self, typed: str, error: BadPeriod) -> BadQuery:
        """Return the error for a token that is neither an option nor a period."""
        if error.reason or error.suggestion:  # a period, but not a valid one
            suggestions = (error.suggestion,) if error.suggestion else ()
            return self.bad(str(error), "last-quarter", suggestions)
        shown, dim, other = _shown(typed), _DIMENSION_ALIASES.get(_word(typed)), find_metric(typed)
        if dim is not None:
            hint = f"to break down, write `by {dim}`; to filter, `where {_FILTER_EXAMPLES[dim]}`"
            return self.bad(f"I didn't understand {shown}: {hint}.", f"by {dim}", (f"by {dim}",))
        if other is not None:
            message = f"I didn't understand {shown}: ask about one metric at a time."
            return BadQuery(
                message, suggestions=(self.metric.id, other.id), example=f"/kpi {other.id}"
            )
        message = (
            f"I didn't understand {shown}. After the metric come a period, `by …`, `where …=…`, "
            "`vs previous|last-year` or `share`."
        )
        return self.bad(message, "last-quarter by plan")


def _explained_metric(rest: str) -> Metric:
    metric, used = _leading_metric(rest.split())
    if metric is not None and used == len(rest.split()):
        return metric
    if metric is not None:
        message = f"`explain` takes only a metric, like `/kpi explain {metric.id}`."
        raise BadQuery(message, example=f"/kpi explain {metric.id}")
    if not rest:
        raise BadQuery("Which metric should I explain?", example="/kpi explain churn")
    suggestions = tuple(suggest_metrics(rest))
    raise _unknown(rest, suggestions, example=f"/kpi explain {(*suggestions, 'churn')[0]}")


def _leading_metric(tokens: list[str]) -> tuple[Metric | None, int]:
    """Return the metric named by the longest run of leading tokens, and how many it used."""
    for n in range(min(_MAX_WORDS, len(tokens)), 0, -1):
        metric = find_metric(" ".join(tokens[:n]))
        if metric is not None:
            return metric, n
    return None, 0


def _no_metric(tokens: list[str], resolve: Callable[[str], Period]) -> UnknownMetric:
    """Return the error for a question whose first tokens name no metric."""
    if _is_option(tokens[0], resolve):
        later = next((m for t in tokens if (m := find_metric(t))), None)
        first: tuple[str, ...] = (later.id,) if later else ()
        example = _example((*first, "churn")[0], [t for t in tokens if not find_metric(t)])
        see = "" if later else " (see `/kpi list`)"
        message = f"Start with the metric, as in `{example}`{see}."
        return UnknownMetric(tokens[0], message, suggestions=first, example=example)
    # The closest of the first one to three tokens, so that `net new mr` is read as one name.
    names = [" ".join(tokens[:n]) for n in range(1, min(3, len(tokens)) + 1)]
    name = max((n for n in names if len(n) <= _SHOWN), key=_closeness, default=tokens[0])
    suggestions = tuple(suggest_metrics(name)) if len(name) <= _SHOWN else ()
    n = names.index(name) + 1
    if not suggestions:
        return _unknown(tokens[0], (), example="/kpi list")
    return _unknown(name, suggestions, example=_example(suggestions[0], tokens[n:]))


def _unknown(name: str, suggestions: tuple[str, ...], *, example: str) -> UnknownMetric:
    if suggestions:
        names = " or ".join(f"`{s}`" for s in suggestions)
        message = f"I don't know the metric {_shown(name)}. Did you mean {names}?"
    else:
        message = f"I don't know the metric {_shown(name)}; see `/kpi list`."
    return UnknownMetric(name, message, suggestions=suggestions, example=example)


def _example(metric_id: str, options: list[str]) -> str:
    """Return `/kpi <metric> <options>` to copy, without the options when they are too long."""
    example = " ".join(["/kpi", metric_id, *map(_retype, options)])
    return example if len(example) <= 80 else f"/kpi {metric_id} last-quarter"


def _closeness(name: str) -> float:
    folded = _word(name)
    return max(difflib.SequenceMatcher(None, folded, known).ratio() for known in _METRIC_NAMES)


def _first_period(texts: tuple[str, ...], resolve: Callable[[str], Period]) -> Period | None:
    for text in texts:
        try:
            return resolve(text)
        except BadPeriod:
            pass
    return None


def _is_option(token: str, resolve: Callable[[str], Period]) -> bool:
    """Return whether `token` is something that belongs after the metric."""
    if _word(token) in _KEYWORDS or "=" in token:
        return True
    return _first_period((token,), resolve) is not None


def _tokens(text: str) -> list[str]:
    """Split on whitespace outside double quotes, dropping the quotes and empty tokens."""
    if sum(text.count(quote) for quote in _QUOTES) % 2:
        raise BadQuery("A quote is not closed.", example='/kpi churn where csm="Camille Martin"')
    tokens = (_QUOTE.sub("", token) for token in _TOKEN.findall(text))
    return [token for token in tokens if token.strip()]


def _retype(token: str) -> str:
    """Return `token` as the user would type it again, quoting a value with spaces."""
    if not any(char.isspace() for char in token):
        return token
    left, sep, value = token.partition("=")
    return f'{left}="{value}"' if sep else f'"{token}"'


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] in _QUOTES and text[-1] in _QUOTES:
        text = text[1:-1].strip()
    return text


def _close_dimensions(typed: str) -> tuple[str, ...]:
    close = difflib.get_close_matches(_word(typed), list(_DIMENSION_ALIASES), n=3, cutoff=0.6)
    found = tuple(dict.fromkeys(_DIMENSION_ALIASES[c] for c in close))
    return found or DIMENSIONS


def _word(token: str) -> str:
    """Fold case, accents, spaces and apostrophes so keywords match however they are typed."""
    return normalise_name(token.replace("’", "'"))


def _shown(text: str) -> str:
    text = text.strip()
    return f"'{text}'" if len(text) <= _SHOWN else f"'{text[:_SHOWN]}…'"
