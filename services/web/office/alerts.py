"""Alerts: contacts (searched, one with their consents and topics, changed), a broadcast
composed with a preview of its email and SMS as the notifications service renders them,
sent and followed until it completes, and the ledger of deliveries with failed and
deferred ones first, each failed one resent. The alerts officer's pages: every rule,
count and rendering is the notifications service's."""

from __future__ import annotations

import uuid
from typing import Any, NamedTuple
from urllib.parse import urlencode, urlsplit

from pydantic import ValidationError
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from contracts.notifications_v1 import (
    TOPICS,
    BroadcastStatus,
    ListContacts,
    ListDeliveries,
    PreviewBroadcast,
    ResendDelivery,
    ShowContact,
)
from kernel.commands import CommandFailed
from services.web.forms import FormProblems, sentence, text_value
from services.web.office import email_frame
from services.web.office.alert_forms import (
    CHANNELS,
    WRITTEN,
    BroadcastForm,
    ChoicesForm,
    ContactForm,
    on_field,
)
from services.web.office.door import ask, ask_about, office_render, page, redirect, refusal
from services.web.security import check_csrf

COMMS = ("comms",)
CONTACTS_PAGE = 50
DELIVERIES_PAGE = 50
STATUSES = {
    "": "Any status",
    "failed": "Failed",
    "deferred": "Waiting for quiet hours to end",
    "pending": "Waiting to send",
    "sent": "Sent",
}
# What a contact's page says after each change (the address names which, never the words).
DONE = {
    "added": "The contact is added.",
    "details": "The contact's details are saved.",
    "choices": "Their topics and consents are saved.",
    "unchanged": "Nothing was changed: the boxes ticked were as they were.",
    "resent": "The delivery is back in line to be sent.",
}


def back_to(value: str | None, default: str) -> str:
    """Where to go after an action: an alerts page of this site, never elsewhere."""
    if not value or not value.startswith("/office/alerts") or "\\" in value:
        return default
    parts = urlsplit(value)
    return default if parts.scheme or parts.netloc else value


def with_query(path: str, **query: str) -> str:
    wanted = {key: value for key, value in query.items() if value}
    return path + (f"?{urlencode(wanted)}" if wanted else "")


async def alerts(request: Request) -> Response:
    ledger = await ask(request, ListDeliveries(limit=1))
    return office_render(request, "office/alerts/index.html", {"counts": ledger["counts"]})


# Contacts


async def contacts(request: Request) -> Response:
    search = request.query_params.get("q", "").strip()[:200]
    topic = request.query_params.get("topic", "")
    topic = topic if topic in TOPICS else ""
    after = request.query_params.get("after", "")[:320] or None
    try:
        command = ListContacts(
            search=search or None, topic=topic or None, after=after, limit=CONTACTS_PAGE
        )
    except ValidationError:  # an edited address: the first page
        command = ListContacts(search=search or None, topic=topic or None, limit=CONTACTS_PAGE)
    reply = await ask(request, command)
    return office_render(
        request,
        "office/alerts/contacts.html",
        {
            "contacts": reply["contacts"],
            "search": search,
            "topic": topic,
            "topics": TOPICS,
            "first_page": with_query("/office/alerts/contacts", q=search, topic=topic)
            if after
            else None,
            "next_page": with_query(
                "/office/alerts/contacts", q=search, topic=topic, after=reply["next"]
            )
            if reply["next"]
            else None,
        },
    )


async def find_contact(request: Request, ref: str | None = None) -> dict[str, Any] | None:
    """The contact the address names (id or email), as the notifications service shows
    them; None if there is none."""
    return await ask_about(
        request, lambda: ShowContact(contact=ref or request.path_params["contact"])
    )


def no_contact(request: Request) -> Response:
    return refusal(request, 404, "Contact not found", "There is no contact at this address.")


def contact_url(contact: dict[str, Any], **query: str) -> str:
    return with_query(f"/office/alerts/contacts/{contact['contact_id']}", **query)


def contact_page(
    request: Request,
    contact: dict[str, Any],
    choices: ChoicesForm | None = None,
    problems: FormProblems | None = None,
    *,
    status: int = 200,
) -> Response:
    done = request.query_params.get("done", "")
    return office_render(
        request,
        "office/alerts/contact.html",
        {
            "contact": contact,
            "choices": choices
            or ChoicesForm(
                topics=list(contact["topics"]),
                channels=[c for c in CHANNELS if contact[f"{c}_consent"]],
            ),
            "problems": problems or FormProblems(),
            "done": DONE.get(done, ""),
            "topics": TOPICS,
            "channels": CHANNELS,
        },
        status=status,
    )


async def contact(request: Request) -> Response:
    found = await find_contact(request)
    if found is None:
        return no_contact(request)
    return contact_page(request, found)


async def change_choices(request: Request) -> Response:
    found = await find_contact(request)
    if found is None:
        return no_contact(request)
    form_data = await request.form()
    check_csrf(request, form_data)
    choices = ChoicesForm.read(form_data)
    subscribe, unsubscribe = choices.changes(found)
    if subscribe is None and unsubscribe is None:
        return redirect(contact_url(found, done="unchanged"))
    try:
        for command in (subscribe, unsubscribe):
            if command is not None:
                await ask(request, command)
    except CommandFailed as refused:
        problems = FormProblems()
        field = {"channels": "channels", "topics": "topics"}.get(refused.error.field or "", "")
        on_field(problems, field, refused.error.message)
        latest = await find_contact(request) or found  # a first command may have gone through
        return contact_page(request, latest, choices, problems, status=409)
    return redirect(contact_url(found, done="choices"))


def contact_form_page(
    request: Request,
    form: ContactForm,
    problems: FormProblems,
    *,
    contact: dict[str, Any] | None = None,
    existing: dict[str, Any] | None = None,
    status: int = 200,
) -> Response:
    return office_render(
        request,
        "office/alerts/contact_form.html",
        {
            "form": form,
            "problems": problems,
            "contact": contact,
            "existing": existing,
            "topics": TOPICS,
            "channels": CHANNELS,
        },
        status=status,
    )


async def add_contact(
    request: Request, form: ContactForm, *, contact: dict[str, Any] | None = None
) -> Response:
    """Send AddContact as the form has it; the contact's page, or the form with the refusal."""
    command, problems = form.command()
    if command is None:
        return contact_form_page(request, form, problems, contact=contact, status=400)
    try:
        added = await ask(request, command)
    except CommandFailed as refused:
        problems = FormProblems()
        on_field(problems, ContactForm.form_field(refused.error.field), refused.error.message)
        return contact_form_page(request, form, problems, contact=contact, status=409)
    return redirect(contact_url(added, done="details" if contact else "added"))


async def new_contact(request: Request) -> Response:
    if request.method == "GET":
        return contact_form_page(request, ContactForm(), FormProblems())
    form_data = await request.form()
    check_csrf(request, form_data)
    form, problems = ContactForm.read(form_data)
    if problems:
        return contact_form_page(request, form, problems, status=400)
    # AddContact would change the consents of someone already known: their page does that.
    existing = await find_contact(request, form.email)
    if existing is not None:
        problems.by_field["email"] = "There is already a contact with this email address"
        return contact_form_page(request, form, problems, existing=existing, status=409)
    return await add_contact(request, form)


async def contact_details(request: Request) -> Response:
    found = await find_contact(request)
    if found is None:
        return no_contact(request)
    if request.method == "GET":
        return contact_form_page(request, ContactForm.of(found), FormProblems(), contact=found)
    form_data = await request.form()
    check_csrf(request, form_data)
    form, problems = ContactForm.read(form_data, email=found["email"])
    # Their consents and topics stay as they are: they change on the contact's own page.
    kept = ContactForm.of(found)
    form.channels, form.topics = kept.channels, []
    if problems:
        return contact_form_page(request, form, problems, contact=found, status=400)
    return await add_contact(request, form, contact=found)


# Broadcasts


def offered(templates: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The templates the composer can fill: those that need no more than it writes."""
    return [t for t in templates if set(t["needs"]) <= set(WRITTEN)]


class Previewed(NamedTuple):
    preview: dict[str, Any] | None
    templates: list[dict[str, Any]]
    problems: FormProblems
    # The email's HTML as previewed, or an empty broadcast's when what is typed could not
    # be: the page allows its inline styles, which the script's later previews share.
    email_html: str


async def previewed(request: Request, form: BroadcastForm) -> Previewed:
    """The notifications service's preview of what is typed, the templates to offer, and
    why it could not be previewed (on the field at fault) if it could not."""
    try:
        preview = await ask(request, form.preview_command())
    except CommandFailed as refused:
        problems = FormProblems()
        on_field(problems, BroadcastForm.form_field(refused.error.field), refused.error.message)
        # Still the templates to choose from: those of an empty broadcast.
        plain = await ask(request, PreviewBroadcast(data=dict.fromkeys(WRITTEN, "")))
        return Previewed(None, offered(plain["templates"]), problems, _email_html(plain))
    return Previewed(preview, offered(preview["templates"]), FormProblems(), _email_html(preview))


def _email_html(preview: dict[str, Any]) -> str:
    return (preview.get("email") or {}).get("html", "")


def composer(
    request: Request,
    form: BroadcastForm,
    shown: Previewed,
    problems: FormProblems,
    *,
    status: int = 200,
) -> Response:
    answer = office_render(
        request,
        "office/alerts/compose.html",
        {
            "form": form,
            "preview": shown.preview,
            "templates": shown.templates,
            "problems": problems,
            "preview_problem": " ".join(
                [*shown.problems.general, *shown.problems.by_field.values()]
            ),
            "topics": TOPICS,
            "channels": CHANNELS,
        },
        status=status,
    )
    if policy := email_frame.policy_for(shown.email_html):
        answer.headers["content-security-policy"] = policy
    return answer


async def compose(request: Request) -> Response:
    if request.method == "GET":
        topic = request.query_params.get("topic", "")
        form = BroadcastForm(topic=topic if topic in TOPICS else "")
        return composer(request, form, await previewed(request, form), FormProblems())
    form_data = await request.form()
    check_csrf(request, form_data)
    form = BroadcastForm.read(form_data)
    shown = await previewed(request, form)
    if form.template and form.template not in {t["template"] for t in shown.templates}:
        form.template = ""
    if form_data.get("action") != "send":  # the Preview button: the page again, previewed
        return composer(request, form, shown, FormProblems())
    problems = form.problems()
    if problems:
        return composer(request, form, shown, problems, status=400)
    try:
        sent = await ask(request, form.send_command(), id=form.sending_id)
    except CommandFailed as refused:
        problems = FormProblems()
        on_field(problems, BroadcastForm.form_field(refused.error.field), refused.error.message)
        # That command was answered; the message put right is a new one.
        form.sending_id = str(uuid.uuid4())
        return composer(request, form, shown, problems, status=409)
    return redirect(f"/office/alerts/broadcasts/{sent['broadcast_id']}")


async def preview_json(request: Request) -> Response:
    """The composer's script asks here as the message is typed: the SMS count and the
    preview, rendered from the same template as the page."""
    try:
        form_data = await request.form()
    except ClientDisconnect:  # typed on, or left the page: this answer is wanted no more
        return Response(status_code=400)
    check_csrf(request, form_data)
    form = BroadcastForm.read(form_data)
    shown = await previewed(request, form)
    problem = " ".join([*shown.problems.general, *shown.problems.by_field.values()])
    parts = request.app.state.pages.env.get_template("office/alerts/_preview.html").module
    return JSONResponse(
        {
            "count": str(parts.sms_count(shown.preview, problem)).strip(),
            "preview": str(parts.panel(shown.preview, problem, form)).strip(),
        }
    )


async def broadcast(request: Request) -> Response:
    status = await ask_about(
        request, lambda: BroadcastStatus(broadcast_id=request.path_params["broadcast_id"])
    )
    if status is None:
        return refusal(
            request, 404, "Broadcast not found", "There is no broadcast at this address."
        )
    return office_render(
        request,
        "office/alerts/broadcast.html",
        {
            "broadcast": status,
            "topic": TOPICS.get(status["topic"], status["topic"]),
            "settled": status["sent"] + status["failed"],
            # Still going out: the page follows it. Waiting only for quiet hours to end, or
            # done, it stops.
            "sending": not status["completed"] and status["pending"] > 0,
        },
    )


# Deliveries


async def deliveries(request: Request) -> Response:
    status = request.query_params.get("status", "")
    status = status if status in STATUSES else ""
    broadcast_id = request.query_params.get("broadcast", "")[:36]
    after = request.query_params.get("after", "")[:200]
    query = {"status": status, "broadcast": broadcast_id}
    try:
        reply = await ask(
            request,
            ListDeliveries(
                status=status or None,  # type: ignore[arg-type]
                broadcast_id=broadcast_id or None,
                after=after or None,
                limit=DELIVERIES_PAGE,
            ),
        )
    except CommandFailed as refused:
        if refused.error.field != "after":
            raise
        return redirect(with_query("/office/alerts/deliveries", **query))  # a stale cursor
    here = with_query("/office/alerts/deliveries", **query, after=after)
    return office_render(
        request,
        "office/alerts/deliveries.html",
        {
            "deliveries": reply["deliveries"],
            "counts": reply["counts"],
            "status": status,
            "statuses": STATUSES,
            "broadcast_id": broadcast_id,
            "here": here,
            "done": DONE.get(request.query_params.get("done", ""), ""),
            "first_page": with_query("/office/alerts/deliveries", **query) if after else None,
            "next_page": with_query("/office/alerts/deliveries", **query, after=reply["next"])
            if reply["next"]
            else None,
        },
    )


async def resend(request: Request) -> Response:
    form_data = await request.form()
    check_csrf(request, form_data)
    back = back_to(text_value(form_data, "back", 600)[0], "/office/alerts/deliveries")
    try:
        await ask(request, ResendDelivery(delivery_id=request.path_params["delivery_id"]))
    except ValidationError:
        return refusal(request, 404, "Delivery not found", "There is no delivery at this address.")
    except CommandFailed as refused:
        if refused.error.code == "not_found":
            return refusal(
                request, 404, "Delivery not found", "There is no delivery at this address."
            )
        return refusal(
            request, 409, "The delivery was not resent", sentence(refused.error.message) + "."
        )
    joiner = "&" if "?" in back else "?"
    return redirect(f"{back}{joiner}done=resent")


routes = [
    page("/alerts", alerts, roles=COMMS, name="alerts"),
    page("/alerts/contacts", contacts, roles=COMMS, name="contacts"),
    page(
        "/alerts/contacts/new",
        new_contact,
        roles=COMMS,
        methods=("GET", "POST"),
        name="new_contact",
    ),
    page("/alerts/contacts/{contact}", contact, roles=COMMS, name="contact"),
    page(
        "/alerts/contacts/{contact}/choices",
        change_choices,
        roles=COMMS,
        methods=("POST",),
        name="contact_choices",
    ),
    page(
        "/alerts/contacts/{contact}/details",
        contact_details,
        roles=COMMS,
        methods=("GET", "POST"),
        name="contact_details",
    ),
    page(
        "/alerts/broadcasts/new",
        compose,
        roles=COMMS,
        methods=("GET", "POST"),
        name="compose",
    ),
    page(
        "/alerts/broadcasts/preview",
        preview_json,
        roles=COMMS,
        methods=("POST",),
        name="broadcast_preview",
    ),
    page("/alerts/broadcasts/{broadcast_id}", broadcast, roles=COMMS, name="broadcast"),
    page("/alerts/deliveries", deliveries, roles=COMMS, name="deliveries"),
    page(
        "/alerts/deliveries/{delivery_id}/resend",
        resend,
        roles=COMMS,
        methods=("POST",),
        name="resend",
    ),
]
