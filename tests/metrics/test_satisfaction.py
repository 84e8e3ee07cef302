"""KPIS.md's satisfaction examples (NPS, CSAT, mean CSAT), built from survey events."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from tests.builders import ingest, kpi, make_account, make_response


def answers(
    scores: list[int], *, kind: str = "nps", when: str = "2026-10-10", **extra: Any
) -> list[dict[str, Any]]:
    """One survey.responded event per score, all on the same day."""
    return [make_response(when, score=score, kind=kind, **extra) for score in scores]


def test_seed_nps_50_from_60_promoters_30_passives_10_detractors(session_factory):
    events = answers([9, 10] * 30) + answers([7, 8] * 15) + answers([0, 3, 5, 6, 6] * 2)
    assert ingest(session_factory, events).rejected == 0
    result = kpi(session_factory, "nps", "2026-10")
    assert result.current.inputs == {
        "promoters": 60,
        "passives": 30,
        "detractors": 10,
        "responses": 100,
    }
    assert result.value == Decimal(50)


def test_seed_nps_30_from_60_percent_promoters_and_30_percent_detractors(session_factory):
    ingest(session_factory, answers([10] * 12 + [8] * 2 + [2] * 6))
    result = kpi(session_factory, "net-promoter-score", "2026-10")
    assert result.value == Decimal(30)
    assert result.current.inputs["responses"] == 20


@pytest.mark.parametrize(
    ("score", "group", "expected"),
    [
        (0, "detractors", -100),
        (6, "detractors", -100),
        (7, "passives", 0),
        (8, "passives", 0),
        (9, "promoters", 100),
        (10, "promoters", 100),
    ],
)
def test_six_is_a_detractor_seven_and_eight_are_passive(session_factory, score, group, expected):
    ingest(session_factory, answers([score]))
    result = kpi(session_factory, "nps", "2026-10")
    assert result.current.inputs[group] == 1
    assert result.value == Decimal(expected)


def test_nps_rescales_other_scales_to_0_10_before_classifying(session_factory):
    events = answers([5, 4, 3], scale_min=1, scale_max=5)  # 10, 7.5, 5 on 0–10
    events += answers([90, 85, 65, 60], scale_min=0, scale_max=100)  # 9, 8.5, 6.5, 6
    ingest(session_factory, events)
    result = kpi(session_factory, "nps", "2026-10")
    assert result.current.inputs == {
        "promoters": 2,
        "passives": 3,
        "detractors": 2,
        "responses": 7,
    }
    assert result.value == Decimal(0)


def test_nps_counts_only_nps_answers_on_days_of_the_period(session_factory):
    events = answers([10], when="2026-10-01T00:00") + answers([0], when="2026-10-31T23:59")
    events += answers([0, 0], when="2026-09-30T23:59") + answers([0], when="2026-11-01T00:00")
    events += answers([1, 1], kind="csat")
    ingest(session_factory, events)
    result = kpi(session_factory, "nps", "2026-10")
    assert result.current.inputs["responses"] == 2
    assert result.value == Decimal(0)
    assert result.previous is not None and result.previous.value == Decimal(-100)


def test_nps_without_responses_is_undefined_not_zero(session_factory):
    ingest(session_factory, answers([10], when="2026-09-15"))
    result = kpi(session_factory, "nps", "2026-10")
    assert result.value is None
    assert "no NPS responses" in (result.current.reason or "")
    assert result.current.inputs["responses"] == 0


def test_nps_by_segment_recomputes_each_part_with_unattributed_in_none(session_factory):
    events = [
        make_account("ent-1", segment="enterprise"),
        make_account("ent-2", segment="enterprise"),
        make_account("smb-1", segment="smb"),
    ]
    events += answers([10, 9], account_id="ent-1") + answers([9, 3], account_id="ent-2")
    events += answers([10, 7, 2, 0], account_id="smb-1")
    events += answers([1, 4], account_id=None)  # no account_id, email or domain to attribute
    ingest(session_factory, events)
    result = kpi(session_factory, "nps", "2026-10", by="segment")
    parts = {part.key: part.value for part in result.breakdown}
    assert set(parts) == {"enterprise", "smb", "(none)"}
    assert parts["enterprise"].value == Decimal(50)  # 3 promoters, 1 detractor of 4
    assert parts["smb"].value == Decimal(-25)  # 1 promoter, 1 passive, 2 detractors of 4
    assert parts["(none)"].value == Decimal(-100)
    assert parts["(none)"].inputs["responses"] == 2
    assert result.current.inputs == {
        "promoters": 4,
        "passives": 1,
        "detractors": 5,
        "responses": 10,
    }
    assert result.value == Decimal(-10)  # recomputed over all 10 answers, not a mean of the parts
    enterprise = kpi(session_factory, "nps", "2026-10", filters=[("segment", "Enterprise")])
    assert enterprise.value == Decimal(50)
    assert enterprise.current.inputs["responses"] == 4


def test_seed_csat_80_percent_from_80_positive_of_100(session_factory):
    events = answers([5, 4] * 40, kind="csat") + answers([3, 2, 1, 3] * 5, kind="csat")
    events += answers([10, 0], kind="nps")
    ingest(session_factory, events)
    result = kpi(session_factory, "csat", "2026-10")
    assert result.current.inputs == {"positive": 80, "responses": 100}
    assert result.value == Decimal(80)


def test_csat_positive_is_the_top_quarter_of_each_scale(session_factory):
    events = answers([8, 10, 7], kind="csat", scale_min=0, scale_max=10)  # 0.8, 1, 0.7
    events += answers([4, 3], kind="csat")  # 1–5: 0.75, 0.5
    ingest(session_factory, events)
    result = kpi(session_factory, "satisfaction", "2026-10")
    assert result.current.inputs == {"positive": 3, "responses": 5}
    assert result.value == Decimal(60)


def test_csat_by_segment_and_without_responses(session_factory):
    events = [make_account("ent-1", segment="enterprise"), make_account("smb-1", segment="smb")]
    events += answers([5, 5, 5, 1], kind="csat", account_id="ent-1")
    events += answers([2], kind="csat", account_id="smb-1")
    ingest(session_factory, events)
    result = kpi(session_factory, "csat", "2026-10", by="segment")
    parts = {part.key: part.value.value for part in result.breakdown}
    assert parts == {"enterprise": Decimal(75), "smb": Decimal(0)}
    assert result.value == Decimal(60)
    assert kpi(session_factory, "csat", "2026-09").value is None


def test_csat_avg_of_5_4_3_is_4(session_factory):
    ingest(session_factory, answers([5, 4, 3], kind="csat"))
    result = kpi(session_factory, "csat-avg", "2026-10")
    assert result.value == Decimal(4)
    assert result.current.inputs == {"responses": 3}


def test_csat_avg_rescales_a_0_10_answer_to_1_5(session_factory):
    events = answers([5, 4, 3], kind="csat")
    events += answers([5], kind="csat", scale_min=0, scale_max=10)  # 1 + 5/10 × 4 = 3
    events += answers([9], kind="nps")
    ingest(session_factory, events)
    result = kpi(session_factory, "csat-avg", "2026-10")
    assert result.value == Decimal("3.75")
    assert result.current.inputs == {"responses": 4}
    assert kpi(session_factory, "csat-avg", "2026-09").value is None


def test_csat_avg_stays_exact_on_scales_that_do_not_divide_evenly(session_factory):
    ingest(session_factory, answers([1], kind="csat", scale_min=0, scale_max=3))  # 1 + 4/3
    result = kpi(session_factory, "csat-avg", "2026-10")
    assert result.value == Decimal("2.3333333333")
