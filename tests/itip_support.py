"""Reading the calendar invitations Vestry mails with parsers nobody on the project wrote
(``vobject`` from PyPI, ``ical.js`` from npm), and the iTIP (RFC 5546) rules they must keep.

``invitations(message)`` finds each ``text/calendar`` part of a mail; ``with_vobject`` and
``with_icaljs`` read documents into the same plain shape; ``itip_problems`` lists what
breaks the rules; ``CalendarClient`` files invitations as a calendar program does (by UID,
a lower SEQUENCE ignored), to see what a person's calendar ends up showing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import parseaddr
from typing import Any

import vobject

from tests.node import run_node_json


@dataclass(frozen=True)
class Invitation:
    """One ``text/calendar`` part of a sent mail."""

    sender: str  # the From address
    recipient: str  # the To address
    method_param: str | None  # Content-Type's method=
    charset: str | None  # Content-Type's charset=
    text: str  # the iCalendar document


def invitations(message: EmailMessage) -> list[Invitation]:
    found = []
    for part in message.walk():
        if part.get_content_type() != "text/calendar":
            continue
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        found.append(
            Invitation(
                sender=parseaddr(str(message["From"]))[1].lower(),
                recipient=parseaddr(str(message["To"]))[1].lower(),
                method_param=part.get_param("method"),  # type: ignore[arg-type]
                charset=part.get_content_charset(),
                text=payload.decode("utf-8"),
            )
        )
    return found


def _address(value: str) -> str:
    return value.removeprefix("mailto:").removeprefix("MAILTO:").lower()


def with_vobject(text: str) -> dict[str, Any]:
    """The document as vobject reads it."""
    calendar = vobject.readOne(text)
    method = calendar.contents.get("method", [])
    events = []
    for vevent in calendar.contents.get("vevent", []):

        def party(line: Any) -> dict[str, Any]:
            params = {name.lower(): values[0] for name, values in line.params.items()}
            return {
                "address": _address(line.value),
                "cn": params.get("cn"),
                "rsvp": params.get("rsvp"),
                "partstat": params.get("partstat"),
            }

        def one(name: str, event: Any = vevent) -> Any:
            lines = event.contents.get(name, [])
            return lines[0].value if lines else None

        events.append(
            {
                "uid": one("uid"),
                "sequence": int(one("sequence") or 0),
                "status": one("status"),
                "summary": one("summary"),
                "location": one("location"),
                "dtstart": one("dtstart").isoformat().replace("+00:00", "Z"),
                "organizers": [party(line) for line in vevent.contents.get("organizer", [])],
                "attendees": [party(line) for line in vevent.contents.get("attendee", [])],
            }
        )
    return {"method": method[0].value if method else None, "events": events}


ICALJS = r"""
const ICAL = require("ical.js");
const documents = JSON.parse(require("fs").readFileSync(0, "utf8"));
const party = (property) => ({
  address: String(property.getFirstValue()).replace(/^mailto:/i, "").toLowerCase(),
  cn: property.getParameter("cn") ?? null,
  rsvp: property.getParameter("rsvp") ?? null,
  partstat: property.getParameter("partstat") ?? null,
});
const read = (text) => {
  const calendar = new ICAL.Component(ICAL.parse(text));
  return {
    method: calendar.getFirstPropertyValue("method"),
    events: calendar.getAllSubcomponents("vevent").map((vevent) => ({
      uid: vevent.getFirstPropertyValue("uid"),
      sequence: vevent.getFirstPropertyValue("sequence") ?? 0,
      status: vevent.getFirstPropertyValue("status"),
      summary: vevent.getFirstPropertyValue("summary"),
      location: vevent.getFirstPropertyValue("location"),
      dtstart: vevent.getFirstPropertyValue("dtstart").toJSDate().toISOString().replace(".000Z", "Z"),
      organizers: vevent.getAllProperties("organizer").map(party),
      attendees: vevent.getAllProperties("attendee").map(party),
    })),
  };
};
console.log(JSON.stringify(documents.map(read)));
"""


def with_icaljs(texts: list[str]) -> list[dict[str, Any]]:
    """The documents as ical.js reads them (one Node run for all)."""
    return list(run_node_json(ICALJS, texts))


def itip_problems(invitation: Invitation, read: dict[str, Any]) -> list[str]:
    """What breaks RFC 5546 (and what Vestry promises) in one invitation as a parser read it."""
    problems = []
    method = read["method"]
    if method not in ("REQUEST", "CANCEL"):
        problems.append(f"METHOD is {method!r}")
    if (invitation.method_param or "").upper() != (method or ""):
        problems.append(f"the MIME part says method={invitation.method_param}, METHOD:{method}")
    if (invitation.charset or "").lower() != "utf-8":
        problems.append(f"the MIME part's charset is {invitation.charset!r}")
    if len(read["events"]) != 1:
        problems.append(f"{len(read['events'])} VEVENTs")
    for event in read["events"]:
        organizers, attendees = event["organizers"], event["attendees"]
        if len(organizers) != 1:
            problems.append(f"{len(organizers)} ORGANIZERs")
        elif organizers[0]["address"] != invitation.sender:
            problems.append(f"ORGANIZER {organizers[0]['address']} is not From {invitation.sender}")
        if not attendees:
            problems.append("no ATTENDEE")
        elif invitation.recipient not in [a["address"] for a in attendees]:
            problems.append(f"the recipient {invitation.recipient} is not an ATTENDEE")
        for attendee in attendees:
            if not attendee["cn"]:
                problems.append("an ATTENDEE without CN")
            if str(attendee["rsvp"]).upper() != "FALSE":
                problems.append(f"ATTENDEE RSVP={attendee['rsvp']}")
            if method == "REQUEST" and str(attendee["partstat"]).upper() != "ACCEPTED":
                problems.append(f"a REQUEST's ATTENDEE PARTSTAT={attendee['partstat']}")
        if method == "CANCEL" and event["status"] != "CANCELLED":
            problems.append(f"a CANCEL with STATUS:{event['status']}")
        if method == "REQUEST" and event["status"] == "CANCELLED":
            problems.append("a REQUEST with STATUS:CANCELLED")
    return problems


@dataclass
class CalendarClient:
    """A person's calendar as an iTIP-following program keeps it: one entry per UID; a
    message with a lower SEQUENCE than the entry's is stale and ignored."""

    entries: dict[str, dict[str, Any]] = field(default_factory=dict)

    def receive(self, method: str, event: dict[str, Any]) -> None:
        held = self.entries.get(event["uid"])
        if held is not None and event["sequence"] < held["sequence"]:
            return
        if method == "CANCEL":
            if held is not None:
                self.entries[event["uid"]] = {**held, "sequence": event["sequence"], "live": False}
            return
        self.entries[event["uid"]] = {**event, "live": True}

    def live(self) -> list[dict[str, Any]]:
        return [entry for entry in self.entries.values() if entry["live"]]
