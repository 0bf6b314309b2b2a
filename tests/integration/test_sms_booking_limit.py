"""A booking SMS is held to the segment limit before it is planned: an event title too
long for it is shortened in the SMS, and the email keeps it whole."""

from __future__ import annotations

from nats.aio.client import Client

from contracts.events_v1 import BookPlace
from kernel.commands import request
from kernel.settings import Settings
from services.notifications.app import create_service
from services.notifications.segments import count_segments
from services.notifications.sms import read_captured
from tests.conftest import Mailbox, eventually
from tests.events_support import Clock, events_service, published_event
from tests.notifications_support import deliveries, quick

# 200 characters, the longest title an event may have: three parts in the SMS as written.
TITLE = ("Lean reviews in local government: mapping a council service end to end " * 3)[:200]


async def test_a_booking_sms_with_a_long_title_is_shortened_to_the_limit(
    settings: Settings, nc: Client, mailbox: Mailbox
) -> None:
    settings = quick(settings)
    async with events_service(settings, Clock()), create_service(settings).running() as notes:
        event_id = await published_event(nc, title=TITLE)
        await request(
            nc,
            BookPlace(
                event_id=event_id,
                name="Booker 1",
                email="booker1@council.example.gov.uk",
                phone="07400 123456",
                sms=True,
            ),
        )
        sms_dir = settings.data_dir / "sms"
        await eventually(lambda: len(read_captured(sms_dir)) == 1, what="one SMS")
        await eventually(lambda: len(mailbox.mails()) == 1, what="the email")

        (sms,) = read_captured(sms_dir)
        assert sms.segments <= settings.sms_segment_limit == 2
        assert count_segments(sms.text).segments == sms.segments
        assert TITLE not in sms.text and "Lean reviews in local government" in sms.text
        assert "..." in sms.text and "Ref " in sms.text
        (mail,) = mailbox.mails()
        assert TITLE in " ".join(mail.text().split())
        rows = {row.channel: row for row in await deliveries(notes)}
        assert rows["sms"].template_context["event_title"].endswith("...")
        assert rows["email"].template_context["event_title"] == TITLE
