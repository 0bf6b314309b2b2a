"""Calendar invitations as iTIP (RFC 5546) asks, read by parsers nobody on the project
wrote; the event-changed email in words; broadcast paragraphs in HTML."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest

from contracts.calendar import invitation_uid
from contracts.events_v1 import CalendarEntry, Schedule
from kernel.settings import Settings
from services.notifications.calendar import Party, calendar_attachment
from services.notifications.catalogue import MESSAGE_TYPES
from services.notifications.handlers.facts import what_changed
from services.notifications.mailer import CALENDAR_ATTACHED, CALENDAR_CANCELLED, Mailer
from services.notifications.store import Delivery
from services.notifications.templates import Templates
from tests.itip_support import invitations, itip_problems, with_icaljs, with_vobject

SETTINGS = Settings(
    mail_from="North West Partnership <events@nwp.example.gov.uk>",
    partnership_name="North West Partnership",
)
TEMPLATES = Templates(partnership=SETTINGS.partnership_name)
CALENDAR_TEMPLATES = sorted(CALENDAR_ATTACHED | CALENDAR_CANCELLED)
INTERNAL_NAMES = re.compile(
    r"starts_at|ends_at|booking_closes_at|online_url|member_price|non_member_price|"
    r"places_per_organisation|\bcapacity\b|\(\s*\w+(,\s*\w+)*\s*\)"
)


def _mail(template: str, recipient: str = "priya.shah@bury.example.gov.uk", **context: object):
    sample = {**MESSAGE_TYPES[template].sample, **context}
    delivery = Delivery(
        id=f"d-{template}",
        recipient=recipient,
        channel="email",
        template=template,
        context=json.dumps(sample),
    )
    return Mailer(SETTINGS).compose(delivery)


@pytest.mark.parametrize("template", CALENDAR_TEMPLATES)
def test_every_attached_invitation_keeps_itip_as_vobject_reads_it(template: str) -> None:
    (invitation,) = invitations(_mail(template))
    read = with_vobject(invitation.text)
    assert itip_problems(invitation, read) == []
    assert read["method"] == ("CANCEL" if template in CALENDAR_CANCELLED else "REQUEST")
    (event,) = read["events"]
    (organizer,) = event["organizers"]
    assert organizer == {
        "address": "events@nwp.example.gov.uk",
        "cn": "North West Partnership",
        "rsvp": None,
        "partstat": None,
    }
    (attendee,) = event["attendees"]
    assert attendee["address"] == "priya.shah@bury.example.gov.uk"
    assert attendee["cn"] == "Priya Shah" and attendee["rsvp"] == "FALSE"


def test_every_attached_invitation_keeps_itip_as_icaljs_reads_it() -> None:
    found = [invitations(_mail(template))[0] for template in CALENDAR_TEMPLATES]
    for template, invitation, read in zip(
        CALENDAR_TEMPLATES, found, with_icaljs([i.text for i in found]), strict=True
    ):
        assert itip_problems(invitation, read) == [], template
        assert read == with_vobject(invitation.text), template  # the two parsers agree


def test_the_invitation_is_the_bookings_the_feed_keeps_the_events_uid() -> None:
    sample = MESSAGE_TYPES["booking_confirmed"].sample
    event_uid = sample["calendar"]["uid"]
    (invitation,) = invitations(_mail("booking_confirmed"))
    uid = with_vobject(invitation.text)["events"][0]["uid"]
    assert uid == invitation_uid(event_uid, sample["reference"]) != event_uid
    assert sample["reference"] not in uid  # half of what opens the booker's page
    # The same booking keeps its UID through change and cancellation; another booking
    # (the same person booking again) gets another.
    (changed,) = invitations(_mail("event_changed"))
    (cancelled,) = invitations(_mail("booking_cancelled"))
    assert with_vobject(changed.text)["events"][0]["uid"] == uid
    assert with_vobject(cancelled.text)["events"][0]["uid"] == uid
    (rebooked,) = invitations(_mail("booking_confirmed", reference="BQ4R8T2W"))
    assert with_vobject(rebooked.text)["events"][0]["uid"] not in (uid, event_uid)


def test_invitation_uid_is_stable_per_booking_and_keeps_the_events_domain() -> None:
    uid = invitation_uid("E7K3M9Q@events.vestry", "B7K3M9QX")
    assert uid == invitation_uid("E7K3M9Q@events.vestry", "b7k3m9qx ")
    assert uid.startswith("E7K3M9Q-booking-") and uid.endswith("@events.vestry")
    assert uid != invitation_uid("E7K3M9Q@events.vestry", "B7K3M9QY")
    assert uid != invitation_uid("E9Z9Z9Z@events.vestry", "B7K3M9QX")
    assert invitation_uid("no-domain", "B1").startswith("no-domain-booking-")


def test_a_cancel_names_the_attendee_without_accepting_and_says_cancelled() -> None:
    entry = {**MESSAGE_TYPES["booking_confirmed"].sample["calendar"], "sequence": 3}
    document = calendar_attachment(
        entry,
        cancel=True,
        uid="E1-booking-x@events.vestry",
        organizer=Party("North West Partnership", "events@nwp.example.gov.uk"),
        attendee=Party("Siân O'Neil, Jr", "sian@wigan.example.gov.uk"),
        now=datetime(2026, 5, 1, tzinfo=UTC),
    ).decode()
    read = with_vobject(document)
    (event,) = read["events"]
    assert (read["method"], event["status"], event["sequence"]) == ("CANCEL", "CANCELLED", 3)
    (attendee,) = event["attendees"]
    assert attendee["cn"] == "Siân O'Neil, Jr" and attendee["partstat"] is None
    assert "DTSTAMP:20260501T000000Z" in document


def test_the_calendar_part_says_its_method_and_charset() -> None:
    for template in CALENDAR_TEMPLATES:
        message = _mail(template)
        (part,) = [p for p in message.walk() if p.get_content_type() == "text/calendar"]
        method = "CANCEL" if template in CALENDAR_CANCELLED else "REQUEST"
        assert part.get_param("method") == method
        assert part.get_content_charset() == "utf-8"
        assert f"METHOD:{method}" in part.get_payload(decode=True).decode()


def test_from_is_the_organiser_and_named_after_the_partnership_if_the_setting_is_bare() -> None:
    bare = Settings(mail_from="events@nwp.example.gov.uk", partnership_name="North West P")
    delivery = Delivery(
        id="d-1",
        recipient="priya.shah@bury.example.gov.uk",
        channel="email",
        template="booking_confirmed",
        context=json.dumps(MESSAGE_TYPES["booking_confirmed"].sample),
    )
    message = Mailer(bare).compose(delivery)
    assert str(message["From"]) == "North West P <events@nwp.example.gov.uk>"
    (invitation,) = invitations(message)
    (event,) = with_vobject(invitation.text)["events"]
    assert event["organizers"][0]["address"] == "events@nwp.example.gov.uk"
    named = Mailer(SETTINGS).compose(delivery)
    assert str(named["From"]) == SETTINGS.mail_from


# The event-changed email, in words


def _entry(**changes: object) -> CalendarEntry:
    base = CalendarEntry(
        uid="E1@events.vestry",
        sequence=1,
        summary="Information governance forum",
        description="Data sharing agreements",
        starts_at=datetime(2026, 3, 3, 11, tzinfo=UTC),  # GMT: 11:00 in London
        ends_at=datetime(2026, 3, 3, 13, tzinfo=UTC),
        location="Bolton Town Hall",
        status="CONFIRMED",
    )
    return base.model_copy(update=changes)


def test_a_move_is_said_in_words() -> None:
    said = what_changed(["booking_closes_at", "ends_at", "starts_at", "venue"], _entry())
    assert said == [
        "It now starts at 11:00 on Tue 3 March 2026 and ends at 13:00.",
        "It is now at Bolton Town Hall.",
    ]


def test_a_move_says_what_it_was_as_well_as_what_it_is() -> None:
    was = Schedule(
        starts_at=datetime(2026, 3, 3, 10, tzinfo=UTC),
        ends_at=datetime(2026, 3, 3, 12, tzinfo=UTC),
        location="Wigan Life Centre",
    )
    assert what_changed(["starts_at", "ends_at", "venue"], _entry(), was) == [
        "It now starts at 11:00 on Tue 3 March 2026 and ends at 13:00, was 10:00.",
        "It is now at Bolton Town Hall, was Wigan Life Centre.",
    ]
    earlier_day = was.model_copy(update={"starts_at": datetime(2026, 3, 2, 10, tzinfo=UTC)})
    assert what_changed(["starts_at"], _entry(), earlier_day) == [
        "It now starts at 11:00 on Tue 3 March 2026, was 10:00 on Mon 2 March 2026."
    ]
    assert what_changed(["ends_at"], _entry(), was) == [
        "It now ends at 13:00, starting at 11:00 as before; it was to end at 12:00."
    ]


def test_each_kind_of_change_is_said_and_nothing_internal_is() -> None:
    summer = _entry(
        starts_at=datetime(2026, 6, 30, 22, tzinfo=UTC),  # 23:00 BST
        ends_at=datetime(2026, 7, 1, 8, tzinfo=UTC),
    )
    assert what_changed(["starts_at", "ends_at"], summer) == [
        "It now starts at 23:00 on Tue 30 June 2026 and ends at 09:00 on Wed 1 July 2026."
    ]
    assert what_changed(["ends_at"], _entry()) == [
        "It now ends at 13:00, starting at 11:00 as before."
    ]
    online = _entry(location=None, url="https://meet.example.org/igf")
    assert what_changed(["venue", "online_url"], online) == [
        "It no longer meets in person: it now takes place online.",
        "Its online link is now https://meet.example.org/igf",
    ]
    assert what_changed(["online_url"], _entry()) == ["It no longer has an online link."]
    assert what_changed(["title"], _entry()) == [
        "It is now called \u201cInformation governance forum\u201d."
    ]
    quiet = ["capacity", "member_price_minor", "booking_closes_at", "places_per_organisation"]
    assert what_changed(quiet, _entry()) == []


def test_the_event_changed_email_shows_the_words_and_no_field_names() -> None:
    sample = MESSAGE_TYPES["event_changed"].sample
    changes = what_changed(["booking_closes_at", "ends_at", "starts_at", "venue"], _entry())
    context = {
        **sample,
        "changed": ["booking_closes_at", "ends_at", "starts_at", "venue"],
        "changes": changes,
    }
    rendered = TEMPLATES.email("event_changed", context)
    for text in (rendered.text, rendered.html):
        assert "It now starts at 11:00 on Tue 3 March 2026 and ends at 13:00." in text
        assert "It is now at Bolton Town Hall." in text
        assert not INTERNAL_NAMES.search(text), text
    # A row planned before the words existed (only the names) still renders, and hides them.
    old = TEMPLATES.email("event_changed", {**sample, "changed": ["starts_at", "ends_at"]})
    for text in (old.text, old.html):
        assert "has changed" in text and "It now runs" in text
        assert not INTERNAL_NAMES.search(text), text


def test_the_words_are_escaped_in_html() -> None:
    sample = MESSAGE_TYPES["event_changed"].sample
    changes = what_changed(["venue"], _entry(location="Fish & <Chips> Hall"))
    html = TEMPLATES.email("event_changed", {**sample, "changes": changes}).html
    assert "It is now at Fish &amp; &lt;Chips&gt; Hall." in html


# Broadcast paragraphs


def _broadcast_body(html: str) -> str:
    return html.split("</h2>", 1)[1].split('<p style="color', 1)[0].strip()


def test_broadcast_html_keeps_paragraphs_and_line_breaks_and_escapes_them() -> None:
    sample = MESSAGE_TYPES["broadcast"].sample
    body = (
        "Collections move a day later.\nSaturday included.\r\n\r\n"
        "  \n\nBring <bins> & boxes by 7am.\n\n\n"
    )
    html = TEMPLATES.email("broadcast", {**sample, "body": body}).html
    assert _broadcast_body(html) == (
        "<p>Collections move a day later.<br>\nSaturday included.</p>\n"
        "<p>Bring &lt;bins&gt; &amp; boxes by 7am.</p>"
    )
    one = TEMPLATES.email("broadcast", sample).html
    assert _broadcast_body(one) == f"<p>{sample['body']}</p>"
    script = TEMPLATES.email("broadcast", {**sample, "body": "<script>x</script>\n\n<p>"}).html
    assert "<script>" not in script and _broadcast_body(script) == (
        "<p>&lt;script&gt;x&lt;/script&gt;</p>\n<p>&lt;p&gt;</p>"
    )
    text = TEMPLATES.email("broadcast", {**sample, "body": body}).text
    assert "Bring <bins> & boxes by 7am." in text  # the text part is as written
