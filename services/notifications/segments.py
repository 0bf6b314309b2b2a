"""How many SMS parts a text takes, counted as the gateways count them.

A text that uses only the GSM 03.38 alphabet travels as 7-bit septets: 160 in
one message, 153 per part once it is split (the rest of each part carries the
concatenation header). The extension characters (``^{}\\[~]|€`` and form feed)
take an escape septet each, so they count two. One character outside the
alphabet switches the whole text to UCS-2: 70 UTF-16 units in one message, 67
per part.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")

Encoding = Literal["GSM-7", "UCS-2"]


@dataclass(frozen=True)
class SegmentCount:
    """A text's encoding, its length in that encoding's units, and its parts."""

    encoding: Encoding
    units: int
    segments: int


def count_segments(text: str) -> SegmentCount:
    """The encoding and number of parts ``text`` takes as one SMS."""
    if all(char in GSM7_BASIC or char in GSM7_EXTENSION for char in text):
        units = sum(2 if char in GSM7_EXTENSION else 1 for char in text)
        return SegmentCount("GSM-7", units, _parts(units, single=160, multi=153))
    units = len(text.encode("utf-16-le")) // 2  # an emoji is two units
    return SegmentCount("UCS-2", units, _parts(units, single=70, multi=67))


def _parts(units: int, *, single: int, multi: int) -> int:
    if units <= single:
        return 1
    return math.ceil(units / multi)
