"""SMS parts counted as the carriers count them, at every boundary, and held to two
independent counters from npm: Twilio's ``sms-segments-calculator`` and ``split-sms``.

Each row's expected count comes from the published rules, worked by hand, not from
Vestry's code. GSM-7: 160 septets in one message, else 153 a part; an extension
character (``€[]{}|^~\\`` and form feed) is an escape and itself, two septets never
split, so one that would straddle a boundary starts the next part. UCS-2: 70 UTF-16
units in one message, else 67 a part; a character beyond U+FFFF (an emoji) is a
surrogate pair, never split. Rows marked ``notify`` are counted after GOV.UK
Notify's character replacements, as Notify sends them.
"""

from __future__ import annotations

from typing import NamedTuple

import pytest

from services.notifications.segments import count_segments, notify_normalise
from tests.node import run_node_json

A, EURO, L_STROKE, SMILE = "a", "€", "ł", "🙂"  # GSM-7, GSM-7 extension, UCS-2, surrogate pair
FLAG = "🇬🇧"  # two regional indicators: two surrogate pairs, one grapheme
FAMILY = "👨‍👩‍👧"  # three emoji joined by two zero-width joiners: 8 units, one grapheme


class Row(NamedTuple):
    id: str
    text: str
    encoding: str
    segments: int
    notify: bool = False  # counted after Notify's replacements


ROWS = [
    # GSM-7, plain: 160 in one, then 153 a part.
    Row("gsm-empty", "", "GSM-7", 1),
    Row("gsm-1", A, "GSM-7", 1),
    Row("gsm-153", A * 153, "GSM-7", 1),
    Row("gsm-160", A * 160, "GSM-7", 1),
    Row("gsm-161", A * 161, "GSM-7", 2),
    Row("gsm-306", A * 306, "GSM-7", 2),
    Row("gsm-307", A * 307, "GSM-7", 3),
    Row("gsm-459", A * 459, "GSM-7", 3),
    Row("gsm-460", A * 460, "GSM-7", 4),
    Row("gsm-at-signs-160", "@" * 160, "GSM-7", 1),
    Row("gsm-accented-letters", "£95 café à Zürich é ñ Ø Å ß", "GSM-7", 1),
    Row("gsm-newlines-160", "a\n" * 80, "GSM-7", 1),
    Row("gsm-newlines-161", "a\n" * 80 + A, "GSM-7", 2),
    Row("gsm-crlf-160", (A * 78 + "\r\n") * 2, "GSM-7", 1),
    # GSM-7 extension characters count two; the pair is never split.
    Row("ext-80-euros-160", EURO * 80, "GSM-7", 1),
    Row("ext-80-euros-and-a", EURO * 80 + A, "GSM-7", 2),
    Row("ext-77-euros-154", EURO * 77, "GSM-7", 1),
    Row("ext-81-euros-162", EURO * 81, "GSM-7", 2),
    Row("ext-152-euros-304", EURO * 152, "GSM-7", 2),
    Row("ext-153-euros-306", EURO * 153, "GSM-7", 3),  # 76 a part: 76 + 76 + 1
    Row("ext-158a-euro-160", A * 158 + EURO, "GSM-7", 1),
    Row("ext-159a-euro-161", A * 159 + EURO, "GSM-7", 2),
    Row("ext-159a-caret-161", A * 159 + "^", "GSM-7", 2),
    Row("ext-159a-formfeed-161", A * 159 + "\f", "GSM-7", 2),
    Row("ext-152a-euro-154", A * 152 + EURO, "GSM-7", 1),
    Row("ext-152a-euro-7a-161", A * 152 + EURO + A * 7, "GSM-7", 2),
    Row("ext-straddles-153-306", A * 152 + EURO + A * 152, "GSM-7", 3),  # the case
    Row("ext-bracket-straddles-153", A * 152 + "[" + A * 152, "GSM-7", 3),
    Row("ext-ends-part-1-306", A * 151 + EURO + A * 153, "GSM-7", 2),
    Row("ext-starts-part-2-306", A * 153 + EURO + A * 151, "GSM-7", 2),
    Row("ext-pushed-305", A * 152 + EURO + A * 151, "GSM-7", 2),
    Row("ext-two-at-boundary-305", A * 151 + EURO + EURO + A * 150, "GSM-7", 2),
    Row("ext-at-306-ends-part-2", A * 304 + EURO, "GSM-7", 2),
    Row("ext-straddles-306-307", A * 305 + EURO, "GSM-7", 3),
    Row("ext-straddles-306-459", A * 305 + EURO + A * 152, "GSM-7", 4),
    Row("ext-starts-part-3-459", A * 306 + EURO + A * 151, "GSM-7", 3),
    Row("ext-ends-part-3-459", A * 457 + EURO, "GSM-7", 3),
    Row("ext-straddles-459-460", A * 458 + EURO, "GSM-7", 4),
    Row("ext-after-459-461", A * 459 + EURO, "GSM-7", 4),
    Row("ext-braces-160", "{}" * 40, "GSM-7", 1),
    Row("ext-mixed-16", "{}[]~|\\^", "GSM-7", 1),
    # UCS-2: one character outside GSM-7; 70 in one, then 67 a part.
    Row("ucs2-1", L_STROKE, "UCS-2", 1),
    Row("ucs2-67", L_STROKE + A * 66, "UCS-2", 1),
    Row("ucs2-70", L_STROKE + A * 69, "UCS-2", 1),
    Row("ucs2-71", L_STROKE + A * 70, "UCS-2", 2),
    Row("ucs2-134", L_STROKE + A * 133, "UCS-2", 2),
    Row("ucs2-135", L_STROKE + A * 134, "UCS-2", 3),
    Row("ucs2-201", L_STROKE + A * 200, "UCS-2", 3),
    Row("ucs2-202", L_STROKE + A * 201, "UCS-2", 4),
    Row("ucs2-euro-counts-one", L_STROKE + EURO * 69, "UCS-2", 1),
    Row("ucs2-euros-134", L_STROKE + EURO * 133, "UCS-2", 2),
    Row("ucs2-curly-quote", "It’s on", "UCS-2", 1),
    Row("ucs2-cjk-70", "会" * 70, "UCS-2", 1),
    Row("ucs2-cjk-71", "会" * 71, "UCS-2", 2),
    # Surrogate pairs: two units, never split.
    Row("emoji-33-66", SMILE * 33, "UCS-2", 1),
    Row("emoji-34-68", SMILE * 34, "UCS-2", 1),
    Row("emoji-35-70", SMILE * 35, "UCS-2", 1),
    Row("emoji-36-72", SMILE * 36, "UCS-2", 2),
    Row("emoji-66-132", SMILE * 66, "UCS-2", 2),
    Row("emoji-67-134", SMILE * 67, "UCS-2", 3),  # the case: 33 a part
    Row("emoji-68-136", SMILE * 68, "UCS-2", 3),
    Row("emoji-99-198", SMILE * 99, "UCS-2", 3),
    Row("emoji-100-200", SMILE * 100, "UCS-2", 4),
    Row("emoji-at-66-67-straddles", A * 66 + SMILE + A * 66, "UCS-2", 3),
    Row("emoji-at-65-66-fits", A * 65 + SMILE + A * 67, "UCS-2", 2),
    Row("emoji-at-67-68-starts-part-2", A * 67 + SMILE + A * 65, "UCS-2", 2),
    Row("emoji-straddles-after-l", L_STROKE + A * 65 + SMILE + A * 66, "UCS-2", 3),
    Row("emoji-ends-part-1", L_STROKE + A * 64 + SMILE + A * 67, "UCS-2", 2),
    Row("emoji-single-69", L_STROKE + A * 66 + SMILE, "UCS-2", 1),
    Row("emoji-single-70", L_STROKE + A * 67 + SMILE, "UCS-2", 1),
    Row("emoji-71", L_STROKE + A * 68 + SMILE, "UCS-2", 2),
    # Graphemes of several pairs: carriers split between pairs (see TWILIO_GRAPHEMES).
    Row("flag-split-between-pairs", L_STROKE + A * 64 + FLAG + A * 64, "UCS-2", 2),
    Row("family-split-between-pairs", L_STROKE + A * 63 + FAMILY + A * 62, "UCS-2", 2),
    # GOV.UK Notify's replacements, then counted.
    Row(
        "notify-booking-em-dash-quotes",
        "North West Partnership: your place at Lean — “Councils’ data” on Tue 9 Jun 2026, "
        "10:00 is confirmed. Ref BK7Q2M4X. Details by email.",
        "GSM-7",
        1,
        notify=True,
    ),
    Row("notify-ellipsis-160", A * 157 + "…", "GSM-7", 1, notify=True),
    Row("notify-ellipsis-161", A * 158 + "…", "GSM-7", 2, notify=True),
    Row("notify-em-dash-160", A * 159 + "—", "GSM-7", 1, notify=True),
    Row("notify-en-dash-161", A * 160 + "–", "GSM-7", 2, notify=True),
    Row("notify-zero-width-removed", A * 160 + "\u200b\u2060\ufeff", "GSM-7", 1, notify=True),
    Row("notify-nbsp-160", A * 80 + "\u00a0" + A * 79, "GSM-7", 1, notify=True),
    Row("notify-en-space-160", A * 80 + "\u2002" + A * 79, "GSM-7", 1, notify=True),
    Row("notify-tab-161", A * 80 + "\t" + A * 80, "GSM-7", 2, notify=True),
    Row("notify-curly-singles-160", "’" * 160, "GSM-7", 1, notify=True),
    Row("notify-curly-doubles-160", "“" + A * 158 + "”", "GSM-7", 1, notify=True),
    Row("notify-emoji-become-?", SMILE * 67, "GSM-7", 1, notify=True),
    Row("notify-l-stroke-160", L_STROKE + A * 159, "GSM-7", 1, notify=True),
    Row("notify-c-cedilla-160", "ç" * 160, "GSM-7", 1, notify=True),
    Row("notify-welsh-w-70", "ŵ" + A * 69, "UCS-2", 1, notify=True),
    Row("notify-welsh-w-71", "ŵ" + A * 70, "UCS-2", 2, notify=True),
    Row("notify-welsh-ellipsis-70", "ŵ" + A * 66 + "…", "UCS-2", 1, notify=True),
    Row("notify-dash-after-euro-306", A * 152 + EURO + "—" + A * 151, "GSM-7", 3, notify=True),
]

# Twilio's calculator keeps a whole grapheme in one part (a flag, an emoji family),
# which no carrier rule asks for: it moves the whole cluster on and counts one part
# more than the carriers. split-sms splits between surrogate pairs, as carriers do,
# so for these rows the test follows the carrier rule and holds split-sms to it.
TWILIO_GRAPHEMES = {"flag-split-between-pairs": 3, "family-split-between-pairs": 3}

COUNT_BOTH = """
const {SegmentedMessage} = require('sms-segments-calculator');
const splitSms = require('split-sms');
let input = '';
process.stdin.on('data', (chunk) => { input += chunk; });
process.stdin.on('end', () => {
  const answers = JSON.parse(input).map((text) => {
    const twilio = new SegmentedMessage(text);
    const split = splitSms.split(text);
    return {
      twilio: twilio.segmentsCount,
      twilioEncoding: twilio.getEncodingName(),
      split: split.parts.length,
      splitEncoding: split.characterSet === 'GSM' ? 'GSM-7' : 'UCS-2',
    };
  });
  process.stdout.write(JSON.stringify(answers));
});
"""


def sent(row: Row) -> str:
    """The text as it goes to the carrier."""
    return notify_normalise(row.text) if row.notify else row.text


def test_the_table_covers_every_boundary() -> None:
    assert len(ROWS) >= 60
    assert len({row.id for row in ROWS}) == len(ROWS)


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_vestry_counts_as_the_carriers_do(row: Row) -> None:
    counted = count_segments(sent(row))
    assert (counted.encoding, counted.segments) == (row.encoding, row.segments)


def test_the_npm_counters_agree_with_the_table() -> None:
    answers = run_node_json(COUNT_BOTH, [sent(row) for row in ROWS])
    wrong = []
    for row, answer in zip(ROWS, answers, strict=True):
        twilio_expected = TWILIO_GRAPHEMES.get(row.id, row.segments)
        if (answer["twilioEncoding"], answer["twilio"]) != (row.encoding, twilio_expected):
            wrong.append(f"{row.id}: sms-segments-calculator {answer}")
        if (answer["splitEncoding"], answer["split"]) != (row.encoding, row.segments):
            wrong.append(f"{row.id}: split-sms {answer}")
    assert not wrong, "\n".join(wrong)


def test_the_two_npm_counters_disagree_only_on_graphemes_of_several_pairs() -> None:
    answers = run_node_json(COUNT_BOTH, [sent(row) for row in ROWS])
    disagree = {row.id for row, a in zip(ROWS, answers, strict=True) if a["twilio"] != a["split"]}
    assert disagree == set(TWILIO_GRAPHEMES)


@pytest.mark.parametrize(
    ("written", "sent_by_notify"),
    [
        ("Lean — “Councils’ data” – ‘draft’…", "Lean - \"Councils' data\" - 'draft'..."),
        ("a\u00a0b\u202fc\td", "a b c d"),
        ("gov\u200b.uk\u200c\u200d\u2060\ufeff\u180e\u2028\u2029", "gov.uk"),
        ("Łódź ça", "Lódz ca"),  # ł by Notify's table; ó (Welsh) kept; ź, ç lose the accent
        ("Gŵyl Dewi, ŷ â ê î ô û", "Gŵyl Dewi, ŷ â ê î ô û"),  # Welsh letters Notify keeps
        ("£5 €5 {x} [y] ~ | ^ \\ @ é ñ Ø", "£5 €5 {x} [y] ~ | ^ \\ @ é ñ Ø"),
        ("🙂 会 ж \f", "? ? ? ?"),  # nothing to downgrade to
        ("a\u2002b\u2009c\u3000d", "a b c d"),  # other spaces: a space, not "?"
    ],
)
def test_notify_normalise_applies_notifys_replacements(written: str, sent_by_notify: str) -> None:
    assert notify_normalise(written) == sent_by_notify


def test_notify_normalise_is_settled_after_one_pass() -> None:
    text = "ḗ “x” — ǖ 🙂\u00a0ç\tŁ ά"
    once = notify_normalise(text)
    assert notify_normalise(once) == once
    assert once == 'e "x" - ü ? c L ?'  # ά: α is not GSM-7, and Notify's next pass gives ?


def test_units_are_septets_or_utf16_units() -> None:
    assert count_segments(EURO * 80).units == 160
    assert count_segments("{}[]~|\\^").units == 16
    assert count_segments(SMILE * 35).units == 70
    assert count_segments(L_STROKE + A * 9).units == 10
