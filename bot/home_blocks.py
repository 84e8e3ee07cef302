"""Block Kit for one account (`/kpi account <name>`) and the App Home tab, built by pure functions.

- `account_message` returns `{"text": fallback, "blocks": [...]}` like the builders of
  `bot/blocks.py`; `home_view` returns the view `views.publish` takes (`{"type": "home", …}`).
- Numbers, money and dates come from `metrics.format` (Babel), KPI wording from `metrics.answer`,
  so the App Home says what `/kpi` says. English, or French for a locale starting with "fr".
- Everything that comes from data (names, emails, comments, plans) is escaped for mrkdwn and cut
  to a length that keeps each block within Block Kit's limits; lists show their first items and
  say how many are left out, so any book or card fits (50 blocks a message, 100 a home tab).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bot.blocks import (
    MAX_BLOCKS,
    MAX_FALLBACK,
    MAX_FIELD_TEXT,
    MAX_FIELDS,
    MAX_TEXT,
    clip,
    context_block,
    escape,
    header_block,
    mrkdwn_text,
    section_block,
)
from bot.home_words import HOME_WORDS
from metrics.answer import main_input
from metrics.format import (
    format_change,
    format_count,
    format_day,
    format_instant,
    format_money,
    format_percent,
    format_score,
    format_value,
    language,
    not_available,
    rounded_change,
)

if TYPE_CHECKING:
    from metrics.accounts import AccountCard, Book, SurveyAnswer
    from metrics.health import AccountHealth
    from metrics.result import KpiResult

Block = dict[str, Any]

MAX_HOME_BLOCKS = 100  # Slack's limit for a home tab view
MAX_NAME = 80
MAX_COMMENT = 1500  # the full answer's comment on a card
MAX_SHORT_COMMENT = 150  # a detractor's comment in a list
MAX_LISTED = 50  # accounts in the home tab
MAX_ITEMS = 20  # renewals and detractors in the home tab

_BAND_EMOJI = {
    "green": ":large_green_circle:",
    "yellow": ":large_yellow_circle:",
    "red": ":red_circle:",
    None: ":white_circle:",
}


def account_message(card: AccountCard, *, locale: str, timezone: str) -> dict[str, Any]:
    """Return one account's card: figures, health and its signals, NPS, contacts, freshness."""
    words = HOME_WORDS[language(locale)]
    money = card.reporting_currency
    renewal = not_available(locale)
    if card.renewal is not None:
        amount = format_money(card.renewal.amount, money, locale)
        renewal = f"{format_day(card.renewal.due_on, locale)} · {amount}"
    since = format_day(card.customer_since, locale) if card.customer_since else None
    fields = [
        (words["mrr"], format_money(card.mrr, money, locale)),
        (words["plan"], card.plan),
        (words["segment"], card.segment),
        (words["owner"], card.owner_email),
        (words["since"], since),
        (words["renewal"], renewal),
    ]
    blocks = [
        header_block(card.name),
        {"type": "section", "fields": [_field(t, v, locale) for t, v in fields][:MAX_FIELDS]},
        section_block(_health_text(card.health, locale)),
        section_block(_surveys_text(card, locale)),
    ]
    if card.contacts:
        blocks.append(section_block(_contacts_text(card, locale)))
    if card.people_hidden:
        blocks.append(context_block([HOME_WORDS[language(locale)]["people_hidden"]]))
    as_of = _as_of(card.data_as_of, locale, timezone)
    figures = words["figures"].format(
        day=format_day(card.as_of, locale), zone=escape(timezone), currency=money
    )
    account_id = words["account_id"].format(id=clip(_code(card.account_id), MAX_NAME))
    blocks.append(context_block([f"{account_id} · {figures}", as_of]))
    return {"text": _fallback(_card_text(card, locale)), "blocks": blocks[:MAX_BLOCKS]}


def home_view(
    *,
    book: Book | None = None,
    headlines: Sequence[KpiResult] | None = None,
    locale: str,
    timezone: str,
    user_name: str | None = None,
) -> dict[str, Any]:
    """Return the App Home view: the user's book if they own accounts, else team headlines."""
    words = HOME_WORDS[language(locale)]
    name = " ".join((user_name or "").split())
    title = words["hello"].format(name=name) if name else "kpibot"
    blocks: list[Block] = [header_block(title)]
    data_as_of: datetime | None = None
    if book is not None and book.total_accounts:
        blocks += _book_blocks(book, locale)
        data_as_of = book.data_as_of
    elif headlines:
        blocks.append(section_block(f"*{words['team']}*"))
        blocks += [section_block(_headline_text(result, locale)) for result in headlines]
        data_as_of = next((r.data_as_of for r in headlines if r.data_as_of), None)
    else:
        blocks.append(section_block(words["nothing"]))
    footer = context_block([escape(words["hint"]), _as_of(data_as_of, locale, timezone)])
    return {"type": "home", "blocks": [*blocks[: MAX_HOME_BLOCKS - 1], footer]}


def _book_blocks(book: Book, locale: str) -> list[Block]:
    """The totals, band counts, account lines, renewals due and recent detractors of a book."""
    words = HOME_WORDS[language(locale)]
    money = book.currency
    count = book.total_accounts
    accounts = words["accounts"].format(n=format_count(count, locale), s="" if count == 1 else "s")
    totals = words["book_totals"].format(
        accounts=accounts,
        s="" if book.customers <= 1 or not locale.startswith("fr") else "s",
        customers=format_count(book.customers, locale),
        mrr=format_money(book.mrr, money, locale),
    )
    bands = " · ".join(
        f"{_BAND_EMOJI[band]} {format_count(book.bands.get(band or 'none', 0), locale)} "
        f"{words[band or 'none']}"
        for band in ("red", "yellow", "green", None)
    )
    lines = [
        f"{_BAND_EMOJI[a.health.band]} *{_name(a.name)}* — {format_money(a.mrr, money, locale)}"
        f" · {_score(a.health, locale)}"
        for a in book.accounts[:MAX_LISTED]
    ]
    left_out = count - len(lines)
    renewals = [
        f"{format_day(r.due_on, locale)} — *{_name(r.account_name)}* — "
        f"{format_money(r.amount, money, locale)}"
        for r in book.renewals[:MAX_ITEMS]
    ]
    detractors = [
        f":red_circle: *{_name(d.account_name)}* — {_answer(d.answer, locale)}"
        + (f" — “{_one_line(d.answer.comment, MAX_SHORT_COMMENT)}”" if d.answer.comment else "")
        for d in book.detractors[:MAX_ITEMS]
    ]
    days, recent = book.renewal_days, book.detractor_days
    return [
        section_block(f"*{words['book']}*{words['colon']} {totals}\n{bands}"),
        {"type": "divider"},
        *_listing(words["list_title"], lines, left_out, locale),
        {"type": "divider"},
        *_listing(
            words["renewals"].format(days=days) if renewals else "",
            renewals or [words["no_renewals"].format(days=days)],
            book.renewals_total - len(renewals),
            locale,
        ),
        *_listing(
            words["detractors"].format(days=recent) if detractors else "",
            detractors or [words["no_detractors"].format(days=recent)],
            book.detractors_total - len(detractors),
            locale,
        ),
    ]


def _listing(title: str, lines: list[str], left_out: int, locale: str) -> list[Block]:
    """A titled list as sections of at most MAX_TEXT characters, then how many are left out."""
    bullets = [f"• {line}" for line in lines] if title else lines
    if left_out > 0:
        bullets.append(
            HOME_WORDS[language(locale)]["more"].format(n=format_count(left_out, locale))
        )
    texts: list[str] = [title] if title else []
    for line in bullets:
        line = clip(line, MAX_TEXT)
        if texts and len(texts[-1]) + 1 + len(line) <= MAX_TEXT:
            texts[-1] += "\n" + line
        else:
            texts.append(line)
    return [section_block(text) for text in texts]


def _headline_text(result: KpiResult, locale: str) -> str:
    """One KPI in a few lines: label and period, value and change, its main input."""
    period = f"{result.period.label(locale)} ({result.period.range_label(locale)})"
    if result.period.label(locale) == result.period.range_label(locale):
        period = result.period.label(locale)
    unit, money = result.unit, result.currency
    if result.value is None:
        reason = f" — {escape(result.current.reason)}" if result.current.reason else ""
        value = f"*{not_available(locale)}*{reason}"
    else:
        value = f"*{format_value(result.value, unit, currency=money, locale=locale)}*"
    lines = [f"*{escape(result.label)}* — {escape(period)}", value]
    change = result.change
    if change is not None and result.previous_period is not None:
        shown = rounded_change(change, unit, money)
        good = (shown > 0) == result.higher_is_better
        emoji = _BAND_EMOJI[None if shown == 0 else "green" if good else "red"]
        arrow = "→" if shown == 0 else "↑" if shown > 0 else "↓"
        text = format_change(change, unit, currency=money, locale=locale)
        vs = "vs" if language(locale) == "en" else "par rapport à"
        previous = escape(result.previous_period.label(locale))
        lines[1] += f"  {emoji} {arrow} {text} {vs} {previous}"
    detail = main_input(result.metric, result.current.inputs, currency=money, locale=locale)
    if detail and result.value is not None:
        lines.append(escape(detail[:1].upper() + detail[1:]))
    return "\n".join(lines)


def _health_text(health: AccountHealth, locale: str) -> str:
    words = HOME_WORDS[language(locale)]
    title = f"*{words['health']}*{words['colon']}"
    if health.score is None:
        return f"{title} {_BAND_EMOJI[None]} {not_available(locale)} — {words['no_health']}"
    signals = " · ".join(
        f"{words.get(name, name)} {format_score(signal.score, locale)} "
        f"({format_percent(signal.weight * 100, locale)})"
        for name, signal in health.signals.items()
    )
    band = words[health.band or "none"]
    score = format_score(health.score, locale)
    return f"{title} {_BAND_EMOJI[health.band]} *{score}* ({band})\n{signals}"


def _surveys_text(card: AccountCard, locale: str) -> str:
    """The latest NPS (with its comment and respondent) and the previous one, the latest CSAT."""
    words = HOME_WORDS[language(locale)]
    colon = words["colon"]
    nps = _latest(card.nps, locale)
    if card.nps is not None:
        nps = f"{_BAND_EMOJI[_nps_band(card.nps)]} {nps}"
    lines = [f"*{words['nps']}*{colon} {nps}"]
    if card.nps is not None and card.nps.comment and card.nps.comment.strip():
        comment = clip(escape(card.nps.comment.strip()), MAX_COMMENT)
        lines.extend(f">{line}" for line in comment.splitlines() if line.strip())
    if card.previous_nps is not None:
        lines.append(f"{words['previous']}{colon} {_answer(card.previous_nps, locale)}")
    lines.append(f"*{words['csat']}*{colon} {_latest(card.csat, locale)}")
    return "\n".join(lines)


def _nps_band(answer: SurveyAnswer) -> str:
    """Red for a detractor (0–6 once rescaled to 0–10), yellow for a passive, green above."""
    rescaled, span = (answer.score - answer.scale_min) * 10, answer.scale_max - answer.scale_min
    return "red" if rescaled <= 6 * span else "green" if rescaled >= 9 * span else "yellow"


def _latest(answer: SurveyAnswer | None, locale: str) -> str:
    if answer is None:
        return HOME_WORDS[language(locale)]["no_answer"]
    who = " ".join((answer.respondent_name or "").split())
    respondent = _name(who) if who else ""
    if answer.respondent_email:
        email = clip(escape(answer.respondent_email), MAX_NAME)
        respondent = f"{respondent} ({email})" if respondent else email
    return _answer(answer, locale, bold=True) + (f" — {respondent}" if respondent else "")


def _answer(answer: SurveyAnswer, locale: str, *, bold: bool = False) -> str:
    """The score on its scale and the day it was given: "*3*/10 · 20 Nov 2026"."""
    score = f"*{answer.score}*" if bold else str(answer.score)
    if answer.scale_min in (0, 1):
        shown = f"{score}/{answer.scale_max}"
    else:
        shown = f"{score} ({answer.scale_min}–{answer.scale_max})"
    return f"{shown} · {format_day(answer.day, locale)}"


def _contacts_text(card: AccountCard, locale: str) -> str:
    words = HOME_WORDS[language(locale)]
    lines = [f"*{words['contacts']}*"]
    shown = 0
    for contact in card.contacts:
        parts = [p for p in (contact.name, contact.email, contact.phone) if p and p.strip()]
        line = " · ".join(_name(p) for p in parts)
        if sum(len(x) + 1 for x in lines) + len(line) > MAX_TEXT - 100:
            break
        lines.append(line)
        shown += 1
    if card.contacts_total > shown:
        lines.append(words["more"].format(n=format_count(card.contacts_total - shown, locale)))
    return "\n".join(lines)


def _card_text(card: AccountCard, locale: str) -> str:
    """The notification text: the account, MRR, health, latest NPS and renewal in one line each."""
    words = HOME_WORDS[language(locale)]
    colon = words["colon"]
    lines = [
        " ".join(card.name.split())[:MAX_NAME],
        f"{words['mrr']}{colon} {format_money(card.mrr, card.reporting_currency, locale)}",
        f"{words['health']}{colon} {_score(card.health, locale)}",
    ]
    if card.nps is not None:
        lines.append(f"{words['nps']}{colon} {_answer(card.nps, locale)}")
    if card.renewal is not None:
        amount = format_money(card.renewal.amount, card.reporting_currency, locale)
        due = format_day(card.renewal.due_on, locale)
        lines.append(f"{words['renewal']}{colon} {due} · {amount}")
    return "\n".join(lines)


def _score(health: AccountHealth, locale: str) -> str:
    """The score and its band, "61.5 (yellow)", or "n/a" without a score."""
    if health.score is None:
        return not_available(locale)
    band = HOME_WORDS[language(locale)][health.band or "none"]
    return f"{format_score(health.score, locale)} ({band})"


def _as_of(moment: datetime | None, locale: str, timezone: str) -> str:
    words = HOME_WORDS[language(locale)]
    if moment is None:
        return words["no_data"]
    return escape(words["as_of"].format(instant=format_instant(moment, timezone, locale)))


def _field(title: str, value: str | None, locale: str) -> dict[str, str]:
    shown = _name(value) if value and value.strip() else not_available(locale)
    return mrkdwn_text(clip(f"*{title}*\n{shown}", MAX_FIELD_TEXT))


def _name(text: str) -> str:
    """A name, email or other short text from data: one line, escaped, of a readable length."""
    return clip(escape(" ".join(text.splitlines()).strip()), MAX_NAME)


def _one_line(text: str, limit: int) -> str:
    return clip(escape(" ".join(text.split())), limit)


def _code(text: str) -> str:
    return escape(" ".join(text.replace("`", "'").split()))


def _fallback(text: str) -> str:
    return clip(escape(text).strip() or "kpibot", MAX_FALLBACK)
