"""The directory learnt from facts is the same whatever order the facts come in, and
whether one comes twice: what lets a rebuild give back what live traffic built."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from services.notifications.directory import Entry, Sighting, contact_id_for, learn, stamp

START = datetime(2026, 4, 1, 9, tzinfo=UTC)

sightings = st.builds(
    Sighting,
    email=st.sampled_from(["ann@bury.example.gov.uk", "ANN@bury.example.gov.uk "]),
    source=st.sampled_from(["membership", "billing", "booking"]),
    stamp=st.builds(
        stamp,
        st.integers(0, 5).map(lambda minutes: START + timedelta(minutes=minutes)),
        st.sampled_from(["a", "b", "c"]),
    ),
    name=st.none() | st.sampled_from(["Ann Ahmed", "Ann A."]),
    organisation=st.none() | st.sampled_from(["Bury Council", "Bury MBC"]),
    mobile=st.none() | st.sampled_from(["+447400111222", "+447400333444"]),
    sms_opt_in=st.booleans(),
)


def fold(seen: list[Sighting]) -> Entry | None:
    entry: Entry | None = None
    for sighting in seen:
        entry = learn(entry, sighting)
    return entry


@given(st.lists(sightings, min_size=1, max_size=8), st.randoms(use_true_random=False))
def test_any_order_and_any_repeat_gives_the_same_entry(
    seen: list[Sighting], rng: random.Random
) -> None:
    shuffled = seen + rng.sample(seen, k=len(seen) // 2)  # some come twice
    rng.shuffle(shuffled)
    assert fold(shuffled) == fold(seen)


def test_each_field_keeps_the_latest_value_a_fact_gave_it() -> None:
    early, late = stamp(START, "x"), stamp(START + timedelta(days=1), "y")
    entry = fold(
        [
            Sighting("ann@bury.example.gov.uk", "booking", late, name="Ann Ahmed", mobile=None),
            Sighting(
                "ann@bury.example.gov.uk",
                "membership",
                early,
                name="A. Ahmed",
                organisation="Bury Council",
                mobile="+447400111222",
                sms_opt_in=True,
            ),
        ]
    )
    assert entry == Entry(
        email="ann@bury.example.gov.uk",
        contact_id=contact_id_for("ann@bury.example.gov.uk"),
        sources="booking,membership",
        name="Ann Ahmed",
        name_stamp=late,
        organisation="Bury Council",
        organisation_stamp=early,
        mobile="+447400111222",
        mobile_stamp=early,
        sms_opt_in=True,
        first_seen=early,
        last_seen=late,
    )


def test_an_opt_in_without_a_mobile_is_not_an_opt_in() -> None:
    entry = learn(None, Sighting("ben@wigan.example.gov.uk", "booking", "s", sms_opt_in=True))
    assert entry.sms_opt_in is False
