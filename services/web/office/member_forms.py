"""The finance officer's forms about members, apart from their views: a member joining,
a file of members, a change of tier from a date, and a member leaving. Checked for shape
only; whether it may happen (a name already a member's, an unknown tier, a date outside
the books) is the subscriptions service's to say, and its refusal lands on the field,
or the line of the file, it names."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from datetime import date

from pydantic import ValidationError
from starlette.datastructures import FormData

from contracts.subscriptions_v1 import ChangeTier, ImportMembers, JoinMember, LeaveMember
from kernel.commands import validation_error
from services.web.forms import FormProblems, sentence, text_value
from services.web.office.forms import DateFields

# The columns of a members file, as `vestry members import` reads them: the first four
# needed, the last two optional.
COLUMNS = ("name", "tier", "billing_email", "joined_on", "reference", "phone")
NEEDED = COLUMNS[:4]
MOST_ROWS = 10_000  # as many as ImportMembers takes
# The subscriptions service names every bad row in its refusal: "line 3: why; line 5: why".
LINE = re.compile(r"line (\d+): (.*?)(?=; line \d+: |$)")


def refusal_by_line(message: str) -> list[tuple[int, str]]:
    """The rows a refusal of ImportMembers names, each with why, in line order."""
    return sorted((int(line), sentence(why)) for line, why in LINE.findall(message))


@dataclass
class MemberForm:
    """An organisation joining: its name, tier, billing email, first day and optional
    reference and phone."""

    name: str = ""
    tier: str = ""
    billing_email: str = ""
    joined: DateFields | None = None
    reference: str = ""
    phone: str = ""

    LIMITS = {"name": 200, "tier": 40, "billing_email": 320, "reference": 50, "phone": 30}
    # Where a refusal naming JoinMember's field is shown on the form.
    FIELDS = {
        "name": "name",
        "tier": "tier",
        "billing_email": "billing_email",
        "joined_on": "joined_on",
        "reference": "reference",
        "phone": "phone",
    }
    MESSAGES = {
        "name": "Enter the name of the organisation",
        "tier": "Enter the tier it joins at, like district",
        "billing_email": "Enter the email address invoices go to, like finance@example.gov.uk",
        "joined_on": "Enter the first day of its membership, like 1 4 2026",
    }

    @classmethod
    def read(cls, form: FormData) -> tuple[MemberForm, FormProblems]:
        problems = FormProblems()
        values: dict[str, str] = {}
        for name, limit in cls.LIMITS.items():
            values[name], problem = text_value(form, name, limit)
            if problem:
                problems.by_field[name] = problem
        member = cls(**values, joined=DateFields.read(form, "joined_on"))
        for required in ("name", "tier", "billing_email"):
            if not values[required]:
                problems.by_field.setdefault(required, cls.MESSAGES[required])
        if member.joined is None or member.joined.value() is None:
            problems.by_field["joined_on"] = cls.MESSAGES["joined_on"]
        return member, problems

    def command(self) -> tuple[JoinMember | None, FormProblems]:
        assert self.joined is not None
        try:
            return (
                JoinMember(
                    name=self.name,
                    tier=self.tier,
                    billing_email=self.billing_email,
                    joined_on=self.joined.value(),  # type: ignore[arg-type]
                    reference=self.reference or None,
                    phone=self.phone or None,
                ),
                FormProblems(),
            )
        except ValidationError as error:
            problems = FormProblems()
            for problem in error.errors():
                name = str(problem["loc"][0]) if problem["loc"] else ""
                where = self.FIELDS.get(name, "")
                message = self.MESSAGES.get(name, sentence(problem["msg"]))
                if where:
                    problems.by_field.setdefault(where, message)
                else:
                    problems.general.append(message)
            return None, problems

    @classmethod
    def form_field(cls, command_field: str | None) -> str:
        return cls.FIELDS.get(command_field or "", "")


@dataclass
class MembersFile:
    """A CSV of members as uploaded: the rows that make sense as JoinMember, with their
    line numbers, and every row that does not, named by its line."""

    filename: str = ""
    members: list[JoinMember] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    bad_rows: list[tuple[int, str]] = field(default_factory=list)

    @classmethod
    def read(cls, filename: str, content: bytes) -> MembersFile:
        found = cls(filename=filename)
        try:
            text = content.decode("utf-8-sig")
        except UnicodeDecodeError:
            found.bad_rows.append((1, "The file must be saved as CSV UTF-8"))
            return found
        reader = csv.DictReader(io.StringIO(text, newline=""))
        header = [column.strip().lower() for column in reader.fieldnames or []]
        missing = [column for column in NEEDED if column not in header]
        unknown = [column for column in header if column not in COLUMNS]
        if missing or unknown:
            found.bad_rows.append(
                (
                    1,
                    f"The first line must name the columns {', '.join(NEEDED)} (and "
                    "optionally reference and phone): "
                    + (
                        f"{', '.join(missing)} missing"
                        if missing
                        else f"{', '.join(unknown)} unknown"
                    ),
                )
            )
            return found
        reader.fieldnames = header
        seen: dict[str, int] = {}
        try:
            for row in reader:
                line = reader.line_num
                if len(found.members) + len(found.bad_rows) >= MOST_ROWS:
                    found.bad_rows.append((line, f"A file may hold at most {MOST_ROWS:,} members"))
                    break
                if None in row:
                    found.bad_rows.append((line, "The row has more columns than the first line"))
                    continue
                values = {key: (value or "").strip() or None for key, value in row.items()}
                try:
                    member = JoinMember(**values)  # type: ignore[arg-type]
                except ValidationError as invalid:
                    found.bad_rows.append((line, validation_error(invalid).message))
                    continue
                key = " ".join(member.name.casefold().split())
                if key in seen:
                    found.bad_rows.append((line, f"{member.name} is also on line {seen[key]}"))
                    continue
                seen[key] = line
                found.members.append(member)
                found.lines.append(line)
        except csv.Error as error:
            found.bad_rows.append((reader.line_num, f"The file is not CSV: {error}"))
        if not found.members and not found.bad_rows:
            found.bad_rows.append((1, "The file has no members in it"))
        return found

    def command(self) -> ImportMembers:
        """Call when no row is bad."""
        return ImportMembers(members=self.members, lines=self.lines)

    def problems(self) -> FormProblems:
        """The bad rows, each linking to the file field, for the error summary."""
        problems = FormProblems()
        if self.bad_rows:
            count = len(self.bad_rows)
            problems.by_field["file"] = (
                f"{count} row{'' if count == 1 else 's'} of the file cannot be imported, so "
                "nobody was: put them right and upload it again"
            )
        return problems


@dataclass
class TierForm:
    """A member's new tier, from a day."""

    tier: str = ""
    effective: DateFields | None = None

    @classmethod
    def read(cls, form: FormData) -> tuple[TierForm, FormProblems]:
        problems = FormProblems()
        tier, problem = text_value(form, "tier", 40)
        if problem or not tier:
            problems.by_field["tier"] = problem or "Enter the new tier, like upper-tier"
        change = cls(tier=tier, effective=DateFields.read(form, "effective_on"))
        if change.effective is None or change.effective.value() is None:
            problems.by_field["effective_on"] = (
                "Enter the first day at the new tier, like 1 10 2026"
            )
        return change, problems

    def command(self, member_id: str) -> tuple[ChangeTier | None, FormProblems]:
        assert self.effective is not None
        try:
            return (
                ChangeTier(member=member_id, tier=self.tier, effective_on=self.effective.value()),  # type: ignore[arg-type]
                FormProblems(),
            )
        except ValidationError:
            return None, FormProblems(
                by_field={"tier": "Enter a tier code of lower-case letters, digits and dashes"}
            )


@dataclass
class LeaveForm:
    """A member's last day."""

    leaves: DateFields | None = None

    @classmethod
    def read(cls, form: FormData) -> tuple[LeaveForm, FormProblems]:
        leaving = cls(leaves=DateFields.read(form, "leaves_on"))
        problems = FormProblems()
        if leaving.leaves is None or leaving.leaves.value() is None:
            problems.by_field["leaves_on"] = "Enter the last day of the membership, like 31 3 2027"
        return leaving, problems

    def command(self, member_id: str) -> LeaveMember:
        assert self.leaves is not None
        last_day = self.leaves.value()
        assert isinstance(last_day, date)
        return LeaveMember(member=member_id, leaves_on=last_day)
