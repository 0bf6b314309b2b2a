"""Lists as CSV files, for staff to take into a spreadsheet.

A cell that a spreadsheet would read as a formula (one starting with =, +, -, @, a tab
or a carriage return) is given a leading apostrophe: a booker's name must never run as
a formula on a member of staff's machine (OWASP's advice on CSV injection). Numbers
the export itself writes are left as they are.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence
from decimal import Decimal

from starlette.responses import Response

FORMULA = ("=", "+", "-", "@", "\t", "\r")
SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")


def cell(value: object) -> str | int | float | Decimal:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float | Decimal):
        return value
    text = str(value)
    return "'" + text if text.startswith(FORMULA) else text


def csv_response(
    filename: str, header: Sequence[str], rows: Iterable[Sequence[object]]
) -> Response:
    """A CSV download (UTF-8 with a byte-order mark, so spreadsheets read £ and accents)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows([cell(value) for value in row] for row in rows)
    name = SAFE_NAME.sub("-", filename)
    return Response(
        "\ufeff" + buffer.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="{name}"'},
    )


def decimal_pounds(pence: int | None) -> Decimal | None:
    """Pence as pounds for a spreadsheet, exactly: 321 → 3.21."""
    return None if pence is None else Decimal(pence).scaleb(-2)
