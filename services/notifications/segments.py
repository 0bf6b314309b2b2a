"""How many SMS parts a text takes, counted as the carriers count them; pure, no I/O.

A text that uses only the GSM 03.38 alphabet travels as 7-bit septets: 160 in
one message, 153 per part once it is split (the rest of each part carries the
concatenation header). The extension characters (``^{}\\[~]|€`` and form feed)
take an escape septet and the character's own, so they count two, and the two
are never split across parts: one that would straddle a boundary starts the
next part, leaving the previous one a septet short. One character outside the
alphabet switches the whole text to UCS-2: 70 UTF-16 units in one message, 67
per part, and a character outside the Basic Multilingual Plane (an emoji) is a
surrogate pair, two units that are never split either.

So ``152×a + € + 152×a`` (306 septets) takes three parts, not two, and 67
emoji (134 units) take three parts, not two. The npm packages
``sms-segments-calculator`` (Twilio's) and ``split-sms`` count the same way
(tests/unit/test_sms_segments.py holds both to a table of boundary cases).

GOV.UK Notify rewrites a text before it encodes it (``notify_normalise``):
typographic dashes, quotes and ellipses, odd spaces and tabs become their plain
GSM-7 forms, so a text that is UCS-2 as written may travel as GSM-7 there.
``fit_sms`` shortens a message's free-text values (an event's title, say) until
the message fits a limit of parts.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")

# Septets (GSM-7) or UTF-16 units (UCS-2) in one message, and in each part of a split one.
GSM7_SINGLE, GSM7_PART = 160, 153
UCS2_SINGLE, UCS2_PART = 70, 67

Encoding = Literal["GSM-7", "UCS-2"]


@dataclass(frozen=True)
class SegmentCount:
    """A text's encoding, its length in that encoding's units, and its parts."""

    encoding: Encoding
    units: int
    segments: int


def is_gsm7(text: str) -> bool:
    """Whether every character of ``text`` is in the GSM 03.38 alphabet or its extension."""
    return all(char in GSM7_BASIC or char in GSM7_EXTENSION for char in text)


def count_segments(text: str) -> SegmentCount:
    """The encoding and number of parts ``text`` takes as one SMS, as it is written."""
    if is_gsm7(text):
        sizes = [2 if char in GSM7_EXTENSION else 1 for char in text]
        return SegmentCount("GSM-7", sum(sizes), _parts(sizes, GSM7_SINGLE, GSM7_PART))
    # Python counts code points; UTF-16 needs two units for one above U+FFFF.
    sizes = [2 if ord(char) > 0xFFFF else 1 for char in text]
    return SegmentCount("UCS-2", sum(sizes), _parts(sizes, UCS2_SINGLE, UCS2_PART))


def _parts(sizes: list[int], single: int, part: int) -> int:
    """Parts for characters of these sizes: one if they all fit ``single``, else filled in
    order up to ``part`` units each, a character that does not fit whole starting the next."""
    if sum(sizes) <= single:
        return 1
    parts, used = 1, 0
    for size in sizes:
        if used + size > part:
            parts, used = parts + 1, 0
        used += size
    return parts


# GOV.UK Notify's replacements, from its notifications-utils (sanitise_text.SanitiseSMS,
# what Notify applies to every SMS before sending it): GSM-7 characters and the Welsh
# letters with diacritics are kept; these are replaced; a letter with a canonical
# decomposition becomes its base letter (ç → c); anything else becomes "?".
NOTIFY_REPLACEMENTS = {
    "\u2013": "-",  # en dash
    "\u2014": "-",  # em dash
    "\u2026": "...",  # horizontal ellipsis
    "\u2018": "'",  # left single quotation mark
    "\u2019": "'",  # right single quotation mark
    "\u201c": '"',  # left double quotation mark
    "\u201d": '"',  # right double quotation mark
    "\u180e": "",  # Mongolian vowel separator
    "\u200b": "",  # zero width space
    "\u200c": "",  # zero width non-joiner
    "\u200d": "",  # zero width joiner
    "\u2060": "",  # word joiner
    "\ufeff": "",  # zero width no-break space (byte order mark)
    "\u2028": "",  # line separator
    "\u2029": "",  # paragraph separator
    "\u00a0": " ",  # no-break space
    "\u202f": " ",  # narrow no-break space
    "\t": " ",  # tab
    "\u0141": "L",  # L with stroke
    "\u0142": "l",  # l with stroke
}
NOTIFY_WELSH = frozenset("àèìòùẁỳÀÈÌÒÙẀỲáéíóúẃýÁÉÍÓÚẂÝäëïöüẅÿÄËÏÖÜẄŸâêîôûŵŷÂÊÎÔÛŴŶ")
# Notify's GSM-7 set has the escape character too, but not form feed.
NOTIFY_KEPT = (GSM7_BASIC | GSM7_EXTENSION | NOTIFY_WELSH | {"\x1b"}) - {"\f"}


def notify_normalise(text: str) -> str:
    """``text`` as GOV.UK Notify sends it: its character replacements, applied first.

    En and em dashes become ``-``, curly quotes straight ones, an ellipsis ``...``,
    no-break spaces and tabs a space; zero-width characters go. A letter with an
    accent outside GSM-7 (and the Welsh set Notify keeps) loses the accent, and
    what Notify cannot downgrade (an emoji, Chinese) becomes ``?``, as there.

    The result is left unchanged by Notify's own pass over it, so what Vestry
    counts is exactly what Notify sends. For that, two things differ from one
    pass of Notify's: a decomposition is followed until it reaches a letter Notify
    keeps, else ``?`` (Notify stops at the first step, so ``ά`` gives ``α``, which
    its next pass would turn to ``?``); and other Unicode spaces (en space, thin
    space) become a space rather than ``?``. Notify also trims spaces before
    punctuation and blank lines; those only shorten a text, so a count of this
    text is never too low.
    """
    return "".join(_notify_char(char) for char in text)


def _notify_char(char: str) -> str:
    if char in NOTIFY_KEPT:
        return char
    if char in NOTIFY_REPLACEMENTS:
        return NOTIFY_REPLACEMENTS[char]
    seen = char
    while (decomposed := unicodedata.decomposition(seen)) and "<" not in decomposed:
        # A canonical decomposition ("0063 0327" for ç): its first code point is the letter.
        seen = chr(int(decomposed.split()[0], 16))
        if seen in NOTIFY_KEPT:
            return seen
    if unicodedata.category(char) == "Zs":
        return " "
    return "?"


# Making a message fit


class SmsTooLong(ValueError):
    """Raised when a message exceeds the limit even with its free text cut right down."""

    def __init__(self, segments: int, limit: int) -> None:
        super().__init__(f"the SMS takes {segments} parts even shortened; the limit is {limit}")
        self.segments = segments
        self.limit = limit


ELLIPSIS = "..."  # GSM-7 in any provider; "…" would make the whole text UCS-2
KEEP_AT_LEAST = 24  # characters of each value kept while another value can still give


def fit_sms(
    render: Callable[[dict[str, Any]], str],
    context: dict[str, Any],
    *,
    limit: int,
    shorten: Sequence[str],
    prepare: Callable[[str], str] = lambda text: text,
) -> dict[str, Any]:
    """``context``, with the values named in ``shorten`` cut short (ending ``...``) just
    enough that ``render(context)``, as ``prepare`` makes it for the provider, takes at
    most ``limit`` parts; ``context`` itself when it fits already.

    Values are cut in the order named, first down to ``KEEP_AT_LEAST`` characters
    each, then further, each by as little as it takes (at a word break when one
    is near); once it fits, each value is given back what then fits (a cut that
    drops the text's only UCS-2 character may leave room to spare). Raises SmsTooLong if
    even that does not fit: the rest of the message is too long by itself.
    """

    def parts(candidate: dict[str, Any]) -> int:
        return count_segments(prepare(render(candidate))).segments

    if parts(context) <= limit:
        return context
    fitted = dict(context)
    kept = {name: len(context[name]) for name in shorten if isinstance(context.get(name), str)}
    for floor in (KEEP_AT_LEAST, 0):
        for name, length in kept.items():
            if length <= floor:
                continue
            full: str = context[name]
            kept[name] = _longest_fitting(
                lambda n, name=name, full=full: parts({**fitted, name: _cut(full, n)}) <= limit,
                low=floor,
                high=length,
            )
            fitted[name] = _cut(full, kept[name])
            if parts(fitted) <= limit:
                # A cut that dropped the text's only UCS-2 character may have left room
                # to spare: each value, in order, is given back what now fits.
                for other, cut_at in kept.items():
                    whole: str = context[other]
                    kept[other] = _longest_fitting(
                        lambda n, other=other, whole=whole: (
                            parts({**fitted, other: _cut(whole, n)}) <= limit
                        ),
                        low=cut_at,
                        high=len(whole),
                    )
                    fitted[other] = _cut(whole, kept[other])
                return fitted
    raise SmsTooLong(parts(fitted), limit)


def _longest_fitting(fits: Callable[[int], bool], *, low: int, high: int) -> int:
    """The largest ``n`` in [low, high] for which ``fits(n)``, or ``low`` if none does.

    A longer prefix never takes fewer parts (a character added never lets the
    ones after it pack tighter, and never turns UCS-2 into GSM-7), so the search
    may halve the range.
    """
    best = low
    while low <= high:
        middle = (low + high) // 2
        if fits(middle):
            best, low = middle, middle + 1
        else:
            high = middle - 1
    return best


def _cut(value: str, keep: int) -> str:
    """The first ``keep`` characters of ``value`` and ``...``; back to a word break if one
    is within the last few characters, and never ending on a space or a joiner."""
    if keep >= len(value):
        return value
    head = value[:keep]
    space = head.rfind(" ")
    if space >= max(keep - 12, 1):
        head = head[:space]
    return head.rstrip(" \t\u200d\ufe0f,;:-–—") + ELLIPSIS
