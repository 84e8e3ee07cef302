"""Hostile input: every event either applies or is rejected with a reason; never a crash."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from storage.apply import IngestConfig
from storage.db import session_scope
from storage.ingest import ingest_events
from storage.schemas import DATA_MODELS, EventRejected, parse_event
from storage.tables import EventLog
from tests.builders import ingest, make_response, make_subscription
from tests.storage.sources import test_stripe as stripe

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
FIELD_VALUES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
    | st.sampled_from(["USD", "XYZ", "eur", "", "1e400", "-5", "NaN", "2026-13-01", "9" * 40])
    | st.lists(st.text(max_size=5), max_size=3)
)
KNOWN_FIELDS = sorted({name for model in DATA_MODELS.values() for name in model.model_fields})


@st.composite
def native_events(draw):
    """Events of known types whose data fields take arbitrary, often wrong, values."""
    data = draw(st.dictionaries(st.sampled_from(KNOWN_FIELDS), FIELD_VALUES, max_size=10))
    return {
        "id": draw(st.text(min_size=1, max_size=10)),
        "type": draw(st.sampled_from(sorted(DATA_MODELS))),
        "occurred_at": draw(
            st.sampled_from(
                [
                    "2026-01-01T00:00:00Z",
                    "2026-01-01",
                    "yesterday",
                    5,
                    "0001-01-01T00:00:00+01:00",  # the calendar's ends: no zone can move them
                    "9999-12-31T23:59:59-01:00",
                ]
            )
        ),
        "data": data,
    }


@given(st.one_of(JSON, native_events()))
@settings(max_examples=400)
def test_parse_event_accepts_or_rejects_with_a_reason(value):
    try:
        event = parse_event(value)
    except EventRejected as rejected:
        assert rejected.reason.strip()
    else:
        assert event.event_id and event.type


@given(st.lists(st.one_of(native_events(), JSON), min_size=1, max_size=8))
@settings(
    max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None
)
def test_hostile_batches_are_logged_and_never_half_applied(session_factory, batch):
    good = make_subscription("2026-01-01")
    report = ingest(session_factory, [good, *batch])
    assert report.total == len(batch) + 1
    assert all(r.reason for r in report.rejections)
    with session_scope(session_factory) as session:
        logged = session.scalar(select(func.count()).select_from(EventLog))
    assert logged >= 1


def test_huge_and_negative_amounts_and_unknown_currencies_are_rejected(session_factory):
    cases = {
        "amount": ["1e400", "-10", 10**20, "NaN", True],
        "currency": ["XYZ", "", 5, None],
        "quantity": [-1, 1.5, "3", 10**12],
        "status": ["gone", None],
    }
    for field, values in cases.items():
        for value in values:
            broken = make_subscription("2026-01-01")
            broken["data"][field] = value
            report = ingest(session_factory, [broken])
            assert report.rejected == 1, (field, value)
            assert report.rejections[0].reason.startswith(f"data.{field}"), report.rejections[0]


def test_nul_characters_are_rejected_not_a_crash(session_factory):
    nul = make_subscription("2026-01-01", event_id="evt-\x00")
    nul_in_data = make_subscription("2026-01-01", account_id="acc-\x00")
    report = ingest(session_factory, [nul, nul_in_data, make_subscription("2026-01-02")])
    assert (report.applied, report.rejected) == (1, 2)
    assert all("NUL" in r.reason for r in report.rejections)


def test_a_nul_in_a_providers_payload_where_kpibot_reads_nothing_is_stored_and_applied(
    session_factory,
):
    """Stripe metadata may hold a NUL: the stored body keeps it escaped, the event applies."""
    payload = stripe.stripe_event(
        "customer.subscription.created",
        stripe.subscription(metadata={"note": "imported\x00"}),
        event_id="evt_nul",
    )
    [mapped] = stripe.deliver(payload)
    with session_scope(session_factory) as session:
        report = ingest_events(session, [mapped.item()], config=IngestConfig(), source="stripe")
    assert (report.applied, report.rejected) == (1, 0), report.rejections
    with session_scope(session_factory) as session:
        [(status, body)] = session.execute(select(EventLog.status, EventLog.body)).all()
    assert status == "applied" and "imported\\u0000" in body


def test_an_event_rejected_for_a_nul_keeps_its_id_so_a_fixed_resend_takes_its_place(
    session_factory,
):
    broken = make_response("2026-02-01", score=3, comment="bad\x00text", response_id="resp-nul")
    report = ingest(session_factory, [broken])
    assert report.rejected == 1 and report.rejections[0].event_id == broken["id"]
    fixed = {**broken, "data": {**broken["data"], "comment": "bad text"}}
    assert ingest(session_factory, [fixed]).applied == 1
    with session_scope(session_factory) as session:
        assert session.execute(select(EventLog.status)).scalars().all() == ["applied"]
