"""Every SMS is held to VESTRY_SMS_SEGMENT_LIMIT before it is planned, counted as its
provider sends it: a booking SMS too long for the limit has its event's title (then
its place) shortened, never goes over; a broadcast too long is refused."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from contracts.notifications_v1 import SendBroadcast
from kernel.commands import Refused
from kernel.settings import Settings
from services.notifications import domain
from services.notifications.catalogue import MESSAGE_TYPES
from services.notifications.handlers.broadcasts import Broadcasts
from services.notifications.segments import ELLIPSIS, SmsTooLong, count_segments, fit_sms
from services.notifications.sms import prepared_text, segment_limit_check
from services.notifications.templates import SHIPPED, Templates

PARTNERSHIP = Settings().partnership_name
TEMPLATES = Templates(partnership=PARTNERSHIP)
PROVIDERS = ("capture", "notify")

TRANSACTIONAL_SMS = sorted(
    name for name, spec in MESSAGE_TYPES.items() if "sms" in spec.channels and not spec.broadcast
)
BROADCAST_SMS = sorted(
    name for name, spec in MESSAGE_TYPES.items() if "sms" in spec.channels and spec.broadcast
)

LONG_TITLES = {
    "plain": "Lean reviews in local government: a practitioners' day " * 6,
    "typographic": "Lean — “Councils’ data” and the ‘single view’… of the resident " * 4,
    "emoji": "Digital inclusion week 🙂 drop-in sessions for residents " * 5,
    "welsh": "Gŵyl Dewi: diwrnod dysgu i gynghorau lleol yng Nghymru " * 5,
    "extension": "Budgets [2026/27] {capital} & revenue €€€ | options ^ review " * 5,
}
LONG_WHERE = "Manchester Central Library, St Peter's Square, Manchester M2 5PD, room 4 " * 3


def settings_for(provider: str, limit: int = 2) -> Settings:
    return Settings(sms_provider=provider, sms_segment_limit=limit)


def parts(provider: str, text: str) -> int:
    return count_segments(prepared_text(provider, text)).segments


def booking(**values: Any) -> dict[str, Any]:
    return {**MESSAGE_TYPES["booking_confirmed"].sample, **values}


# The booking SMS


def test_a_booking_sms_with_an_em_dash_and_curly_quotes_is_one_gsm7_part_under_notify() -> None:
    context = booking(event_title="Lean — “Councils’ data”")
    text = TEMPLATES.sms("booking_confirmed", context)
    assert count_segments(text).encoding == "UCS-2"  # as written
    assert count_segments(text).segments == 2
    sent = prepared_text("notify", text)
    assert 'Lean - "Councils\' data"' in sent
    counted = count_segments(sent)
    assert (counted.encoding, counted.segments) == ("GSM-7", 1)
    # ... so under Notify nothing needs shortening, and under capture it fits two parts too.
    check = segment_limit_check(settings_for("notify", limit=1), TEMPLATES)
    assert check("booking_confirmed", context) is context


def test_the_capture_sink_keeps_and_counts_the_text_as_written() -> None:
    assert prepared_text("capture", "Lean — “x”") == "Lean — “x”"
    assert prepared_text("notify", "Lean — “x”") == 'Lean - "x"'


# Every shipped SMS template, with long values


@pytest.mark.parametrize("limit", [1, 2])
@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("title", sorted(LONG_TITLES))
@pytest.mark.parametrize("name", TRANSACTIONAL_SMS)
def test_every_booking_sms_with_long_values_is_planned_within_the_limit(
    name: str, title: str, provider: str, limit: int
) -> None:
    sample = {**MESSAGE_TYPES[name].sample, "event_title": LONG_TITLES[title], "where": LONG_WHERE}
    assert parts(provider, TEMPLATES.sms(name, sample)) > limit  # long enough to need cutting
    fitted = segment_limit_check(settings_for(provider, limit), TEMPLATES)(name, sample)
    assert fitted is not None
    text = TEMPLATES.sms(name, fitted)
    assert parts(provider, text) <= limit, text
    assert sample["reference"] in text and PARTNERSHIP in text
    if "{{ starts }}" in (SHIPPED / f"{name}.sms.j2").read_text():
        assert sample["starts"] in text
    shortened = fitted["event_title"]
    assert shortened.endswith(ELLIPSIS)
    assert LONG_TITLES[title].startswith(shortened.removesuffix(ELLIPSIS))
    assert {k: v for k, v in fitted.items() if k not in ("event_title", "where")} == {
        k: v for k, v in sample.items() if k not in ("event_title", "where")
    }


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("name", TRANSACTIONAL_SMS)
def test_a_booking_sms_that_fits_is_planned_untouched(name: str, provider: str) -> None:
    sample = MESSAGE_TYPES[name].sample
    assert segment_limit_check(settings_for(provider), TEMPLATES)(name, sample) is sample


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("name", BROADCAST_SMS)
def test_a_broadcast_sms_fits_with_its_sample_and_is_refused_when_too_long(
    name: str, provider: str
) -> None:
    broadcasts = Broadcasts(settings_for(provider), TEMPLATES)
    sample = MESSAGE_TYPES[name].sample
    broadcasts.check(SendBroadcast(topic="warp", channels=["sms"], template=name, data=sample))
    long = {**sample, "headline": "Bin collections " * 30, "title": "Phishing emails " * 30}
    with pytest.raises(Refused, match="the limit is 2") as refused:
        broadcasts.check(SendBroadcast(topic="warp", channels=["sms"], template=name, data=long))
    assert refused.value.error.field == "data"


def test_a_broadcast_with_curly_quotes_is_counted_as_notify_sends_it() -> None:
    # 120 typographic characters: UCS-2 as written (three parts), GSM-7 in one under Notify.
    data = {**MESSAGE_TYPES["broadcast"].sample, "headline": "“Bins’ days”—" * 10}
    command = SendBroadcast(topic="warp", channels=["sms"], template="broadcast", data=data)
    with pytest.raises(Refused):
        Broadcasts(settings_for("capture"), TEMPLATES).check(command)
    Broadcasts(settings_for("notify"), TEMPLATES).check(command)


# Planning: the SMS gets the fitted context, the email the whole one


def person() -> domain.Reachable:
    return domain.Reachable(
        contact_id="c1", email="p@example.gov.uk", mobile="+447400123456", sms_consent=True
    )


def test_planning_fits_the_sms_and_keeps_the_email_whole() -> None:
    context = booking(event_title=LONG_TITLES["plain"])
    check = segment_limit_check(settings_for("notify"), TEMPLATES)
    email, sms = domain.transactional(person(), "booking_confirmed", context, fit_sms=check)
    assert (email.channel, email.context) == ("email", context)
    assert sms.channel == "sms" and sms.recipient == "+447400123456"
    assert sms.context["event_title"].endswith(ELLIPSIS)
    assert parts("notify", TEMPLATES.sms("booking_confirmed", sms.context)) <= 2


def test_an_sms_that_cannot_fit_is_not_planned_and_the_email_still_is(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "booking_confirmed.sms.j2").write_text("{{ event_title }} " + "x" * 400)
    templates = Templates(tmp_path, partnership=PARTNERSHIP)
    check = segment_limit_check(settings_for("capture"), templates)
    with caplog.at_level(logging.WARNING):
        planned = domain.transactional(person(), "booking_confirmed", booking(), fit_sms=check)
    assert [p.channel for p in planned] == ["email"]
    assert "booking_confirmed SMS not planned" in caplog.text and "limit is 2" in caplog.text


def test_a_template_that_cannot_render_is_planned_as_it_is_for_the_sender_to_fail() -> None:
    check = segment_limit_check(settings_for("capture"), TEMPLATES)
    context = {"event_title": "x" * 400}  # no reference: the template cannot render
    assert check("booking_confirmed", context) is context


def test_without_a_check_planning_is_as_before() -> None:
    context = booking(event_title=LONG_TITLES["plain"])
    _, sms = domain.transactional(person(), "booking_confirmed", context)
    assert sms.context is context


# fit_sms itself


def render_line(values: dict[str, Any]) -> str:
    return f"Title: {values['title']}. Ref REF123."


def test_fit_keeps_a_context_that_fits() -> None:
    context = {"title": "short"}
    assert fit_sms(render_line, context, limit=1, shorten=["title"]) is context


def test_fit_cuts_as_little_as_it_takes_at_a_word_break() -> None:
    title = " ".join(f"word{n:02d}" for n in range(60))  # 419 characters
    fitted = fit_sms(render_line, {"title": title}, limit=1, shorten=["title"])
    text = render_line(fitted)
    assert count_segments(text).segments == 1
    kept = fitted["title"].removesuffix(ELLIPSIS)
    assert title.startswith(kept) and title[len(kept)] == " "  # cut at a space
    longer = title[: title.index(" ", len(kept) + 1)]  # one more word does not fit
    assert count_segments(render_line({"title": longer + ELLIPSIS})).segments > 1


def test_fit_cuts_the_first_named_value_before_the_next() -> None:
    def render(values: dict[str, Any]) -> str:
        return f"{values['title']} at {values['where']}"

    context = {"title": "T" * 200, "where": "W" * 200}
    fitted = fit_sms(render, context, limit=2, shorten=["title", "where"])
    assert fitted == {"title": "T" * 99 + ELLIPSIS, "where": "W" * 200}  # 102 + 4 + 200 = 306
    tight = fit_sms(render, context, limit=1, shorten=["title", "where"])
    # The title goes down to 24 characters before the place gives any: 27 + 4 + 129 = 160.
    assert tight == {"title": "T" * 24 + ELLIPSIS, "where": "W" * 126 + ELLIPSIS}


def test_a_cut_that_turns_the_text_into_gsm7_gives_the_other_values_their_room_back() -> None:
    def render(values: dict[str, Any]) -> str:
        return "F" * 100 + " " + values["title"] + " " + values["where"]

    context = {"title": "Ab—" + "c" * 100, "where": "W" * 300}
    fitted = fit_sms(render, context, limit=2, shorten=["title", "where"])
    # Cutting the title before its dash makes the text GSM-7: the place then keeps
    # 196 characters (101 + 5 + 1 + 199 = 306), not the 24 it had been cut to.
    assert fitted == {"title": "Ab" + ELLIPSIS, "where": "W" * 196 + ELLIPSIS}
    assert count_segments(render(fitted)) == count_segments("a" * 306)


def test_fit_counts_the_text_as_prepared_for_the_provider() -> None:
    title = "“Data”—" * 40  # 280 characters: UCS-2 as written, GSM-7 under Notify
    fitted_raw = fit_sms(render_line, {"title": title}, limit=2, shorten=["title"])
    fitted_notify = fit_sms(
        render_line,
        {"title": title},
        limit=2,
        shorten=["title"],
        prepare=lambda text: prepared_text("notify", text),
    )
    assert len(fitted_notify["title"]) > len(fitted_raw["title"])


def test_fit_raises_when_the_rest_is_too_long_by_itself() -> None:
    def render(values: dict[str, Any]) -> str:
        return values["title"] + "x" * 400

    with pytest.raises(SmsTooLong) as too_long:
        fit_sms(render, {"title": "abc"}, limit=2, shorten=["title"])
    assert (too_long.value.segments, too_long.value.limit) == (3, 2)
