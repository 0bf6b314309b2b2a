"""Rules for closing the books, without a broker or a store: balances and credits."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kernel.settings import Settings
from services.notifications.handlers.facts import CREDIT_REASONS
from services.notifications.templates import Templates
from services.subscriptions.domain.billing import (
    BillingError,
    allocate_credit,
    balance,
    check_payment,
    month_cost,
    pounds,
    status_of,
)
from services.subscriptions.domain.bounds import Bounds
from services.subscriptions.domain.catalog import Catalog, Price, Tier, month_of_year
from services.subscriptions.domain.members import (
    MembershipError,
    check_leaving,
    check_tier_change,
)
from services.subscriptions.domain.timeline import (
    DatedTier,
    Timeline,
    billed_months,
    leaving_documents,
    tier_change_documents,
    yearly_charge,
)

# Balances and credits


def test_an_invoice_credited_in_full_is_settled_as_credited_and_owes_nothing() -> None:
    assert balance(900_000, 0, 900_000) == 0
    assert status_of(900_000, 0, 900_000) == "credited"
    assert status_of(900_000, 400_000, 500_000) == "paid"  # settled, money included
    assert status_of(200_000, 0, 100_000) == "issued"  # part-credited: still owed
    assert status_of(200_000, 50_000, 100_000) == "part_paid"


def test_a_payment_cannot_exceed_what_credits_leave_owing() -> None:
    assert (
        check_payment(
            number="INV-1",
            status="issued",
            gross_pence=200_000,
            paid_pence=0,
            credited_pence=100_000,
            amount_pence=100_000,
        )
        == 0
    )
    with pytest.raises(BillingError) as over:
        check_payment(
            number="INV-1",
            status="issued",
            gross_pence=200_000,
            paid_pence=0,
            credited_pence=100_000,
            amount_pence=100_001,
        )
    assert (over.value.code, over.value.field) == ("overpayment", "amount")
    assert str(over.value) == (
        "£1,000.01 is more than the £1,000.00 outstanding on invoice INV-1"
        " after £1,000.00 of credit"
    )
    with pytest.raises(BillingError, match=r"settled: £0\.00 paid and £2,000\.00 credited") as done:
        check_payment(
            number="INV-1",
            status="credited",
            gross_pence=200_000,
            paid_pence=0,
            credited_pence=200_000,
            amount_pence=1,
        )
    assert done.value.code == "credited"


def test_a_credit_goes_against_each_invoice_up_to_its_balance_and_the_rest_is_held() -> None:
    assert allocate_credit(450_000, [0, 100_000]) == [0, 100_000]  # £3,500 held
    assert allocate_credit(100_000, [200_000, 450_000]) == [100_000, 0]
    assert allocate_credit(0, [5]) == [0]


@given(
    credit=st.integers(min_value=0, max_value=10**9),
    balances=st.lists(st.integers(min_value=0, max_value=10**9), max_size=5),
)
def test_a_credit_is_never_set_against_more_than_it_is_or_more_than_is_owed(
    credit: int, balances: list[int]
) -> None:
    amounts = allocate_credit(credit, balances)
    assert sum(amounts) <= credit
    assert all(0 <= amount <= owed for amount, owed in zip(amounts, balances, strict=True))
    # Nothing is held back while an invoice still owes something.
    assert sum(amounts) == min(credit, sum(balances))


# The credit note's email


@pytest.mark.parametrize("purpose", sorted(CREDIT_REASONS))
def test_the_credit_note_email_says_what_it_credits_and_that_nothing_is_to_pay(
    purpose: str,
) -> None:
    templates = Templates(partnership=Settings().partnership_name)
    sample = {
        "number": "CN-000003",
        "billed_name": "Bury <Council>",
        "credits_invoice": "INV-000017",
        "reason": CREDIT_REASONS[purpose],
        "issued_on": "10 Oct 2026",
        "lines": [{"description": "Upper tier, credit", "net": "£4,500.00", "vat": "£0.00"}],
        "net": "£4,500.00",
        "vat": "£0.00",
        "gross": "£4,500.00",
    }
    rendered = templates.email("credit_note_issued", sample)
    assert rendered.subject.startswith("Credit note CN-000003 from ")
    assert rendered.subject.endswith(": £4,500.00 against invoice INV-000017")
    assert "\n" not in rendered.subject
    assert "set against invoice INV-000017" in rendered.text
    assert "You do not need to pay this credit note." in rendered.text
    assert CREDIT_REASONS[purpose] in rendered.text
    assert "Bury &lt;Council&gt;" in rendered.html
    unattached = templates.email("credit_note_issued", {**sample, "credits_invoice": None})
    assert "held on your account" in unattached.text


# Effective dates

UPPER_DISTRICT = Catalog(
    tiers={
        "upper-tier": Tier("upper-tier", "Upper tier", (Price(2008, 900_000),)),
        "district": Tier("district", "District", (Price(2008, 200_000),)),
    }
)


def test_a_tier_change_dated_1_march_made_before_the_run_bills_11_months_old_and_1_new() -> None:
    line = Timeline(starts_on=date(2020, 4, 1), ends_on=None, first_tier="upper-tier")
    changed = line.with_change(DatedTier(date(2027, 3, 1), "district"))
    charge = yearly_charge(UPPER_DISTRICT, changed, 2026, refund_leavers=False)
    assert charge is not None
    assert [(ln.tier, ln.months, ln.net_pence) for ln in charge.lines] == [
        ("upper-tier", 11, 825_000),
        ("district", 1, 16_667),
    ]
    assert charge.net_pence == 841_667  # £8,416.67, not £2,000
    assert (
        charge.lines[0].description
        == "Upper tier subscription, 1 Apr 2026 – 28 Feb 2027 (11 months)"
    )
    assert (
        charge.lines[1].description == "District subscription, 1 Mar 2027 – 31 Mar 2027 (1 months)"
    )
    # The year after bills the whole year at the new tier.
    next_year = yearly_charge(UPPER_DISTRICT, changed, 2027, refund_leavers=False)
    assert next_year is not None and next_year.net_pence == 200_000


def test_a_change_on_the_15th_bills_its_whole_month_at_the_new_tier() -> None:
    line = Timeline(starts_on=date(2020, 4, 1), ends_on=None, first_tier="district")
    changed = line.with_change(DatedTier(date(2026, 10, 15), "upper-tier"))
    assert changed.tier_on(date(2026, 9, 30)) == "district"
    assert changed.tier_in(2026, month_of_year(date(2026, 10, 1))) == "upper-tier"


def test_a_change_after_the_run_credits_only_the_months_it_changes() -> None:
    before = Timeline(starts_on=date(2020, 4, 1), ends_on=None, first_tier="upper-tier")
    [(year, credit, invoice)] = tier_change_documents(
        UPPER_DISTRICT, before, DatedTier(date(2027, 3, 1), "district"), [2026], False
    )
    assert (year, credit.net_pence, invoice.net_pence) == (2026, 75_000, 16_667)
    assert credit.lines[0].months == invoice.lines[0].months == 1
    # A year not billed yet needs no documents: its run bills each month at its tier.
    assert (
        tier_change_documents(
            UPPER_DISTRICT, before, DatedTier(date(2027, 3, 1), "district"), [], False
        )
        == []
    )


def test_a_leaver_billed_for_a_later_year_in_advance_is_credited_that_year_in_full() -> None:
    before = Timeline(starts_on=date(2020, 4, 1), ends_on=None, first_tier="district")
    documents = leaving_documents(UPPER_DISTRICT, before, date(2027, 2, 28), [2026, 2027], False)
    assert [(year, credit.net_pence) for year, credit in documents] == [(2027, 200_000)]
    refunded = leaving_documents(UPPER_DISTRICT, before, date(2027, 2, 28), [2026], True)
    assert [(year, credit.net_pence) for year, credit in refunded] == [(2026, 16_667)]


TIERS = ("gold", "silver", "bronze")
YEARS = (2026, 2027)
days = st.dates(min_value=date(2026, 1, 1), max_value=date(2028, 6, 30))


@st.composite
def histories(draw: st.DrawFn) -> dict:  # type: ignore[type-arg]
    """A membership's records in the order a finance officer makes them: tier changes with
    any dates, a leave perhaps, and the runs of two years, in any order."""
    records: list[tuple[str, object]] = [("run", year) for year in YEARS]
    for _ in range(draw(st.integers(0, 5))):
        records.append(("change", (draw(days), draw(st.sampled_from(TIERS)))))
    if draw(st.booleans()):
        records.append(("leave", draw(days)))
    return {
        "starts_on": draw(days),
        "first_tier": draw(st.sampled_from(TIERS)),
        "prices": {t: draw(st.integers(0, 5_000_000)) for t in TIERS},
        "vat": draw(st.sampled_from([0, 2000])),
        "refund_leavers": draw(st.booleans()),
        "records": draw(st.permutations(records)),
    }


@given(histories())
def test_whatever_the_dates_and_order_invoices_less_credits_cost_the_months_at_their_tiers(
    history: dict,  # type: ignore[type-arg]
) -> None:
    """Random join, tier changes and leave dates, recorded before or after either year's
    run: for each year, invoices − credit notes = Σ months × the rate of that month's tier,
    as the service decides them (a refused record changes nothing)."""
    catalog = Catalog(
        tiers={
            t: Tier(t, t.title(), (Price(2000, history["prices"][t], history["vat"]),))
            for t in TIERS
        },
        refund_leavers=history["refund_leavers"],
    )
    refund = catalog.refund_leavers
    line = Timeline(history["starts_on"], None, history["first_tier"])
    billed: dict[int, int] = {}  # year → net of its invoices less its credit notes
    for kind, value in history["records"]:
        if kind == "run":
            charge = yearly_charge(catalog, line, value, refund)  # type: ignore[arg-type]
            if charge is not None:
                billed[value] = billed.get(value, 0) + charge.net_pence  # type: ignore[index]
        elif kind == "change":
            on, tier = value  # type: ignore[misc]
            try:
                check_tier_change(
                    current_tier=line.tier_on(on),
                    new_tier=tier,
                    starts_on=line.starts_on,
                    ends_on=line.ends_on,
                    effective_on=on,
                    tiers=catalog.tiers,
                )
            except MembershipError:
                continue
            change = DatedTier(on, tier)
            for year, credit, invoice in tier_change_documents(
                catalog, line, change, list(billed), refund
            ):
                assert credit.net_pence >= 0 and invoice.net_pence >= 0
                billed[year] += invoice.net_pence - credit.net_pence
            line = line.with_change(change)
        else:
            try:
                check_leaving(starts_on=line.starts_on, ends_on=line.ends_on, leaves_on=value)  # type: ignore[arg-type]
            except MembershipError:
                continue
            for year, credit in leaving_documents(catalog, line, value, list(billed), refund):  # type: ignore[arg-type]
                billed[year] -= credit.net_pence
            line = line.leaving_on(value)  # type: ignore[arg-type]
    for year in YEARS:
        months = billed_months(year, line.starts_on, line.ends_on, refund)
        owed = sum(month_cost(history["prices"][line.tier_in(year, m)], m) for m in months)
        assert billed.get(year, 0) == (owed if year in billed else 0)


# Bounds

BOUNDS = Bounds()


@pytest.mark.parametrize(
    ("day", "inside"),
    [
        (date(1999, 12, 31), False),
        (date(2000, 1, 1), True),
        (date(2100, 12, 31), True),
        (date(2101, 1, 1), False),
        (date(1, 1, 1), False),
    ],
)
def test_dates_are_taken_from_2000_to_2100(day: date, inside: bool) -> None:
    if inside:
        BOUNDS.check_date(day, "joined_on")
        return
    with pytest.raises(BillingError) as refused:
        BOUNDS.check_date(day, "joined_on")
    assert (refused.value.code, refused.value.field) == ("out_of_range", "joined_on")


def test_a_financial_year_must_end_inside_the_window() -> None:
    BOUNDS.check_year(2000)
    BOUNDS.check_year(2099)  # 1 Apr 2099 – 31 Mar 2100
    for year in (1999, 2100):
        with pytest.raises(BillingError, match=f"financial year {year} is outside"):
            BOUNDS.check_year(year)


def test_a_run_may_be_dated_back_by_the_grace_period_and_no_more() -> None:
    today = date(2026, 11, 26)
    BOUNDS.check_run_date(today, today)
    BOUNDS.check_run_date(date(2026, 10, 26), today)  # 31 days
    BOUNDS.check_run_date(date(2027, 4, 1), today)  # ahead is fine
    with pytest.raises(BillingError, match="more than 31 days in the past") as refused:
        BOUNDS.check_run_date(date(2026, 10, 25), today)
    assert refused.value.field == "issued_on"


def test_amounts_above_the_ceiling_are_refused_and_named_exactly() -> None:
    BOUNDS.check_amount(100_000_000, "amount")
    with pytest.raises(BillingError) as refused:
        BOUNDS.check_amount(2**62, "fee")
    assert str(refused.value).startswith("£46,116,860,184,273,879.04 is above")
    assert refused.value.field == "fee"


@given(st.integers(min_value=-(10**20), max_value=10**20))
def test_pounds_are_shown_to_the_exact_penny(pence: int) -> None:
    shown = pounds(pence)
    assert int(shown.replace("£", "").replace(",", "").replace(".", "")) == pence
