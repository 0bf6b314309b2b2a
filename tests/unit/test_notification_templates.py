"""Every shipped template renders with its sample data; SMS fit the segment limit."""

from __future__ import annotations

from pathlib import Path

import pytest
from icalendar import Calendar

from kernel.settings import Settings
from services.notifications.calendar import calendar_attachment
from services.notifications.catalogue import MESSAGE_TYPES
from services.notifications.segments import count_segments
from services.notifications.templates import TemplateProblem, Templates

TEMPLATES = Templates(partnership=Settings().partnership_name)


def test_every_message_type_of_the_issue_is_shipped() -> None:
    shipped = TEMPLATES.names()
    for name, spec in MESSAGE_TYPES.items():
        assert shipped.get(name) == sorted(spec.channels), name


@pytest.mark.parametrize("name", sorted(MESSAGE_TYPES))
def test_email_renders_subject_text_and_html_with_sample_data(name: str) -> None:
    rendered = TEMPLATES.email(name, MESSAGE_TYPES[name].sample)
    assert rendered.subject and "\n" not in rendered.subject
    assert rendered.text.strip() and rendered.html.strip().startswith("<!doctype html>")


@pytest.mark.parametrize(
    "name", sorted(n for n, spec in MESSAGE_TYPES.items() if "sms" in spec.channels)
)
def test_every_sms_template_fits_the_segment_limit(name: str) -> None:
    limit = Settings().sms_segment_limit
    text = TEMPLATES.sms(name, MESSAGE_TYPES[name].sample)
    assert count_segments(text).segments <= limit, f"{name}: {len(text)} chars: {text}"


def test_overdue_reminder_is_worded_by_stage() -> None:
    sample = MESSAGE_TYPES["invoice_overdue"].sample
    subjects = {
        stage: TEMPLATES.email("invoice_overdue", {**sample, "stage": stage}).subject
        for stage in ("first", "second", "final")
    }
    assert subjects["first"].startswith("Reminder")
    assert subjects["second"].startswith("Second reminder")
    assert subjects["final"].startswith("Final reminder")


def test_a_missing_variable_is_an_error_naming_it() -> None:
    sample = dict(MESSAGE_TYPES["security_advisory"].sample)
    del sample["severity"]
    with pytest.raises(TemplateProblem, match="severity") as problem:
        TEMPLATES.sms("security_advisory", sample)
    assert problem.value.field == "data"


def test_html_is_escaped_but_text_is_not() -> None:
    sample = {**MESSAGE_TYPES["broadcast"].sample, "headline": "Fish & <chips>"}
    rendered = TEMPLATES.email("broadcast", sample)
    assert "Fish &amp; &lt;chips&gt;" in rendered.html
    assert "<chips>" not in rendered.html
    assert rendered.subject == "Fish & <chips>"


def test_unknown_template_and_missing_channel_are_refused() -> None:
    with pytest.raises(TemplateProblem) as unknown:
        TEMPLATES.check("no_such_thing", ["email"])
    assert unknown.value.code == "not_found"
    with pytest.raises(TemplateProblem) as channel:
        TEMPLATES.check("invoice_issued", ["sms"])
    assert channel.value.field == "channels"


def test_operator_directory_overrides_one_file_and_adds_types(tmp_path: Path) -> None:
    (tmp_path / "reminder.sms.j2").write_text("Don't forget {{ event_title }}!")
    (tmp_path / "bin_day.sms.j2").write_text("Bins: {{ day }}")
    templates = Templates(tmp_path)
    sample = MESSAGE_TYPES["reminder"].sample
    assert templates.sms("reminder", sample) == "Don't forget Lean in local government!"
    assert "Lean in local government" in templates.email("reminder", sample).text  # shipped
    assert templates.names()["bin_day"] == ["sms"]


def test_calendar_attachment_parses_and_cancels_with_a_raised_sequence() -> None:
    entry = MESSAGE_TYPES["booking_confirmed"].sample["calendar"]
    parsed = Calendar.from_ical(calendar_attachment(entry))
    (event,) = parsed.walk("VEVENT")
    assert str(parsed["METHOD"]) == "REQUEST"
    assert str(event["UID"]) == entry["uid"]
    assert event.decoded("DTSTART").isoformat() == "2026-06-09T09:00:00+00:00"
    cancelled = Calendar.from_ical(calendar_attachment({**entry, "sequence": 2}, cancel=True))
    (gone,) = cancelled.walk("VEVENT")
    assert str(cancelled["METHOD"]) == "CANCEL"
    assert str(gone["STATUS"]) == "CANCELLED" and int(gone["SEQUENCE"]) == 2


@pytest.mark.parametrize(
    "name",
    ["booking_confirmed", "booking_waitlisted", "booking_promoted", "event_changed", "reminder"],
)
def test_booking_emails_carry_the_signed_link_to_the_bookers_own_page(name: str) -> None:
    from kernel import links
    from services.notifications.templates import templates_for

    settings = Settings(public_url="https://events.example.org", link_secret="k")
    sample = MESSAGE_TYPES[name].sample
    rendered = templates_for(settings).email(name, sample)
    link = links.booking_url("https://events.example.org", "k", sample["reference"])
    assert link in rendered.text
    assert f'href="{link}"' in rendered.html.replace("&amp;", "&")
