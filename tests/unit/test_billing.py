"""Billing rules: the catalog, proration, VAT rounding, tier changes, leavers, reminders."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.subscriptions.domain import billing
from services.subscriptions.domain.billing import (
    BillingError,
    charge_from_month,
    check_payment,
    leaver_refund,
    month_cost,
    recurring_charge,
    reminder_stages_due,
    tier_change_charges,
    vat_on,
)
from services.subscriptions.domain.catalog import (
    REFERENCE_CATALOG,
    CatalogError,
    Price,
    financial_year,
    load_catalog,
    month_start,
)


def test_financial_year_runs_from_april_to_march() -> None:
    assert financial_year(date(2026, 4, 1)) == 2026
    assert financial_year(date(2027, 3, 31)) == 2026
    assert financial_year(date(2026, 3, 31)) == 2025


def test_reference_catalog_prices_2008_and_before() -> None:
    assert REFERENCE_CATALOG.price("upper-tier", 2008).net_pence == 900_000
    assert REFERENCE_CATALOG.price("district", 2026).net_pence == 200_000
    assert REFERENCE_CATALOG.price("public-service", 2008).net_pence == 250_000
    assert REFERENCE_CATALOG.price("upper-tier", 2007).net_pence == 800_000
    assert REFERENCE_CATALOG.price("district", 2007).net_pence == 150_000
    assert REFERENCE_CATALOG.price("public-service", 2007).net_pence == 150_000


def test_a_year_with_no_price_list_is_refused() -> None:
    with pytest.raises(CatalogError, match="no price list for financial year 2001") as refused:
        REFERENCE_CATALOG.check_year(2001)
    assert refused.value.code == "no_price"


def test_a_toml_catalog_adds_a_year_without_changing_old_ones(tmp_path: Path) -> None:
    path = tmp_path / "catalog.toml"
    path.write_text(
        """
refund_leavers = true
[tiers.gold]
label = "Gold member"
prices = [
  { from_year = 2020, amount = "1,000.00", vat = "20%" },
  { from_year = 2027, amount = 1200, vat = "17.5%" },
]
"""
    )
    catalog = load_catalog(path)
    assert catalog.refund_leavers
    assert catalog.price("gold", 2026) == Price(2020, 100_000, 2000)
    assert catalog.price("gold", 2030) == Price(2027, 120_000, 1750)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ("[tiers.gold]\nprices = []", "needs a label"),
        ('[tiers.gold]\nlabel = "G"\nprices = [{ amount = 1 }]', "needs 'from_year'"),
        ('[tiers.gold]\nlabel = "G"\nprices = [{ from_year = 2020, amount = "1.234" }]', "pounds"),
        (
            '[tiers.gold]\nlabel = "G"\nprices = [{ from_year = 2020, amount = 1, vat = "x" }]',
            "VAT",
        ),
        ("refund_leavers = true", "no tiers"),
        ("tiers = [", "cannot read"),
    ],
)
def test_a_bad_catalog_file_says_what_is_wrong(tmp_path: Path, body: str, words: str) -> None:
    path = tmp_path / "catalog.toml"
    path.write_text(body)
    with pytest.raises(CatalogError, match=words):
        load_catalog(path)


def test_vat_rounds_half_up_to_the_penny() -> None:
    assert vat_on(1, 5000) == 1  # 0.5p → 1p
    assert vat_on(3, 1750) == 1  # 0.525p → 1p
    assert vat_on(2, 1750) == 0  # 0.35p → 0p
    assert vat_on(10_001, 2000) == 2000  # 2000.2p
    assert vat_on(10_003, 1750) == 1751  # 1750.525p


def test_whole_year_costs_the_price() -> None:
    charge = recurring_charge(
        year=2008,
        tier_code="upper-tier",
        tier_label="Upper",
        price=Price(2008, 900_000),
        starts_on=date(2001, 5, 3),
        ends_on=None,
        refund_leavers=False,
    )
    assert charge is not None and charge.net_pence == 900_000 and charge.lines[0].months == 12


def test_joiner_pays_the_whole_months_left_including_the_joining_month() -> None:
    charge = recurring_charge(
        year=2026,
        tier_code="district",
        tier_label="District",
        price=Price(2008, 100_000, 2000),
        starts_on=date(2026, 10, 31),  # October: 6 months left
        ends_on=None,
        refund_leavers=False,
    )
    assert charge is not None
    assert (charge.lines[0].months, charge.net_pence, charge.vat_pence) == (6, 50_000, 10_000)
    odd = recurring_charge(
        year=2026,
        tier_code="district",
        tier_label="District",
        price=Price(2008, 100_001),
        starts_on=date(2027, 3, 1),  # March: 1 month, 8333.4166p
        ends_on=None,
        refund_leavers=False,
    )
    assert odd is not None and odd.net_pence == 8_333


def test_a_member_joining_after_the_year_or_gone_before_it_owes_nothing() -> None:
    common = {"tier_code": "d", "tier_label": "D", "price": Price(2008, 1200)}
    assert (
        recurring_charge(
            year=2026, starts_on=date(2027, 4, 1), ends_on=None, refund_leavers=False, **common
        )
        is None
    )  # type: ignore[arg-type]
    assert (
        recurring_charge(
            year=2026,
            starts_on=date(2020, 1, 1),
            ends_on=date(2026, 3, 31),
            refund_leavers=True,
            **common,
        )
        is None
    )  # type: ignore[arg-type]


def test_leaver_pays_to_the_year_end_unless_the_catalog_refunds() -> None:
    common = {"tier_code": "d", "tier_label": "D", "price": Price(2008, 120_000), "year": 2026}
    kept = recurring_charge(
        starts_on=date(2020, 1, 1), ends_on=date(2026, 6, 15), refund_leavers=False, **common
    )  # type: ignore[arg-type]
    refunded = recurring_charge(
        starts_on=date(2020, 1, 1), ends_on=date(2026, 6, 15), refund_leavers=True, **common
    )  # type: ignore[arg-type]
    assert kept is not None and kept.net_pence == 120_000
    assert refunded is not None and refunded.net_pence == 30_000  # April–June
    refund = leaver_refund(
        ends_on=date(2026, 6, 15),
        tier_code="d",
        tier_label="D",
        price=Price(2008, 120_000),
        billed_from_month=0,
    )
    assert refund is not None and refund.kind == "credit_note" and refund.net_pence == 90_000
    assert (
        leaver_refund(
            ends_on=date(2027, 3, 2),
            tier_code="d",
            tier_label="D",
            price=Price(2008, 1),
            billed_from_month=0,
        )
        is None
    )


def test_tier_change_credits_the_old_tier_and_invoices_the_new_for_the_same_months() -> None:
    credit, invoice = tier_change_charges(
        effective_on=date(2026, 10, 1),
        old_tier="district",
        old_label="District",
        old_price=Price(2008, 200_000, 2000),
        new_tier="upper-tier",
        new_label="Upper",
        new_price=Price(2008, 900_000, 2000),
        billed_from_month=0,
    )
    assert (credit.kind, credit.net_pence, credit.vat_pence) == ("credit_note", 100_000, 20_000)
    assert (invoice.kind, invoice.net_pence, invoice.lines[0].months) == ("invoice", 450_000, 6)


def test_payments_part_pay_then_pay_and_refuse_too_much_or_a_void_invoice() -> None:
    assert (
        check_payment(number="1", status="issued", gross_pence=1000, paid_pence=0, amount_pence=400)
        == 600
    )
    assert billing.status_after_payment(1000, 400) == "part_paid"
    assert billing.status_after_payment(1000, 1000) == "paid"
    with pytest.raises(BillingError, match=r"£7\.00 is more than the £6\.00 outstanding") as over:
        check_payment(
            number="1", status="part_paid", gross_pence=1000, paid_pence=400, amount_pence=700
        )
    assert over.value.code == "overpayment"
    with pytest.raises(BillingError, match="void") as void:
        check_payment(number="1", status="void", gross_pence=1000, paid_pence=0, amount_pence=1)
    assert void.value.code == "void"
    with pytest.raises(BillingError, match=r"more than £0\.00"):
        check_payment(number="1", status="issued", gross_pence=1000, paid_pence=0, amount_pence=0)


def test_reminders_go_at_due_plus_1_14_and_30_days_each_once() -> None:
    due = date(2026, 5, 1)
    assert reminder_stages_due(due_on=due, today=due, already_sent=set()) == []
    assert reminder_stages_due(due_on=due, today=date(2026, 5, 2), already_sent=set()) == [
        ("first", 1)
    ]
    assert reminder_stages_due(due_on=due, today=date(2026, 5, 3), already_sent={"first"}) == []
    assert reminder_stages_due(due_on=due, today=date(2026, 5, 15), already_sent={"first"}) == [
        ("second", 14)
    ]
    assert reminder_stages_due(
        due_on=due, today=date(2026, 6, 1), already_sent={"first", "second"}
    ) == [("final", 30)]
    assert (
        reminder_stages_due(
            due_on=due, today=date(2026, 9, 1), already_sent={"first", "second", "final"}
        )
        == []
    )
    # A sweep that missed days sends only the latest stage.
    assert reminder_stages_due(due_on=due, today=date(2026, 6, 5), already_sent=set()) == [
        ("final", 30)
    ]


# Properties

prices = st.integers(min_value=0, max_value=10_000_000)
rates = st.sampled_from([0, 500, 1500, 1750, 2000])


@given(prices)
def test_the_twelve_months_add_up_to_the_price(price: int) -> None:
    assert sum(month_cost(price, month) for month in range(12)) == price
    assert all(month_cost(price, month) >= 0 for month in range(12))


@given(
    net=st.integers(min_value=0, max_value=10**9), rate=st.integers(min_value=0, max_value=10_000)
)
def test_vat_is_within_half_a_penny_of_the_exact_figure(net: int, rate: int) -> None:
    exact = net * rate / 10_000
    assert abs(vat_on(net, rate) - exact) <= 0.5
    if (net * rate) % 10_000 * 2 == 10_000:  # exactly half a penny: rounds up
        assert vat_on(net, rate) > exact


@given(
    start_month=st.integers(min_value=0, max_value=11),
    tier_prices=st.lists(prices, min_size=1, max_size=6),
    change_months=st.lists(st.integers(min_value=0, max_value=11), max_size=5),
    rate=rates,
)
def test_a_years_invoices_and_credit_notes_cost_what_the_months_at_each_tier_cost(
    start_month: int, tier_prices: list[int], change_months: list[int], rate: int
) -> None:
    """Any sequence of tier changes: invoices − credit notes = Σ months × that month's tier."""
    year = 2026
    names = [f"t{n}" for n in range(len(tier_prices))]
    changes = sorted(m for m in change_months if m >= start_month)
    first = recurring_charge(
        year=year,
        tier_code=names[0],
        tier_label=names[0],
        price=Price(2000, tier_prices[0], rate),
        starts_on=month_start(year, start_month),
        ends_on=None,
        refund_leavers=False,
    )
    assert first is not None
    documents = [first]
    tier_by_month = {m: 0 for m in range(start_month, 12)}
    current = 0
    for step, month in enumerate(changes, 1):
        new = step % len(tier_prices)
        if new == current:
            continue
        credit, invoice = tier_change_charges(
            effective_on=month_start(year, month),
            old_tier=names[current],
            old_label=names[current],
            old_price=Price(2000, tier_prices[current], rate),
            new_tier=names[new],
            new_label=names[new],
            new_price=Price(2000, tier_prices[new], rate),
            billed_from_month=start_month,
        )
        documents += [credit, invoice]
        for m in range(month, 12):
            tier_by_month[m] = new
        current = new
    billed = sum(document.signed_net_pence for document in documents)
    months_cost = sum(month_cost(tier_prices[tier], m) for m, tier in tier_by_month.items())
    assert billed == months_cost
    assert all(document.net_pence >= 0 for document in documents)


@given(price=prices, start=st.integers(0, 11), leave=st.integers(0, 11))
def test_a_refunded_leaver_pays_exactly_its_months(price: int, start: int, leave: int) -> None:
    if leave < start:
        return
    year = 2026
    ends_on = month_start(year, leave)
    charge = recurring_charge(
        year=year,
        tier_code="d",
        tier_label="D",
        price=Price(2000, price),
        starts_on=month_start(year, start),
        ends_on=ends_on,
        refund_leavers=True,
    )
    assert charge is not None
    assert charge.net_pence == sum(month_cost(price, m) for m in range(start, leave + 1))
    full = charge_from_month(price, start)
    refund = leaver_refund(
        ends_on=ends_on,
        tier_code="d",
        tier_label="D",
        price=Price(2000, price),
        billed_from_month=start,
    )
    assert full - (refund.net_pence if refund else 0) == charge.net_pence


def test_a_runs_hand_built_invoice_fact_is_what_the_model_would_send() -> None:
    from contracts.subscriptions_v1 import InvoiceIssued
    from services.subscriptions.invoicing import Billed, _rows, invoice_issued_data

    charge = recurring_charge(
        year=2026,
        tier_code="district",
        tier_label="District council",
        price=Price(2008, 200_001, 2000),
        starts_on=date(2026, 9, 9),
        ends_on=None,
        refund_leavers=False,
    )
    assert charge is not None
    invoice, _ = _rows(
        charge,
        invoice_id="inv-1",
        series="INV",
        number=7,
        billed=Billed("m-1", "ms-1", "Bury Council", "ap@bury.gov.uk"),
        issued_on=date(2026, 4, 1),
        due_on=date(2026, 5, 1),
    )
    data = invoice_issued_data(invoice, charge)
    assert InvoiceIssued.model_validate(data).model_dump(mode="json") == data


def test_automation_moments_follow_the_london_calendar() -> None:
    from datetime import UTC, datetime, time

    from services.subscriptions.sweeps import due_moments

    def moments(when: datetime, day: str = "04-01") -> list[tuple[str, int, str]]:
        return due_moments(when, day=day, at=time(6, 0))

    # 05:30 UTC on 1 April is 06:30 BST: the year's run and April's sweep are due.
    assert moments(datetime(2026, 4, 1, 5, 30, tzinfo=UTC)) == [
        ("yearly:2026", 2026, "yearly"),
        ("monthly:2026-04", 2026, "monthly"),
    ]
    # 04:30 UTC is 05:30 BST: still last year's run and March's sweep.
    assert moments(datetime(2026, 4, 1, 4, 30, tzinfo=UTC)) == [
        ("yearly:2025", 2025, "yearly"),
        ("monthly:2026-03", 2025, "monthly"),
    ]
    # A yearly run set for 1 March bills the year starting in April.
    assert moments(datetime(2027, 3, 2, 12, tzinfo=UTC), day="03-01")[0] == (
        "yearly:2027",
        2027,
        "yearly",
    )


def test_the_shipped_catalog_file_is_the_reference_catalog() -> None:
    import services.subscriptions

    path = Path(services.subscriptions.__file__).parent / "reference-catalog.toml"
    assert load_catalog(path) == REFERENCE_CATALOG
