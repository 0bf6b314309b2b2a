"""The events officer's pages over HTTP, against the real services: events created in
London time and sent as UTC, published, moved and cancelled; places booked for people
who phoned or came in; check-in at the door; attendance; and the reports, each figure
the events service's own."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
from nats.aio.client import Client

from contracts.events_v1 import BookPlace, CheckIn, ListBookings, ShowBooking, ShowEvent
from contracts.subscriptions_v1 import JoinMember
from kernel.commands import request
from kernel.settings import Settings
from tests.conftest import Mailbox, eventually
from tests.events_support import facts
from tests.notifications_support import quick
from tests.web.test_office_access import add_staff, problem_text, staff_client
from tests.web.test_office_pages import cells
from tests.web_support import Site, form_token, running_site, upcoming_event
from vestry.demo_invoicing import current_financial_year

EVENTS_OFFICER = "evie.events@partnership.example.org"
FINANCE = "fiona.finance@partnership.example.org"
LONDON = ZoneInfo("Europe/London")
YEAR = current_financial_year()
NEXT_SUMMER = date(datetime.now(UTC).year + 1, 7, 15)  # British Summer Time: UTC+1


@pytest.fixture
async def site(settings: Settings, nc: Client) -> AsyncIterator[Site]:
    async with running_site(quick(settings)) as running:
        for name in ("Wigan Council", "Bolton Council"):
            slug = name.lower().replace(" ", "-")
            await request(
                nc,
                JoinMember(
                    name=name,
                    tier="district",
                    billing_email=f"accounts@{slug}.example.gov.uk",
                    joined_on=date(YEAR, 4, 1),
                ),
            )
        await add_staff(nc, EVENTS_OFFICER, "events")
        await add_staff(nc, FINANCE, "finance")
        yield running


def event_form(csrf: str, **overrides: str) -> dict[str, str]:
    fields = {
        "csrf_token": csrf,
        "title": "Information governance forum",
        "kind": "forum",
        "programme": "information_sharing_and_security",
        "description": "Data sharing agreements.\nBring a case.",
        "held_on-day": str(NEXT_SUMMER.day),
        "held_on-month": str(NEXT_SUMMER.month),
        "held_on-year": str(NEXT_SUMMER.year),
        "start_time": "10:00",
        "end_time": "13:30",
        "venue": "Bolton Town Hall",
        "online_url": "",
        "capacity": "2",
        "member_price": "0",
        "non_member_price": "95.00",
        "places_per_organisation": "",
        "waiting_list": "yes",
    }
    fields.update(overrides)
    return fields


def error_on(page: httpx.Response, field: str) -> str:
    found = re.search(rf'id="{field}-error"[^>]*>(.*?)</p>', page.text, re.S)
    return re.sub(r"<[^>]+>|\s+", " ", found.group(1)).strip() if found else ""


def csv_rows(response: httpx.Response) -> list[dict[str, str]]:
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"].startswith("attachment;")
    return list(csv.DictReader(io.StringIO(response.text.removeprefix("\ufeff"))))


def event_id_of(response: httpx.Response) -> str:
    assert response.status_code == 303, response.text
    found = re.fullmatch(r"/office/events/(\w+)\?done=created", response.headers["location"])
    assert found, response.headers["location"]
    return found.group(1)


async def test_an_event_is_created_in_london_time_published_moved_and_listed(
    site: Site, nc: Client, mailbox: Mailbox
) -> None:
    async with staff_client(site, EVENTS_OFFICER) as client:
        empty = await client.get("/office/events")
        assert empty.status_code == 200 and "0 events." in empty.text

        csrf = await form_token(client, "/office/events/new")
        shapeless = await client.post(
            "/office/events/new",
            data=event_form(
                csrf,
                title="",
                kind="party",
                start_time="25:00",
                **{"held_on-month": "13"},
                capacity="lots",
                non_member_price="a lot",
            ),
        )
        assert shapeless.status_code == 400
        for field, words in (
            ("title", "Enter a title"),
            ("kind", "Select what kind of event it is"),
            ("held_on", "Enter the date it happens"),
            ("start_time", "Enter the start time"),
            ("capacity", "Enter the number of places"),
            ("non_member_price", "Enter the price for everyone else"),
        ):
            assert words in error_on(shapeless, field), field
        assert "Data sharing agreements.\nBring a case." in shapeless.text

        # The events service's own rule, on the field it names.
        backwards = await client.post(
            "/office/events/new", data=event_form(csrf, start_time="14:00", end_time="9:00")
        )
        assert backwards.status_code == 400
        assert "must end after it starts" in error_on(backwards, "end_time")
        nowhere = await client.post("/office/events/new", data=event_form(csrf, venue=""))
        assert "venue, an online link or both" in error_on(nowhere, "venue")

        created = await client.post("/office/events/new", data=event_form(csrf))
        event_id = event_id_of(created)
        shown = await client.get(created.headers["location"])
        assert "saved as a draft" in shown.text and "Draft" in shown.text
        event = await request(nc, ShowEvent(event_id=event_id))
        # 10:00 in London in July is 09:00 UTC.
        assert datetime.fromisoformat(event["starts_at"]) == datetime(
            NEXT_SUMMER.year, 7, 15, 9, 0, tzinfo=UTC
        )
        assert event["description"] == "Data sharing agreements.\nBring a case."
        assert (event["capacity"], event["non_member_price_minor"]) == (2, 9500)
        assert event["places_per_organisation"] is None and event["status"] == "draft"

        edit = await client.get(f"/office/events/{event_id}/edit")
        assert edit.status_code == 200
        assert 'value="10:00"' in edit.text and 'value="13:30"' in edit.text
        assert 'value="95.00"' in edit.text

        publish = await client.post(f"/office/events/{event_id}/publish", data={"csrf_token": csrf})
        assert publish.status_code == 303
        assert (
            "published and open for booking" in (await client.get(publish.headers["location"])).text
        )
        again = await client.post(f"/office/events/{event_id}/publish", data={"csrf_token": csrf})
        assert again.status_code == 409 and "not a draft" in problem_text(again)

        booker = {"name": "Priya Shah", "email": "priya.shah@wigan.example.gov.uk"}
        await request(nc, BookPlace(event_id=event_id, **booker))

        # A new title only: saved, nobody told. A new time: moved, the attendee told.
        renamed = await client.post(
            f"/office/events/{event_id}/edit",
            data=event_form(csrf, title="Information governance forum (spring)"),
        )
        assert renamed.status_code == 303 and renamed.headers["location"].endswith("done=updated")
        moved = await client.post(
            f"/office/events/{event_id}/edit",
            data=event_form(
                csrf,
                title="Information governance forum (spring)",
                start_time="11:00",
                end_time="14:00",
                places_per_organisation="",
                venue="",
                online_url="https://meet.example.org/igf",
            ),
        )
        assert moved.status_code == 303 and moved.headers["location"].endswith("done=moved")
        assert (
            "Everyone with a place is told by email"
            in (await client.get(moved.headers["location"])).text
        )
        event = await request(nc, ShowEvent(event_id=event_id))
        assert datetime.fromisoformat(event["starts_at"]).astimezone(LONDON).hour == 11
        assert event["venue"] is None and event["online_url"] == "https://meet.example.org/igf"

        def changed_mail() -> bool:
            return any(
                m.to == booker["email"] and m.message["Subject"].startswith("Changed:")
                for m in mailbox.mails()
            )

        await eventually(changed_mail, what="the attendee told of the move")

        too_small = await client.post(
            f"/office/events/{event_id}/edit", data=event_form(csrf, capacity="0")
        )
        assert too_small.status_code == 400 and error_on(too_small, "capacity")

        listed = await client.get("/office/events?status=published")
        assert "1 event." in listed.text
        assert cells(listed, "events")[1][:2] == [
            "Information governance forum (spring)",
            event["starts_london"],
        ]
        assert "0 events." in (await client.get("/office/events?status=draft")).text
        assert "1 event." in (await client.get("/office/events?status=x&programme=y")).text
        [row] = csv_rows(await client.get("/office/events.csv?status=published"))
        assert (row["id"], row["status"], row["confirmed"]) == (event_id, "published", "1")
        assert row["starts_london"] == f"{NEXT_SUMMER:%Y-%m-%d} 11:00"
        assert row["non_member_price"] == "95.00"

        assert (await client.get("/office/events/NOSUCH")).status_code == 404
        assert (await client.get(f"/office/events/{'x' * 60}/edit")).status_code == 404


async def test_places_are_booked_for_callers_and_cancelled_and_the_event_with_a_reason(
    site: Site, nc: Client
) -> None:
    event_id = await upcoming_event(nc, title="Customer journey mapping", capacity=1)
    async with staff_client(site, EVENTS_OFFICER) as client:
        form = await client.get(f"/office/events/{event_id}/book")
        assert form.status_code == 200 and "Wigan Council" in form.text
        csrf = await form_token(client, f"/office/events/{event_id}/book")
        caller = {"csrf_token": csrf, "name": "Sam Lee", "email": "sam.lee@bolton.example.gov.uk"}

        no_channel = await client.post(f"/office/events/{event_id}/book", data=caller)
        assert no_channel.status_code == 400
        assert "Select how the booking reached you" in error_on(no_channel, "channel")
        not_mobile = await client.post(
            f"/office/events/{event_id}/book",
            data={**caller, "channel": "phone", "phone": "0161 234 5678", "sms": "yes"},
        )
        assert not_mobile.status_code == 400 and "not a mobile" in error_on(not_mobile, "phone")

        booked = await client.post(
            f"/office/events/{event_id}/book", data={**caller, "channel": "phone"}
        )
        assert booked.status_code == 303
        reference = re.search(r"ref=(\w+)", booked.headers["location"]).group(1)  # type: ignore[union-attr]
        booking = await request(nc, ShowBooking(reference=reference))
        assert (booking["channel"], booking["status"]) == ("phone", "confirmed")
        twice = await client.post(
            f"/office/events/{event_id}/book", data={**caller, "channel": "phone"}
        )
        assert twice.status_code == 409 and error_on(twice, "email")

        walk_in = await client.post(
            f"/office/events/{event_id}/book",
            data={
                "csrf_token": csrf,
                "name": "Ana Silva",
                "email": "ana.silva@example.org",
                "organisation_name": "Greater Manchester Fire",
                "channel": "in-person",
            },
        )
        assert walk_in.status_code == 303
        shown = await client.get(walk_in.headers["location"])
        assert "The booking is made" in shown.text
        assert cells(shown, "bookings")[1][:4] == [reference, "Sam Lee", "None given", "Phone"]
        [waiting] = cells(shown, "waiting")[1:]
        assert waiting[:5] == ["1", waiting[1], "Ana Silva", "Greater Manchester Fire", "In person"]

        bookings = csv_rows(await client.get(f"/office/events/{event_id}/bookings.csv"))
        assert [(b["name"], b["channel"], b["status"]) for b in bookings] == [
            ("Sam Lee", "phone", "confirmed"),
            ("Ana Silva", "in-person", "waitlisted"),
        ]

        confirm = await client.get(f"/office/events/{event_id}/bookings/{reference}/cancel")
        assert confirm.status_code == 200 and "Cancel this booking?" in confirm.text
        cancelled = await client.post(
            f"/office/events/{event_id}/bookings/{reference}/cancel", data={"csrf_token": csrf}
        )
        assert cancelled.status_code == 303
        assert (await request(nc, ShowBooking(reference=reference)))["status"] == "cancelled"
        promoted = (await request(nc, ListBookings(event_id=event_id)))["bookings"][1]
        assert (promoted["name"], promoted["status"]) == ("Ana Silva", "confirmed")
        assert (
            await client.get(f"/office/events/{event_id}/bookings/NOSUCH1/cancel")
        ).status_code == 404

        page = await client.get(f"/office/events/{event_id}/cancel")
        assert page.status_code == 200 and "Its one booking is cancelled" in page.text
        no_reason = await client.post(
            f"/office/events/{event_id}/cancel", data={"csrf_token": csrf, "reason": " "}
        )
        assert no_reason.status_code == 400
        assert "Say why the event is cancelled" in error_on(no_reason, "reason")
        reason = "The speaker is ill.\nWe will offer a new date in the spring."
        done = await client.post(
            f"/office/events/{event_id}/cancel", data={"csrf_token": csrf, "reason": reason}
        )
        assert done.status_code == 303
        assert "The event is cancelled" in (await client.get(done.headers["location"])).text
        assert (await request(nc, ShowEvent(event_id=event_id)))["status"] == "cancelled"
        [fact] = await facts(nc, "events.event.cancelled")
        assert fact.data["reason"] == reason
        refused = await client.post(
            f"/office/events/{event_id}/cancel", data={"csrf_token": csrf, "reason": reason}
        )
        assert refused.status_code == 409 and "already cancelled" in problem_text(refused)


async def test_people_are_checked_in_at_the_door_and_the_organisations_that_came_counted(
    site: Site, nc: Client
) -> None:
    starts = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)  # check-in is open
    event_id = await upcoming_event(nc, title="Lean reviews", starts_at=starts, capacity=10)
    people = [
        ("Priya Shah", "priya@wigan.example.gov.uk", "Wigan Council"),
        ("Sam Lee", "sam@bolton.example.gov.uk", "Bolton Council"),
        ("Jo Patel", "jo@bolton.example.gov.uk", "bolton council"),
        ("Ana Silva", "ana@example.org", None),
    ]
    references = {}
    for name, email, organisation in people:
        booked = await request(
            nc,
            BookPlace(event_id=event_id, name=name, email=email, organisation_name=organisation),
        )
        references[name] = booked["reference"]
    async with staff_client(site, EVENTS_OFFICER) as client:
        door = await client.get(f"/office/events/{event_id}/check-in")
        assert door.status_code == 200 and "<strong>0</strong> of 4 checked in" in door.text
        assert door.text.count('Check in<span class="govuk-visually-hidden">') == 4

        found = await client.get(f"/office/events/{event_id}/check-in?q=PATEL")
        assert "1 found" in found.text and "Jo Patel" in found.text and "Sam Lee" not in found.text
        by_reference = await client.get(
            f"/office/events/{event_id}/check-in?q={references['Sam Lee'].lower()}"
        )
        assert "1 found" in by_reference.text and "Sam Lee" in by_reference.text

        csrf = await form_token(client, f"/office/events/{event_id}/check-in")
        for name in ("Jo Patel", "Sam Lee", "Priya Shah", "Ana Silva", "Jo Patel"):
            arrived = await client.post(
                f"/office/events/{event_id}/check-in",
                data={"csrf_token": csrf, "reference": references[name], "q": "patel"},
            )
            assert arrived.status_code == 303
        after = await client.get(arrived.headers["location"])
        assert f"Jo Patel ({references['Jo Patel']}) is checked in" in after.text
        assert "<strong>4</strong> of 4 checked in" in after.text
        elsewhere = await request(
            nc,
            BookPlace(
                event_id=await upcoming_event(nc, title="Another day", starts_at=starts),
                name="Kim Wu",
                email="kim@example.org",
            ),
        )
        for reference in ("NOSUCH1", elsewhere["reference"]):
            refused = await client.post(
                f"/office/events/{event_id}/check-in",
                data={"csrf_token": csrf, "reference": reference},
            )
            assert refused.status_code == 400
            assert "Choose the person to check in" in problem_text(refused)
        assert (await request(nc, ShowBooking(reference=elsewhere["reference"])))[
            "attendance"
        ] is None

        attendance = await client.get(f"/office/events/{event_id}/attendance")
        assert attendance.status_code == 200
        assert ["Checked in", "4"] in cells(attendance, "attendance")
        # Wigan and Bolton by membership (however the name was typed); Ana gave no organisation.
        assert ["Different organisations attending", "2"] in cells(attendance, "attendance")
        assert cells(attendance, "organisations")[1:] == [
            ["Bolton Council", "Member", "2"],
            ["Wigan Council", "Member", "1"],
        ]
        exported = csv_rows(await client.get(f"/office/events/{event_id}/attendance.csv"))
        assert [(o["organisation"], o["people_attended"]) for o in exported] == [
            ("Bolton Council", "2"),
            ("Wigan Council", "1"),
        ]


async def test_the_reports_count_what_the_events_service_holds_for_events_and_finance(
    site: Site, nc: Client
) -> None:
    soon = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    forum = await upcoming_event(
        nc, title="Security forum", programme="information_sharing_and_security", starts_at=soon
    )
    workshop = await upcoming_event(
        nc,
        title="Lean workshop",
        programme="business_process_improvement",
        starts_at=soon + timedelta(minutes=30),
        capacity=2,
    )
    made = [
        (forum, "web", "Wigan Council"),
        (forum, "web", "Bolton Council"),
        (forum, "phone", "Wigan Council"),
        (workshop, "in-person", None),
        (workshop, "web", None),
        (workshop, "phone", "Bolton Council"),  # waitlisted: still a booking taken by phone
    ]
    for number, (event_id, channel, organisation) in enumerate(made):
        await request(
            nc,
            BookPlace(
                event_id=event_id,
                name=f"Person {number}",
                email=f"person{number}@example.org",
                organisation_name=organisation,
                channel=channel,  # type: ignore[arg-type]
            ),
        )
    for booking in (await request(nc, ListBookings(event_id=forum)))["bookings"]:
        if booking["organisation_name"]:  # Wigan twice and Bolton once: two organisations
            await request(nc, CheckIn(reference=booking["reference"]))
    month = datetime.now(UTC).astimezone(LONDON).strftime("%b %Y")

    for who in (EVENTS_OFFICER, FINANCE):
        async with staff_client(site, who) as client:
            index = await client.get("/office/reports")
            assert index.status_code == 200 and "Channel shift" in index.text

            shift = await client.get(f"/office/reports/channel-shift?year={YEAR}")
            assert shift.status_code == 200
            assert cells(shift, "by-channel")[1:] == [
                ["Web", "3", "£0.39", "£1.17"],
                ["Phone", "2", "£3.21", "£6.42"],
                ["In person", "1", "£8.23", "£8.23"],
                ["All channels", "6", "", "£15.82"],
            ]
            assert "50.0% on the web" in shift.text
            assert "saved <strong>£8.46</strong>" in shift.text  # 3 × (£3.21 − £0.39)
            assert [month, "3", "2", "1", "£8.46"] in cells(shift, "by-month")
            assert len(cells(shift, "by-month")) == 13  # every month of the year
            assert "<title" in shift.text and "<desc" in shift.text

            rows = csv_rows(await client.get(f"/office/reports/channel-shift.csv?year={YEAR}"))
            assert {r["programme"]: (r["web_bookings"], r["phone_bookings"]) for r in rows} == {
                "Information Sharing and Security": ("2", "1"),
                "Business Process Improvement": ("1", "1"),
            }
            assert sum(int(r["bookings"]) for r in rows) == len(made)
            by_month = csv_rows(
                await client.get(f"/office/reports/channel-shift-by-month.csv?year={YEAR}")
            )
            assert len(by_month) == 12 and sum(int(r["bookings"]) for r in by_month) == 6
            one = await client.get(
                f"/office/reports/channel-shift?year={YEAR}&programme=business_process_improvement"
            )
            assert cells(one, "by-channel")[-1] == ["All channels", "3", "", "£11.83"]
            before = await client.get(f"/office/reports/channel-shift?year={YEAR - 1}")
            assert "No bookings were made in this year" in before.text

            reach = await client.get(f"/office/reports/organisations?year={YEAR}")
            assert reach.status_code == 200
            assert [[r[0], *r[2:]] for r in cells(reach, "by-event")[1:]] == [
                ["Security forum", "Information Sharing and Security", "3", "2"],
                ["Lean workshop", "Business Process Improvement", "0", "0"],
            ]
            assert ["Information Sharing and Security", "1", "2"] in cells(reach, "by-programme")
            events_csv = csv_rows(
                await client.get(f"/office/reports/organisations-by-event.csv?year={YEAR}")
            )
            assert [e["organisations_attending"] for e in events_csv] == ["2", "0"]
            programmes_csv = csv_rows(
                await client.get(f"/office/reports/organisations-by-programme.csv?year={YEAR}")
            )
            assert len(programmes_csv) == 2

    async with staff_client(site, FINANCE) as client:
        assert (await client.get("/office/events")).status_code == 403  # reports only
