"""SMS parts counted as the gateways count them, at the boundaries."""

from __future__ import annotations

import pytest

from services.notifications.segments import count_segments


@pytest.mark.parametrize(
    ("length", "segments"),
    [(0, 1), (1, 1), (153, 1), (160, 1), (161, 2), (306, 2), (307, 3), (459, 3), (460, 4)],
)
def test_gsm7_text_takes_160_in_one_part_then_153_per_part(length: int, segments: int) -> None:
    counted = count_segments("a" * length)
    assert (counted.encoding, counted.units, counted.segments) == ("GSM-7", length, segments)


@pytest.mark.parametrize(
    ("length", "segments"), [(67, 1), (70, 1), (71, 2), (134, 2), (135, 3), (201, 3), (202, 4)]
)
def test_one_character_outside_gsm7_makes_it_ucs2_70_then_67_per_part(
    length: int, segments: int
) -> None:
    text = "ł" + "a" * (length - 1)  # Polish ł is not in GSM-7
    counted = count_segments(text)
    assert (counted.encoding, counted.units, counted.segments) == ("UCS-2", length, segments)


def test_extension_characters_count_two() -> None:
    assert count_segments("€" * 80).units == 160
    assert count_segments("€" * 80).segments == 1
    assert count_segments("€" * 80 + "a").segments == 2
    assert count_segments("a" * 159 + "^").segments == 2  # 161 septets
    assert count_segments("{}[]~|\\^").units == 16


def test_pound_sign_and_accented_letters_of_gsm7_stay_gsm7() -> None:
    assert count_segments("£95 café à Zürich é").encoding == "GSM-7"


def test_an_emoji_is_two_ucs2_units() -> None:
    counted = count_segments("🙂" * 35)
    assert (counted.encoding, counted.units, counted.segments) == ("UCS-2", 70, 1)
    assert count_segments("🙂" * 36).segments == 2


def test_curly_quotes_switch_to_ucs2() -> None:
    assert count_segments("It’s on").encoding == "UCS-2"
