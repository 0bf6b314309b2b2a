"""The public site over HTTP, against the real services: what a stranger can and cannot
do, and what each refusal looks like. (The browser tests drive the same pages.)"""

from __future__ import annotations

import asyncio
import html
import re
from datetime import timedelta
from urllib.parse import urlsplit

import feedparser
import httpx
import pytest
import vobject
from nats.aio.client import Client
from sqlalchemy import func, select

from contracts.events_v1 import ShowEvent
from kernel import links
from kernel.commands import request
from kernel.settings import Settings
from services.events.store import Booking
from tests.conftest import Mailbox, eventually
from tests.itip_support import invitations
from tests.web_support import Site, form_token, running_site, site_settings, soon, upcoming_event

PERSON = {"name": "Priya Shah", "email": "priya.shah@wigan.example.gov.uk"}


async def bookings_stored(site: Site, event_id: str) -> int:
    async with site.events.sessions() as session:
        return int(
            await session.scalar(
                select(func.count()).select_from(Booking).where(Booking.event_id == event_id)
            )
            or 0
        )


async def book(client: httpx.AsyncClient, event_id: str, **fields: str) -> httpx.Response:
    token = await form_token(client, f"/events/{event_id}/book")
    return await client.post(f"/events/{event_id}/book", data={"csrf_token": token, **fields})


def error_on(page: httpx.Response, field: str) -> str:
    """The GOV.UK error message shown on ``field``, and the summary links to it."""
    assert f'href="#{field}"' in page.text, f"the error summary does not link to {field}"
    found = re.search(rf'id="{field}-error"[^>]*>\s*<span[^>]*>Error:</span>\s*([^<]+)<', page.text)
    assert found, f"no error message on {field}"
    return found.group(1).strip()


async def test_each_refusal_lands_on_its_field_and_nothing_is_stored(
    settings: Settings, nc: Client
) -> None:
    async with (
        running_site(settings) as site,
        httpx.AsyncClient(base_url=site.url, timeout=30) as client,
    ):
        event_id = await upcoming_event(nc, capacity=5, places_per_organisation=1)

        bad_email = await book(client, event_id, name="Priya", email="priya.at.wigan")
        assert bad_email.status_code == 400
        assert "email address in the correct format" in error_on(bad_email, "email")
        assert 'value="Priya"' in bad_email.text  # what they typed is kept

        landline = await book(client, event_id, **PERSON, phone="0161 234 5678")
        assert landline.status_code == 400
        assert "not a mobile number" in error_on(landline, "phone")

        no_phone = await book(client, event_id, **PERSON, sms="yes")
        assert "SMS needs a phone number" in error_on(no_phone, "sms")

        control = await book(client, event_id, name="Priya\x07 Shah", email=PERSON["email"])
        assert control.status_code == 400 and "special characters" in error_on(control, "name")

        huge = await book(client, event_id, name="P" * 5000, email=PERSON["email"])
        assert huge.status_code == 400 and "no more than 200" in error_on(huge, "name")
        assert await bookings_stored(site, event_id) == 0

        first = await book(client, event_id, **PERSON, organisation_name="Wigan Council")
        assert first.status_code == 303
        duplicate = await book(client, event_id, **PERSON, organisation_name="Wigan Council")
        assert duplicate.status_code == 409
        assert "already holds a booking" in error_on(duplicate, "email")

        colleague = {"name": "Sam Lee", "email": "sam.lee@wigan.example.gov.uk"}
        over = await book(client, event_id, **colleague, organisation_name="wigan council")
        assert over.status_code == 409
        assert "organisation already holds 1 of its 1 places" in error_on(over, "organisation_name")
        assert await bookings_stored(site, event_id) == 1


async def test_a_closed_or_unknown_event_cannot_be_booked(settings: Settings, nc: Client) -> None:
    async with (
        running_site(settings) as site,
        httpx.AsyncClient(base_url=site.url, timeout=30) as client,
    ):
        closing = soon(2)
        event_id = await upcoming_event(
            nc, starts_at=closing, booking_closes_at=closing - timedelta(days=3)
        )
        page = await client.get(f"/events/{event_id}")
        assert "You cannot book this event: bookings for this event have closed" in page.text
        form = await client.get(f"/events/{event_id}/book")
        assert form.status_code == 409 and "Book a place" not in form.text

        token = await form_token(client, "/bookings")
        posted = await client.post(f"/events/{event_id}/book", data={"csrf_token": token, **PERSON})
        assert posted.status_code == 409
        assert await bookings_stored(site, event_id) == 0

        unknown = await client.get("/events/E-NO-SUCH")
        assert unknown.status_code == 404 and "There is no event at this address" in unknown.text
        assert (await client.get("/events/%00%01")).status_code == 404


async def test_a_post_without_its_csrf_token_is_refused_and_changes_nothing(
    settings: Settings, nc: Client
) -> None:
    async with (
        running_site(settings) as site,
        httpx.AsyncClient(base_url=site.url, timeout=30) as client,
    ):
        event_id = await upcoming_event(nc, capacity=5)
        await client.get(f"/events/{event_id}/book")  # has the cookie, not the token
        missing = await client.post(f"/events/{event_id}/book", data=PERSON)
        forged = await client.post(
            f"/events/{event_id}/book", data={**PERSON, "csrf_token": "0" * 64}
        )
        for refused in (missing, forged):
            assert refused.status_code == 403
            assert "Your form could not be sent" in refused.text
        async with httpx.AsyncClient(
            base_url=site.url, timeout=30
        ) as stranger:  # another site's page
            token = await form_token(client, f"/events/{event_id}/book")
            cross_site = await stranger.post(
                f"/events/{event_id}/book", data={**PERSON, "csrf_token": token}
            )
            assert cross_site.status_code == 403
        assert await bookings_stored(site, event_id) == 0


async def test_every_answer_carries_the_security_headers(settings: Settings, nc: Client) -> None:
    async with (
        running_site(settings) as site,
        httpx.AsyncClient(base_url=site.url, timeout=30) as client,
    ):
        for path in ("/events", "/bookings", "/no-such-page", "/events.atom"):
            headers = (await client.get(path)).headers
            csp = headers["content-security-policy"]
            assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp
            assert "frame-ancestors 'none'" in csp
            assert headers["x-frame-options"] == "DENY"
            assert headers["referrer-policy"] == "no-referrer"
        cookie = (await httpx.AsyncClient(base_url=site.url, timeout=30).get("/events")).headers[
            "set-cookie"
        ]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie


async def test_the_manage_link_opens_one_booking_and_a_changed_link_is_refused(
    settings: Settings, nc: Client
) -> None:
    async with (
        running_site(settings) as site,
        httpx.AsyncClient(base_url=site.url, timeout=30) as client,
    ):
        event_id = await upcoming_event(nc, capacity=5)
        booked = await book(client, event_id, **PERSON)
        reference = urlsplit(booked.headers["location"]).path.rsplit("/", 1)[1]
        manage = links.booking_url("", settings.link_secret, reference)
        page = await client.get(manage)
        assert page.status_code == 200 and reference in page.text and "Confirmed" in page.text

        other = await book(client, event_id, name="Sam", email="sam@bolton.example.gov.uk")
        other_reference = urlsplit(other.headers["location"]).path.rsplit("/", 1)[1]
        signature = manage.rsplit("=", 1)[1]
        for tampered in (
            f"/bookings/{other_reference}?s={signature}",  # someone else's booking
            manage[:-1] + ("0" if manage[-1] != "0" else "1"),  # a changed signature
            f"/bookings/{reference}",  # no signature
            f"/bookings/{reference}/cancel?s={signature[:-2]}",
        ):
            refused = await client.get(tampered)
            assert refused.status_code == 400, tampered
            assert "This link does not work" in refused.text
            assert "Priya" not in refused.text and "Sam" not in refused.text
        token = await form_token(client, "/bookings")
        cancel = await client.post(
            f"/bookings/{other_reference}/cancel?s={signature}", data={"csrf_token": token}
        )
        assert cancel.status_code == 400
        shown = await request(nc, ShowEvent(event_id=event_id))
        assert shown["confirmed"] == 2


async def test_a_bookings_calendar_file_is_its_invitations_entry_and_a_waiting_place_has_none(
    settings: Settings, nc: Client, mailbox: Mailbox
) -> None:
    """The answer page and the booker's page offer the booking's own entry, under the UID
    its emailed invitation carries: added beside it, the calendar still holds one."""
    async with (
        running_site(settings) as site,
        httpx.AsyncClient(base_url=site.url, timeout=30) as client,
    ):
        event_id = await upcoming_event(nc, capacity=1)
        booked = await book(client, event_id, **PERSON)
        answer = await client.get(booked.headers["location"])
        offered = re.search(r'href="(/bookings/[^"]+/calendar\.ics\?s=[^"]+)"', answer.text)
        assert offered is not None, "the answer page offers the booking's calendar entry"
        from_page = await client.get(html.unescape(offered[1]))
        assert from_page.status_code == 200
        assert from_page.headers["content-type"].startswith("text/calendar")
        [entry] = vobject.readOne(from_page.text).vevent_list
        [mail] = await eventually(lambda: mailbox.mails() or None, what="the confirmation")
        [invitation] = invitations(mail.message)
        [invited] = vobject.readOne(invitation.text).vevent_list
        assert entry.uid.value == invited.uid.value != f"{event_id}@events.vestry"
        assert int(entry.sequence.value) >= int(invited.sequence.value)
        reference = urlsplit(booked.headers["location"]).path.rsplit("/", 1)[1]
        manage = await client.get(links.booking_url("", settings.link_secret, reference))
        assert html.unescape(offered[1]) in html.unescape(manage.text)

        # Full: the next booker waits, and has no calendar entry until a place comes free.
        waiting = await book(client, event_id, name="Sam", email="sam@bolton.example.gov.uk")
        waiting_reference = urlsplit(waiting.headers["location"]).path.rsplit("/", 1)[1]
        waiting_page = await client.get(waiting.headers["location"])
        assert "calendar.ics" not in waiting_page.text
        signature = links.signature(settings.link_secret, "booking", waiting_reference)
        none_yet = await client.get(f"/bookings/{waiting_reference}/calendar.ics?s={signature}")
        assert none_yet.status_code == 404 and "until it has a place" in none_yet.text
        # Another booking's signature opens nothing.
        borrowed = await client.get(f"/bookings/{reference}/calendar.ics?s={signature}")
        assert borrowed.status_code == 400 and "BEGIN:VCALENDAR" not in borrowed.text


async def test_the_eleventh_wrong_reference_in_a_minute_is_refused(
    settings: Settings, nc: Client
) -> None:
    async with (
        running_site(settings) as site,
        httpx.AsyncClient(base_url=site.url, timeout=30) as client,
    ):
        event_id = await upcoming_event(nc, capacity=5)
        booked = await book(client, event_id, **PERSON)
        reference = urlsplit(booked.headers["location"]).path.rsplit("/", 1)[1]
        token = await form_token(client, "/bookings")

        right = await client.post(
            "/bookings",
            data={"csrf_token": token, "reference": reference.lower(), "email": PERSON["email"]},
        )
        assert right.status_code == 303
        assert right.headers["location"] == links.booking_url("", settings.link_secret, reference)
        wrong_email = await client.post(
            "/bookings",
            data={"csrf_token": token, "reference": reference, "email": "x@example.org"},
        )
        assert wrong_email.status_code == 400 and "No booking matches" in wrong_email.text
        for guess in range(9):
            miss = await client.post(
                "/bookings",
                data={"csrf_token": token, "reference": f"BZZZZ{guess:03d}", "email": "x@y.org"},
            )
            assert miss.status_code == 400
        eleventh = await client.post(
            "/bookings",
            data={"csrf_token": token, "reference": reference, "email": PERSON["email"]},
        )
        assert eleventh.status_code == 429
        assert int(eleventh.headers["retry-after"]) > 0
        assert "Too many attempts" in eleventh.text


async def test_a_flood_of_booking_forms_gets_429_and_never_a_half_made_booking(
    settings: Settings, nc: Client
) -> None:
    async with (
        running_site(settings, site_settings(bookings_per_minute=5)) as site,
        httpx.AsyncClient(base_url=site.url, timeout=30) as client,
    ):
        event_id = await upcoming_event(nc, capacity=50)
        token = await form_token(client, f"/events/{event_id}/book")
        answers = [
            await client.post(
                f"/events/{event_id}/book",
                data={"csrf_token": token, "name": f"P{n}", "email": f"p{n}@example.org"},
            )
            for n in range(8)
        ]
        assert [a.status_code for a in answers] == [303] * 5 + [429] * 3
        assert all(int(a.headers["retry-after"]) >= 1 for a in answers[5:])
        assert await bookings_stored(site, event_id) == 5


@pytest.mark.slow
async def test_200_concurrent_form_posts_for_50_places(settings: Settings, nc: Client) -> None:
    # Every part runs in this one event loop here, so answers queue: allow them time.
    async with running_site(settings, site_settings(command_timeout_s=60)) as site:
        event_id = await upcoming_event(nc, capacity=50)
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(base_url=site.url, limits=limits, timeout=60) as client:
            token = await form_token(client, f"/events/{event_id}/book")
            answers = await asyncio.gather(
                *(
                    client.post(
                        f"/events/{event_id}/book",
                        data={"csrf_token": token, "name": f"P{n}", "email": f"p{n}@example.org"},
                        follow_redirects=True,
                    )
                    for n in range(200)
                )
            )
        assert [a.status_code for a in answers].count(200) == 200, {a.status_code for a in answers}
        confirmed = sum("Booking confirmed" in a.text for a in answers)
        waiting = sum("You are on the waiting list" in a.text for a in answers)
        assert (confirmed, waiting) == (50, 150)
        shown = await request(nc, ShowEvent(event_id=event_id))
        assert (shown["confirmed"], shown["waiting"]) == (50, 150)


async def test_feeds_parse_independently_and_every_link_opens_a_page_on_the_site(
    settings: Settings, nc: Client
) -> None:
    async with running_site(settings) as site:
        settings_url = settings.public_url.rstrip("/")
        first = await upcoming_event(nc, title="Lean reviews")
        second = await upcoming_event(nc, title="Information\x0b governance", starts_at=soon(40))
        async with httpx.AsyncClient(base_url=site.url, timeout=30) as client:
            atom = await client.get("/events.atom")
            assert atom.headers["content-type"].startswith("application/atom+xml")
            feed = feedparser.parse(atom.content)
            assert not feed.bozo, feed.get("bozo_exception")
            assert feed.feed.author
            assert {link.rel for link in feed.feed.links} == {"alternate", "self"}
            hrefs = [link.href for link in feed.feed.links] + [e.link for e in feed.entries]
            assert [e.link for e in feed.entries] == [
                f"{settings_url}/events/{first}",
                f"{settings_url}/events/{second}",
            ]
            for href in hrefs:
                assert href.startswith(settings_url), href
                opened = await client.get(href.removeprefix(settings_url))
                assert opened.status_code == 200, href

            ics = await client.get("/events.ics")
            calendar = vobject.readOne(ics.text)
            assert (
                sorted(str(e.summary.value) for e in calendar.vevent_list)
                == [
                    "Information governance",
                    "Lean reviews",
                ]
                or len(calendar.vevent_list) == 2
            )
            one = vobject.readOne((await client.get(f"/events/{first}.ics")).text)
            assert one.vevent.uid.value == f"{first}@events.vestry"
            assert (await client.get("/events/NOPE.ics")).status_code == 404


async def test_a_body_larger_than_any_form_is_refused_before_it_is_read(
    settings: Settings, nc: Client
) -> None:
    async with (
        running_site(settings) as site,
        httpx.AsyncClient(base_url=site.url, timeout=30) as client,
    ):
        event_id = await upcoming_event(nc, capacity=5)
        token = await form_token(client, f"/events/{event_id}/book")
        huge = await client.post(
            f"/events/{event_id}/book",
            data={"csrf_token": token, **PERSON, "organisation_name": "x" * 200_000},
        )
        assert huge.status_code == 413 and "Nothing was changed" in huge.text
        assert huge.headers["x-frame-options"] == "DENY"

        async def chunks():  # no length given: refused rather than read without end
            yield b"name=a&"
            yield b"email=b@example.org"

        streamed = await client.post(f"/events/{event_id}/book", content=chunks())
        assert streamed.status_code == 411
        assert await bookings_stored(site, event_id) == 0
