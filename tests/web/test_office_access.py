"""Who gets into the back office, over HTTP against the real services: signing in and
out, the lockout, sessions that lapse or are changed, and 403s decided on the server
whatever the request looks like."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from nats.aio.client import Client

from contracts.subscriptions_v1 import JoinMember, RunInvoicing, ShowInvoice
from kernel.commands import request
from kernel.settings import Settings
from services.web.office import app as office_app
from services.web.office.accounts import SESSION_COOKIE
from services.web.office.commands import AddStaff, DisableStaff, SetStaffRoles
from tests.conftest import eventually
from tests.web_support import Site, form_token, running_site, site_settings
from vestry.demo_invoicing import current_financial_year

PASSWORD = "correct horse battery staple"


async def add_staff(
    nc: Client, email: str, *roles: str, password: str = PASSWORD
) -> dict[str, Any]:
    """A staff account made as `vestry staff add` makes it: a command to the web service."""
    name = email.split("@")[0].replace(".", " ").title()
    command = AddStaff(email=email, name=name, roles=list(roles), password=password)  # type: ignore[arg-type]
    return await request(nc, command)


async def sign_in(
    client: httpx.AsyncClient, email: str, password: str = PASSWORD, *, next_url: str = ""
) -> httpx.Response:
    token = await form_token(client, "/office/sign-in")
    data = {"csrf_token": token, "email": email, "password": password, "next": next_url}
    return await client.post("/office/sign-in", data=data)


@asynccontextmanager
async def staff_client(site: Site, email: str) -> AsyncIterator[httpx.AsyncClient]:
    """A browser-like client signed in as ``email``."""
    async with httpx.AsyncClient(base_url=site.url, timeout=30) as client:
        signed = await sign_in(client, email)
        assert signed.status_code == 303, signed.text
        yield client


def filled(path: str) -> str:
    """An office route's path with made-up values in its parameters."""
    return "/office" + re.sub(r"\{[^}]+\}", "X1", path)


def session_cookie(response: httpx.Response) -> str:
    [cookie] = [c for c in response.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE)]
    return cookie


def problem_text(page: httpx.Response) -> str:
    found = re.search(r'govuk-error-summary__list">(.*?)</ul>', page.text, re.S)
    return re.sub(r"<[^>]+>|\s+", " ", found.group(1)).strip() if found else ""


async def test_signing_in_gives_a_strict_cookie_and_signing_out_ends_it(
    settings: Settings, nc: Client
) -> None:
    async with (
        running_site(settings) as site,
        httpx.AsyncClient(base_url=site.url, timeout=30) as client,
    ):
        await add_staff(nc, "fiona.finance@partnership.example.org", "finance")

        first = await client.get("/office/members?tier=district")
        assert first.status_code == 303
        assert (
            first.headers["location"]
            == "/office/sign-in?next=%2Foffice%2Fmembers%3Ftier%3Ddistrict"
        )

        wrong = await sign_in(client, "fiona.finance@partnership.example.org", "not the password")
        unknown = await sign_in(client, "nobody@partnership.example.org", PASSWORD)
        assert wrong.status_code == unknown.status_code == 400
        # The same words whether the address has an account or not.
        assert (
            problem_text(wrong)
            == problem_text(unknown)
            == ("Enter a correct email address and password")
        )
        assert SESSION_COOKIE not in client.cookies

        signed = await sign_in(
            client,
            "Fiona.Finance@partnership.example.org",
            next_url="/office/members?tier=district",
        )
        assert signed.status_code == 303
        assert signed.headers["location"] == "/office/members?tier=district"
        cookie = session_cookie(signed)
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/office" in cookie
        assert "Secure" not in cookie  # plain HTTP in tests, as in `vestry dev`
        members = await client.get("/office/members")
        assert members.status_code == 200
        assert members.headers["cache-control"] == "no-store"
        assert "Fiona Finance" in members.text

        token = await form_token(client, "/office/account")
        out = await client.post("/office/sign-out", data={"csrf_token": token})
        assert out.status_code == 303
        assert "Max-Age=0" in session_cookie(out)
        assert (await client.get("/office/")).status_code == 303

        # Somewhere else to go after signing in is ignored.
        for elsewhere in (
            "//evil.example",
            "https://evil.example/office/",
            "/events",
            "/office/\\x",
        ):
            again = await sign_in(
                client, "fiona.finance@partnership.example.org", next_url=elsewhere
            )
            assert again.headers["location"] == "/office/", elsewhere
            token = await form_token(client, "/office/account")
            await client.post("/office/sign-out", data={"csrf_token": token})


async def test_a_changed_or_ended_session_cookie_is_refused(settings: Settings, nc: Client) -> None:
    async with running_site(settings) as site:
        await add_staff(nc, "fiona.finance@partnership.example.org", "finance")
        async with staff_client(site, "fiona.finance@partnership.example.org") as client:
            token = client.cookies[SESSION_COOKIE]
            csrf = await form_token(client, "/office/account")
            changed = token[:-1] + ("A" if token[-1] != "A" else "B")
            for forged in (changed, token + "x", "", "../../etc", token.upper()):
                client.cookies.set(SESSION_COOKIE, forged, path="/office")
                got = await client.get("/office/invoices")
                assert got.status_code == 303 and got.headers["location"].startswith(
                    "/office/sign-in"
                ), forged
                posted = await client.post(
                    "/office/invoicing/runs", data={"csrf_token": csrf, "year": "2026"}
                )
                assert posted.status_code == 403, forged
            client.cookies.set(SESSION_COOKIE, token, path="/office")
            assert (await client.get("/office/invoices")).status_code == 200

            # Signing out everywhere ends this session and any other of the same account.
            async with staff_client(site, "fiona.finance@partnership.example.org") as other:
                assert (await other.get("/office/")).status_code == 200
                everywhere = await client.post(
                    "/office/account/sign-out-everywhere", data={"csrf_token": csrf}
                )
                assert everywhere.status_code == 303
                assert (await other.get("/office/")).status_code == 303
            client.cookies.set(SESSION_COOKIE, token, path="/office")  # replayed
            assert (await client.get("/office/")).status_code == 303


async def test_every_office_page_without_a_session_goes_to_sign_in_or_is_refused(
    settings: Settings,
) -> None:
    async with (
        running_site(settings) as site,
        httpx.AsyncClient(base_url=site.url, timeout=30) as client,
    ):
        csrf = await form_token(client, "/office/sign-in")  # a visitor's genuine token
        paths = [filled(route.path) for route in office_app.mount.routes]
        paths += ["/office/", "/office/no-such-page", "/office/../office/members"]
        for path in paths:
            if path == "/office/sign-in":
                continue
            got = await client.get(path)
            assert got.status_code == 303, path
            assert urlsplit(got.headers["location"]).path == "/office/sign-in", path
            for method in ("POST", "PUT", "DELETE", "PATCH"):
                refused = await client.request(
                    method,
                    path,
                    data={"csrf_token": csrf, "amount": "1.00"},
                    headers={
                        "x-requested-with": "XMLHttpRequest",
                        "referer": site.url + "/office/",
                    },
                )
                assert refused.status_code == 403, (method, path)
                assert "Sign in to do that" in refused.text
        head = await client.head("/office/invoices")
        assert head.status_code == 303
        next_url = parse_qs(urlsplit(head.headers["location"]).query)["next"]
        assert next_url == ["/office/invoices"]


async def billed_invoice(nc: Client) -> str:
    """One member billed for this financial year; its invoice number."""
    year = current_financial_year()
    await request(
        nc,
        JoinMember(
            name="Wigan Council",
            tier="upper-tier",
            billing_email="accounts@wigan.example.gov.uk",
            joined_on=date(year, 4, 1),
        ),
    )
    await request(nc, RunInvoicing(year=year))

    async def numbered() -> str | None:
        try:
            return (await request(nc, ShowInvoice(number="1")))["number"]
        except Exception:
            return None

    return await eventually(numbered, what="the run's invoice")


async def test_a_role_is_enforced_on_the_server_whatever_the_request_looks_like(
    settings: Settings, nc: Client
) -> None:
    async with running_site(settings) as site:
        number = await billed_invoice(nc)
        await add_staff(nc, "carol.comms@partnership.example.org", "comms")
        await add_staff(nc, "fiona.finance@partnership.example.org", "finance")
        async with staff_client(site, "carol.comms@partnership.example.org") as comms:
            csrf = await form_token(comms, "/office/account")
            payment = {
                "csrf_token": csrf,
                "amount": "1,000.00",
                "received_on-day": "1",
                "received_on-month": "5",
                "received_on-year": str(current_financial_year()),
            }
            refused = await comms.post(f"/office/invoices/{number}/payment", data=payment)
            assert refused.status_code == 403
            assert "You do not have access to this page" in refused.text
            for variant in (
                {"files": {"amount": ("a.txt", b"1000")}},
                {"json": payment},
                {"data": {**payment, "role": "finance", "roles": "finance"}},
                {"data": payment, "headers": {"x-vestry-role": "finance", "referer": "/office/"}},
                {"data": {k: v for k, v in payment.items() if k != "csrf_token"}},
            ):
                again = await comms.post(f"/office/invoices/{number}/payment", **variant)  # type: ignore[arg-type]
                assert again.status_code == 403, variant
            assert (await request(nc, ShowInvoice(number=number)))["paid"] == 0

            for route in office_app.mount.routes:
                roles = route.endpoint.roles  # type: ignore[attr-defined]
                if roles is None or "comms" in roles:
                    continue
                path = filled(route.path).replace("X1", number)
                for method in sorted(route.methods or ()):
                    got = await comms.request(method, path, data={"csrf_token": csrf})
                    assert got.status_code == 403, (method, path)

            today = await comms.get("/office/")
            assert today.status_code == 200
            assert "Billed, paid and outstanding" not in today.text
            assert 'href="/office/invoices"' not in today.text  # not offered in the menu either

            # A role given is there at the next request; taken away, gone at the next.
            await request(
                nc,
                SetStaffRoles(
                    staff="carol.comms@partnership.example.org", roles=["comms", "finance"]
                ),
            )
            assert (await comms.get(f"/office/invoices/{number}")).status_code == 200
            await request(
                nc, SetStaffRoles(staff="carol.comms@partnership.example.org", roles=["comms"])
            )
            assert (await comms.get(f"/office/invoices/{number}")).status_code == 403

        async with staff_client(site, "fiona.finance@partnership.example.org") as finance:
            csrf = await form_token(finance, f"/office/invoices/{number}/payment")
            paid = await finance.post(
                f"/office/invoices/{number}/payment",
                data={**payment, "csrf_token": csrf},
            )
            assert paid.status_code == 303
            assert (await request(nc, ShowInvoice(number=number)))["paid"] == 100_000
            # Disabling the account ends its sessions at once.
            await request(nc, DisableStaff(staff="fiona.finance@partnership.example.org"))
            assert (await finance.get("/office/")).status_code == 303
            assert (
                await sign_in(finance, "fiona.finance@partnership.example.org")
            ).status_code == 400


@pytest.mark.slow
async def test_ten_wrong_passwords_lock_the_address_for_a_growing_time(
    settings: Settings, nc: Client
) -> None:
    web = site_settings(lockout_minutes=0.02, sign_ins_per_minute=1000)  # a 1.2 s first lock
    async with (
        running_site(settings, web) as site,
        httpx.AsyncClient(base_url=site.url, timeout=30) as client,
    ):
        email = "fiona.finance@partnership.example.org"
        await add_staff(nc, email, "finance")
        for attempt in range(1, 10):
            wrong = await sign_in(client, email, f"guess number {attempt}")
            assert wrong.status_code == 400, attempt
        tenth = await sign_in(client, email, "guess number 10")
        assert tenth.status_code == 429
        assert "too many wrong passwords" in problem_text(tenth)
        first_wait = int(tenth.headers["retry-after"])
        assert 1 <= first_wait <= 2

        right_but_locked = await sign_in(client, email)
        assert right_but_locked.status_code == 429
        assert SESSION_COOKIE not in client.cookies

        # An address with no account locks the same way: the lock tells nobody it exists.
        for attempt in range(10):
            nobody = await sign_in(client, "nobody@partnership.example.org", f"guess {attempt}")
        assert nobody.status_code == 429

        await asyncio.sleep(first_wait + 0.2)
        eleventh = await sign_in(client, email, "guess number 11")
        assert eleventh.status_code == 429
        assert int(eleventh.headers["retry-after"]) > first_wait  # doubled: 2.4 s

        await asyncio.sleep(int(eleventh.headers["retry-after"]) + 0.2)
        signed = await sign_in(client, email)
        assert signed.status_code == 303  # the right password clears the count
        assert (await client.get("/office/")).status_code == 200
        token = await form_token(client, "/office/account")
        await client.post("/office/sign-out", data={"csrf_token": token})
        assert (await sign_in(client, email, "one wrong again")).status_code == 400


@pytest.mark.slow
async def test_a_session_ends_when_idle_and_at_its_absolute_lifetime(
    settings: Settings, nc: Client
) -> None:
    idle_web = site_settings(staff_idle_timeout_min=0.02)  # 1.2 s idle
    async with running_site(settings, idle_web) as site:
        await add_staff(nc, "fiona.finance@partnership.example.org", "finance")
        async with staff_client(site, "fiona.finance@partnership.example.org") as client:
            for _ in range(5):  # in use: kept alive past the idle timeout
                assert (await client.get("/office/")).status_code == 200
                await asyncio.sleep(0.4)
            await asyncio.sleep(1.5)
            assert (await client.get("/office/")).status_code == 303

    settings = settings.model_copy(update={"data_dir": settings.data_dir / "second"})
    lifetime_web = site_settings(staff_session_hours=1.5 / 3600)  # 1.5 s in all
    async with running_site(settings, lifetime_web) as site:
        await add_staff(nc, "fiona.finance@partnership.example.org", "finance")
        async with staff_client(site, "fiona.finance@partnership.example.org") as client:
            assert (await client.get("/office/")).status_code == 200
            await asyncio.sleep(0.8)
            assert (await client.get("/office/")).status_code == 200
            await asyncio.sleep(0.9)
            assert (await client.get("/office/")).status_code == 303


async def test_cookies_are_secure_outside_development(settings: Settings, nc: Client) -> None:
    async with running_site(settings, site_settings(secure_cookies=True)) as site:
        await add_staff(nc, "fiona.finance@partnership.example.org", "finance")
        async with httpx.AsyncClient(base_url=site.url, timeout=30) as client:
            page = await client.get("/office/sign-in")
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
            assert csrf is not None
            signed = await client.post(
                "/office/sign-in",
                data={
                    "csrf_token": csrf.group(1),
                    "email": "fiona.finance@partnership.example.org",
                    "password": PASSWORD,
                },
                # Secure cookies do not come back over plain HTTP: send the CSRF one by hand.
                headers={"cookie": f"vestry_csrf={page.cookies['vestry_csrf']}"},
            )
            assert signed.status_code == 303
            assert "; Secure" in session_cookie(signed)
