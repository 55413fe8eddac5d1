"""Turning rows into the API's invoice shapes (merchant view and payer view)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from decimal import Decimal
from fractions import Fraction

from nespay.checkout.links import hosted_url
from nespay.invoices.schemas import (
    Invoice,
    InvoiceFlags,
    InvoicePayment,
    PaymentOption,
    PublicInvoice,
    PublicPaymentOption,
)
from nespay.invoices.states import OptionAmounts, share
from nespay.kit.addresses import display_address
from nespay.kit.money import FIAT_DECIMALS, decimal_string, from_base_units
from nespay.models import Currency, InvoiceOption, Payment
from nespay.models import Invoice as InvoiceRow

PRICE_DECIMALS_CAP = 18


def paid_share(options: Sequence[InvoiceOption]) -> Fraction:
    """Share of the invoice paid, exactly: the computation its status comes from
    (`nespay.invoices.states.share`)."""
    return share([OptionAmounts(int(o.amount), int(o.amount_paid)) for o in options]).fraction()


def price_decimals(invoice: InvoiceRow, currencies: Sequence[Currency]) -> int:
    if invoice.price_currency in FIAT_DECIMALS:
        return FIAT_DECIMALS[invoice.price_currency]
    same = [c.decimals for c in currencies if c.code == invoice.price_currency]
    return min(same) if same else PRICE_DECIMALS_CAP


def amounts(
    invoice: InvoiceRow, options: Sequence[InvoiceOption], currencies: Sequence[Currency]
) -> tuple[str, str]:
    """(amount_paid, amount_due) in the price currency: paid rounded down to its decimals,
    due what is left (0 exactly when the options' shares sum to 1 or more)."""
    places = price_decimals(invoice, currencies)
    price = Decimal(invoice.price_amount)
    paid_exact = Fraction(price) * min(paid_share(options), Fraction(10))
    paid = Decimal(math.floor(paid_exact * 10**places)).scaleb(-places)
    due = max(Decimal(0), price - paid)
    return decimal_string(paid), decimal_string(due)


def _contract(chain_family: str, currency: Currency) -> str | None:
    """The token contract as shown (EIP-55 on EVM), whatever case the catalog or row holds."""
    return display_address(chain_family, currency.contract) if currency.contract else None


def _option(option: InvoiceOption, currency: Currency) -> PaymentOption:
    return PaymentOption(
        network=option.network_code,
        currency=currency.code,
        address=display_address(option.chain_family, option.address),
        amount=from_base_units(option.amount, currency.decimals),
        amount_paid=from_base_units(option.amount_paid, currency.decimals),
        token_contract=_contract(option.chain_family, currency),
        decimals=currency.decimals,
        rate=decimal_string(Decimal(option.rate)),
    )


def payment_view(payment: Payment, currencies: dict[str, Currency]) -> InvoicePayment:
    currency = currencies[payment.currency_id]
    return InvoicePayment(
        id=payment.id,
        network=payment.network_code,
        currency=currency.code,
        tx_hash=payment.tx_hash,
        log_index=payment.log_index,
        block_number=payment.block_number,
        block_hash=payment.block_hash,
        from_address=payment.from_address,
        amount=from_base_units(payment.amount, currency.decimals),
        status=payment.status,
        confirmations=payment.confirmations,
        late=payment.late,
        detected_at=payment.detected_at,
        confirmed_at=payment.confirmed_at,
    )


def invoice_view(
    invoice: InvoiceRow,
    options: Sequence[tuple[InvoiceOption, Currency]],
    payments: Sequence[Payment],
    *,
    base_url: str,
) -> Invoice:
    """The merchant's view; `base_url` (`Settings.base_url`) is where its `hosted_url` lives."""
    option_rows = [option for option, _ in options]
    currencies = [currency for _, currency in options]
    paid, due = amounts(invoice, option_rows, currencies)
    by_id = {currency.id: currency for currency in currencies}
    return Invoice(
        id=invoice.id,
        status=invoice.status,
        amount=decimal_string(Decimal(invoice.price_amount)),
        currency=invoice.price_currency,
        amount_paid=paid,
        amount_due=due,
        rate=decimal_string(Decimal(option_rows[0].rate)) if option_rows else None,
        payment_options=[_option(option, currency) for option, currency in options],
        payments=[
            payment_view(payment, by_id) for payment in payments if payment.currency_id in by_id
        ],
        order_id=invoice.order_id,
        description=invoice.description,
        metadata=invoice.metadata_ or {},
        redirect_url=invoice.redirect_url,
        hosted_url=hosted_url(base_url, invoice.id),
        expires_at=invoice.expires_at,
        created_at=invoice.created_at,
        paid_at=invoice.paid_at,
        confirmed_at=invoice.confirmed_at,
        expired_at=invoice.expired_at,
        cancelled_at=invoice.cancelled_at,
        flags=InvoiceFlags(overpaid=invoice.overpaid, paid_late=invoice.paid_late),
    )


def public_view(
    invoice: InvoiceRow,
    options: Sequence[tuple[InvoiceOption, Currency]],
    chain_ids: dict[str, int | None],
) -> PublicInvoice:
    option_rows = [option for option, _ in options]
    _, due = amounts(invoice, option_rows, [currency for _, currency in options])
    remaining = max(Fraction(0), 1 - paid_share(option_rows))
    return PublicInvoice(
        id=invoice.id,
        status=invoice.status,
        amount=decimal_string(Decimal(invoice.price_amount)),
        currency=invoice.price_currency,
        amount_due=due,
        payment_options=[
            PublicPaymentOption(
                network=option.network_code,
                currency=currency.code,
                address=display_address(option.chain_family, option.address),
                amount_due=from_base_units(
                    math.ceil(int(option.amount) * remaining), currency.decimals
                ),
                token_contract=_contract(option.chain_family, currency),
                decimals=currency.decimals,
                chain_id=chain_ids.get(option.network_code),
            )
            for option, currency in options
        ],
        expires_at=invoice.expires_at,
        redirect_url=invoice.redirect_url,
    )
