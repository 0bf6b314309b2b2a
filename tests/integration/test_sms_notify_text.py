"""What Vestry hands GOV.UK Notify is the text Notify itself would send, with its
character replacements applied, so what Vestry counted is what goes; the capture
sink keeps and counts the text as written."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.notifications.segments import count_segments
from services.notifications.sms import CaptureSink, NotifyGateway, read_captured
from tests.notifications_support import NOTIFY_API_KEY, NOTIFY_TEMPLATE_ID, FakeNotify

WRITTEN = (
    "North West Partnership: your place at Lean — “Councils’ data”… on Tue 9 Jun 2026, "
    "10:00 is confirmed.\tRef BK7Q2M4X. Details by email."
)
AS_NOTIFY_SENDS = (
    'North West Partnership: your place at Lean - "Councils\' data"... on Tue 9 Jun 2026, '
    "10:00 is confirmed. Ref BK7Q2M4X. Details by email."
)


@pytest.fixture
async def notify() -> AsyncIterator[FakeNotify]:
    fake = FakeNotify()
    await fake.start()
    yield fake
    await fake.stop()


async def test_notify_is_handed_the_text_with_its_replacements_applied(notify: FakeNotify) -> None:
    gateway = NotifyGateway(
        api_key=NOTIFY_API_KEY, template_id=NOTIFY_TEMPLATE_ID, base_url=notify.url
    )
    try:
        await gateway.send("+447400123456", WRITTEN, reference="d-1")
    finally:
        await gateway.close()
    (received,) = notify.received
    body = received["personalisation"]["body"]
    assert body == AS_NOTIFY_SENDS
    assert count_segments(body).encoding == "GSM-7" and count_segments(body).segments == 1


async def test_the_capture_sink_keeps_and_counts_the_text_as_written(tmp_path: Path) -> None:
    sink = CaptureSink(tmp_path)
    await sink.send("+447400123456", WRITTEN, reference="d-1")
    (captured,) = read_captured(tmp_path)
    assert captured.text == WRITTEN
    assert (captured.encoding, captured.segments) == ("UCS-2", 2)
