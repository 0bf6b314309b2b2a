"""The reports' counting (events service), and the back office's own shaping of them:
the chart's geometry, CSV cells a spreadsheet must not run, and London times typed on
the event form sent as UTC. No broker, no store."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from starlette.datastructures import FormData

from contracts.events_v1 import ChannelCosts
from contracts.money import Money
from services.events.handlers.reports import (
    channel_shift,
    costed,
    month_of,
    organisations_attending,
    reach,
    year_bounds,
    year_months,
)
from services.web.office.charts import Series, nice_step, stacked_bars
from services.web.office.exports import cell, decimal_pounds
from services.web.office.forms import EventForm, clock_time
from services.web.rendering import KINDS, PROGRAMMES

COSTS = ChannelCosts(
    web=Money(amount_minor=39), phone=Money(amount_minor=321), in_person=Money(amount_minor=823)
)


@dataclass
class Line:
    status: str = "confirmed"
    attendance: str | None = "attended"
    organisation_key: str | None = None
    organisation_name: str | None = None
    member_id: str | None = None


def test_the_financial_year_runs_from_london_midnight_on_1_april() -> None:
    start, end = year_bounds(2026)
    assert start == datetime(2026, 3, 31, 23, 0, tzinfo=UTC)  # BST began on 29 March
    assert end == datetime(2027, 3, 31, 23, 0, tzinfo=UTC)
    assert year_months(2026)[0] == "2026-04" and year_months(2026)[-1] == "2027-03"
    assert len(year_months(2026)) == 12
    # Half past midnight in London on 1 April is still 31 March in UTC.
    assert month_of(datetime(2027, 3, 31, 23, 30, tzinfo=UTC)) == "2027-04"
    assert month_of(datetime(2027, 1, 31, 23, 30, tzinfo=UTC)) == "2027-01"  # GMT


def test_each_booking_is_costed_at_its_channel_and_the_web_saves_against_the_phone() -> None:
    figures = costed(Counter({"web": 3, "phone": 2, "in-person": 1}), COSTS)
    assert figures["bookings"] == {"web": 3, "phone": 2, "in-person": 1}
    assert figures["cost_by_channel"] == {"web": 117, "phone": 642, "in-person": 823}
    assert figures["cost"] == 1582
    assert figures["saved"] == 3 * (321 - 39)
    assert figures["web_share_percent"] == 50.0
    assert costed(Counter(), COSTS)["web_share_percent"] is None
    assert costed(Counter({"web": 1, "phone": 2}), COSTS)["web_share_percent"] == 33.3


def test_the_report_has_a_row_per_month_and_programme_and_every_month_for_the_chart() -> None:
    lines = [
        ("2026-05", "customer_service", "web"),
        ("2026-05", "customer_service", "phone"),
        ("2026-05", "business_process_improvement", "web"),
        ("2026-09", "customer_service", "in-person"),
    ]
    report = channel_shift(lines, months=year_months(2026), costs=COSTS)
    assert [(r["month"], r["programme"], r["total"]) for r in report["rows"]] == [
        ("2026-05", "business_process_improvement", 1),
        ("2026-05", "customer_service", 2),
        ("2026-09", "customer_service", 1),
    ]
    assert [m["total"] for m in report["by_month"]] == [0, 2 + 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]
    assert {p["programme"]: p["total"] for p in report["by_programme"]} == {
        "business_process_improvement": 1,
        "customer_service": 3,
    }
    assert report["totals"]["bookings"] == {"web": 2, "phone": 1, "in-person": 1}
    assert report["unit_costs"] == {"web": 39, "phone": 321, "in-person": 823}
    assert sum(r["cost"] for r in report["rows"]) == report["totals"]["cost"]


def test_an_organisation_counts_once_per_event_and_once_per_programme() -> None:
    wigan = Line(organisation_key="m-wigan", organisation_name="Wigan Council", member_id="m-wigan")
    bolton = Line(organisation_key="bolton fire", organisation_name="Bolton Fire")
    attending = organisations_attending(
        [
            wigan,
            Line(
                organisation_key="m-wigan", organisation_name="wigan council", member_id="m-wigan"
            ),
            bolton,
            Line(organisation_key="m-bury", attendance=None),  # booked, not come
            Line(organisation_key="m-salford", status="cancelled"),
            Line(organisation_key=None),  # came for no organisation
        ]
    )
    assert attending == [
        {"name": "Wigan Council", "member_id": "m-wigan", "attended": 2},
        {"name": "Bolton Fire", "member_id": None, "attended": 1},
    ]
    found = reach(
        [
            ({"event_id": "E1", "programme": "customer_service"}, [wigan, bolton]),
            ({"event_id": "E2", "programme": "customer_service"}, [wigan]),
            ({"event_id": "E3", "programme": "business_process_improvement"}, [wigan]),
        ]
    )
    assert [e["organisations_attending"] for e in found["events"]] == [2, 1, 1]
    assert found["programmes"] == [
        {"programme": "business_process_improvement", "events": 1, "organisations_attending": 1},
        {"programme": "customer_service", "events": 2, "organisations_attending": 2},
    ]
    assert found["organisations_attending"] == 2


@pytest.mark.parametrize(
    ("top", "step"), [(0, 1), (1, 1), (4, 1), (7, 2), (10, 2), (11, 5), (30, 10), (240, 50)]
)
def test_the_chart_axis_rises_in_round_steps(top: int, step: int) -> None:
    assert nice_step(top) == step


def test_the_bars_stack_in_proportion_from_the_baseline() -> None:
    chart = stacked_bars(
        id="c",
        title="Bookings",
        description="Stacked",
        categories=["Apr", "May"],
        series=[Series("Web", "#0e5e5a", [2, 0]), Series("Phone", "#b35900", [2, 1])],
    )
    april_web, april_phone, may_phone = chart.boxes
    assert april_web.y + april_web.height == pytest.approx(chart.baseline)
    assert april_phone.y + april_phone.height == pytest.approx(april_web.y, abs=0.2)
    assert april_web.height == pytest.approx(april_phone.height)
    assert may_phone.height == pytest.approx(april_web.height / 2, abs=0.2)
    assert [t.label for t in chart.ticks] == ["0", "1", "2", "3", "4"]
    assert chart.ticks[-1].y == pytest.approx(april_phone.y, abs=0.2)  # the top bar reaches 4
    assert [k.text for k in chart.keys] == ["Web", "Phone"]
    assert "May: 1 Phone" in [b.label for b in chart.boxes]


def test_a_csv_cell_never_starts_a_formula() -> None:
    assert cell('=HYPERLINK("http://evil")') == '\'=HYPERLINK("http://evil")'
    assert [cell(v) for v in ("+1", "-1", "@sum", "\tx", "Wigan")] == [
        "'+1",
        "'-1",
        "'@sum",
        "'\tx",
        "Wigan",
    ]
    assert cell(None) == "" and cell(True) == "yes" and cell(3) == 3
    assert str(decimal_pounds(-5)) == "-0.05" and cell(decimal_pounds(-5)) == decimal_pounds(-5)


def event_form(**overrides: str) -> FormData:
    fields = {
        "title": "Forum",
        "kind": "forum",
        "programme": "customer_service",
        "held_on-day": "12",
        "held_on-month": "1",
        "held_on-year": "2027",
        "start_time": "9:30",
        "end_time": "16.00",
        "venue": "Town Hall",
        "capacity": "30",
        "member_price": "free",
        "non_member_price": "£95.50",
    }
    fields.update(overrides)
    return FormData(fields)


def test_london_dates_and_times_go_out_as_utc_in_winter_and_summer() -> None:
    winter, problems = EventForm.read(event_form(), kinds=KINDS, programmes=PROGRAMMES)
    assert not problems
    command, problems = winter.create_command()
    assert command is not None and not problems
    assert command.starts_at == datetime(2027, 1, 12, 9, 30, tzinfo=UTC)
    assert command.ends_at == datetime(2027, 1, 12, 16, 0, tzinfo=UTC)
    assert (command.member_price.amount_minor, command.non_member_price.amount_minor) == (0, 9550)
    summer, _ = EventForm.read(
        event_form(**{"held_on-month": "7"}), kinds=KINDS, programmes=PROGRAMMES
    )
    assert summer.times()[0] == datetime(2027, 7, 12, 8, 30, tzinfo=UTC)
    # Shown again as typed, in London.
    again = EventForm.of(
        {
            **command.model_dump(mode="json"),
            "member_price_minor": 0,
            "non_member_price_minor": 9550,
        }
    )
    assert (again.start_time, again.end_time, again.non_member_price) == ("09:30", "16:00", "95.50")


def test_the_event_form_names_each_field_it_cannot_read() -> None:
    _, problems = EventForm.read(
        event_form(
            title="No",
            kind="party",
            start_time="24:00",
            end_time="noon",
            capacity="-3",
            non_member_price="lots",
            places_per_organisation="two",
            **{"held_on-day": "31", "held_on-month": "2"},
        ),
        kinds=KINDS,
        programmes=PROGRAMMES,
    )
    assert sorted(problems.by_field) == [
        "capacity",
        "end_time",
        "held_on",
        "kind",
        "non_member_price",
        "places_per_organisation",
        "start_time",
        "title",
    ]
    assert clock_time("07:05") is not None and clock_time("7") is None
