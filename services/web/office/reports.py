"""Reports: channel shift (bookings by channel per month and programme, each at its unit
cost, and what the web bookings saved against phoning) and reach (different
organisations attending each event and programme). For events and finance staff; the
events service counts, the unit costs are the web settings', and the chart is drawn here
as SVG beside a table of the same numbers."""

from __future__ import annotations

from datetime import date
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from contracts.events_v1 import ChannelCosts, ChannelShiftReport, OrganisationsReport
from services.web.office.charts import Series, stacked_bars
from services.web.office.door import ask, office_render, page
from services.web.office.exports import csv_response, decimal_pounds
from services.web.office.invoicing import years_around
from services.web.office.today import chosen_year
from services.web.rendering import PROGRAMMES

REPORTS = ("events", "finance")
CHANNELS = {"web": "Web", "phone": "Phone", "in-person": "In person"}
# Each at least 4.5:1 against white (WCAG 1.4.11 asks 3:1 of a chart's parts), and told
# apart by lightness as well as by hue.
COLOURS = {"web": "#0e5e5a", "phone": "#b35900", "in-person": "#912b88"}


def unit_costs(request: Request) -> ChannelCosts:
    """As the web settings give them (VESTRY_WEB_UNIT_COST_*_PENCE)."""
    costs: ChannelCosts = request.app.state.office.unit_costs
    return costs


def chosen(request: Request) -> tuple[int, str]:
    programme = request.query_params.get("programme", "")
    return chosen_year(request), programme if programme in PROGRAMMES else ""


def month_name(month: str, *, short: bool = False) -> str:
    """'2026-04' as 'April 2026' (or 'Apr')."""
    first = date.fromisoformat(f"{month}-01")
    return f"{first:%b}" if short else f"{first:%B %Y}"


def filters(request: Request, year: int, programme: str) -> dict[str, Any]:
    return {
        "year": year,
        "years": years_around(year),
        "programme": programme,
        "query": urlencode({"year": year, "programme": programme}),
    }


async def index(request: Request) -> Response:
    return office_render(request, "office/reports/index.html", filters(request, *chosen(request)))


async def channel_shift_report(request: Request, year: int, programme: str) -> dict[str, Any]:
    return await ask(
        request,
        ChannelShiftReport(
            year=year,
            programme=programme or None,  # type: ignore[arg-type]
            unit_costs=unit_costs(request),
        ),
    )


def channel_chart(report: dict[str, Any]) -> Any:
    months = report["by_month"]
    totals = report["totals"]
    first, last = month_name(months[0]["month"]), month_name(months[-1]["month"])
    return stacked_bars(
        id="channels-chart",
        title=f"Bookings by channel each month, {first} to {last}",
        description=(
            "Stacked bars, one for each month, of the bookings made on the web, by phone "
            f"and in person. In all: {totals['bookings']['web']} on the web, "
            f"{totals['bookings']['phone']} by phone and {totals['bookings']['in-person']} "
            "in person. The table beside the chart gives each month's numbers."
        ),
        categories=[month_name(m["month"], short=True) for m in months],
        series=[
            Series(
                name=name, colour=COLOURS[channel], values=[m["bookings"][channel] for m in months]
            )
            for channel, name in CHANNELS.items()
        ],
    )


async def channel_shift(request: Request) -> Response:
    year, programme = chosen(request)
    report = await channel_shift_report(request, year, programme)
    return office_render(
        request,
        "office/reports/channel_shift.html",
        {
            **filters(request, year, programme),
            "report": report,
            "chart": channel_chart(report),
            "channels": CHANNELS,
            "month_name": month_name,
        },
    )


async def channel_shift_csv(request: Request) -> Response:
    """The report's finest grain: a row per month and programme that had bookings."""
    year, programme = chosen(request)
    report = await channel_shift_report(request, year, programme)
    return csv_response(
        f"channel-shift-{year}.csv",
        [
            "month",
            "programme",
            *(f"{channel}_bookings" for channel in CHANNELS),
            "bookings",
            *(f"{channel}_cost" for channel in CHANNELS),
            "cost",
            "web_share_percent",
            "saved_by_web",
        ],
        (
            [
                row["month"],
                PROGRAMMES.get(row["programme"], row["programme"]),
                *(row["bookings"][channel] for channel in CHANNELS),
                row["total"],
                *(decimal_pounds(row["cost_by_channel"][channel]) for channel in CHANNELS),
                decimal_pounds(row["cost"]),
                row["web_share_percent"],
                decimal_pounds(row["saved"]),
            ]
            for row in report["rows"]
        ),
    )


async def channel_shift_by_month_csv(request: Request) -> Response:
    """The chart's numbers: every month of the year, all programmes (or the one chosen)."""
    year, programme = chosen(request)
    report = await channel_shift_report(request, year, programme)
    return csv_response(
        f"channel-shift-by-month-{year}.csv",
        [
            "month",
            *(f"{channel}_bookings" for channel in CHANNELS),
            "bookings",
            "cost",
            "saved_by_web",
        ],
        (
            [
                row["month"],
                *(row["bookings"][channel] for channel in CHANNELS),
                row["total"],
                decimal_pounds(row["cost"]),
                decimal_pounds(row["saved"]),
            ]
            for row in report["by_month"]
        ),
    )


async def organisations_report(request: Request, year: int, programme: str) -> dict[str, Any]:
    return await ask(
        request,
        OrganisationsReport(year=year, programme=programme or None),  # type: ignore[arg-type]
    )


async def organisations(request: Request) -> Response:
    year, programme = chosen(request)
    report = await organisations_report(request, year, programme)
    return office_render(
        request,
        "office/reports/organisations.html",
        {**filters(request, year, programme), "report": report},
    )


async def organisations_by_event_csv(request: Request) -> Response:
    year, programme = chosen(request)
    report = await organisations_report(request, year, programme)
    return csv_response(
        f"organisations-by-event-{year}.csv",
        [
            "event_id",
            "title",
            "programme",
            "starts_london",
            "status",
            "people_attended",
            "organisations_attending",
        ],
        (
            [
                e["event_id"],
                e["title"],
                PROGRAMMES.get(e["programme"], e["programme"]),
                e["starts_london"],
                e["status"],
                e["attended"],
                e["organisations_attending"],
            ]
            for e in report["events"]
        ),
    )


async def organisations_by_programme_csv(request: Request) -> Response:
    year, programme = chosen(request)
    report = await organisations_report(request, year, programme)
    return csv_response(
        f"organisations-by-programme-{year}.csv",
        ["programme", "events", "organisations_attending"],
        (
            [
                PROGRAMMES.get(p["programme"], p["programme"]),
                p["events"],
                p["organisations_attending"],
            ]
            for p in report["programmes"]
        ),
    )


routes = [
    page("/reports", index, roles=REPORTS, name="reports"),
    page("/reports/channel-shift", channel_shift, roles=REPORTS, name="channel_shift"),
    page("/reports/channel-shift.csv", channel_shift_csv, roles=REPORTS, name="channel_shift_csv"),
    page(
        "/reports/channel-shift-by-month.csv",
        channel_shift_by_month_csv,
        roles=REPORTS,
        name="channel_shift_by_month_csv",
    ),
    page("/reports/organisations", organisations, roles=REPORTS, name="organisations_report"),
    page(
        "/reports/organisations-by-event.csv",
        organisations_by_event_csv,
        roles=REPORTS,
        name="organisations_by_event_csv",
    ),
    page(
        "/reports/organisations-by-programme.csv",
        organisations_by_programme_csv,
        roles=REPORTS,
        name="organisations_by_programme_csv",
    ),
]
