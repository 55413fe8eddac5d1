"""The hosted checkout `GET /pay/{id}` as HTML: what a payer sees for each state, in English
and Indonesian, its QR codes, the live-status stream, and the 404 page (no browser here:
tests/checkout/test_browser.py drives the page in Chromium)."""

from __future__ import annotations

import asyncio
import re

import httpx
import orjson
import pytest
from sqlalchemy import text

from nespay.checkout.uri import payment_uri
from nespay.kit.addresses import checksum_address
from tests.payments.conftest import units

PAGE = "/pay/{}"


async def page(client, invoice_id, **headers):
    return await client.get(PAGE.format(invoice_id), headers=headers)


async def test_a_pending_invoice_shows_amount_network_address_contract_and_expiry(chain):
    invoice = await chain.invoice("12.5")
    option = invoice["payment_options"][0]
    response = await page(chain.client, invoice["id"])
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert '<html lang="en">' in html
    assert "Pay 12.5 USDT" in html
    assert option["address"] in html
    assert checksum_address(chain.token) in html
    assert re.search(r"Send only USDT on [^.]+\. Anything else sent to this address", html)
    assert "Expires in" in html and 'datetime="' in html
    assert "Waiting for your payment." in html
    # Nothing from elsewhere: no external script, style, font or image.
    assert not re.search(r'(src|href)="(https?:)?//', html)
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    # The invoice's answer points at this page.
    assert invoice["hosted_url"].endswith(PAGE.format(invoice["id"]))


async def test_each_option_is_headed_by_its_networks_name_from_the_catalog(chain):
    async with chain.runtime.db.engine.begin() as conn:
        await conn.execute(
            text("UPDATE networks SET name = 'Anvil Testnet' WHERE code = :n"), {"n": chain.network}
        )
    chain.reference_changed()
    invoice = await chain.invoice()
    html = (await page(chain.client, invoice["id"])).text
    assert "USDT · Anvil Testnet</h2>" in html


async def test_the_qr_code_holds_the_eip681_uri_of_what_is_due(chain):
    invoice = await chain.invoice("10")
    option = invoice["payment_options"][0]
    response = await chain.client.get(f"/pay/{invoice['id']}/qr/0.svg")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/svg+xml"
    assert response.text.startswith("<svg")
    expected = (
        f"ethereum:{checksum_address(chain.token)}@31337/transfer"
        f"?address={option['address']}&uint256={units('10')}"
    )
    html = (await page(chain.client, invoice["id"])).text
    assert f'data-uri="{expected.replace("&", "&amp;")}"' in html
    missing = await chain.client.get(f"/pay/{invoice['id']}/qr/1.svg")
    assert missing.status_code == 404


def test_payment_uris_per_family():
    token = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
    to = "0x8ba1f109551bD432803012645Ac136ddd64DBA72"
    token_uri = payment_uri(
        chain_family="evm", chain_id=137, address=to, token_contract=token,
        amount_base_units=1_500_000,
    )  # fmt: skip
    assert token_uri == f"ethereum:{token}@137/transfer?address={to}&uint256=1500000"
    native_uri = payment_uri(
        chain_family="evm", chain_id=1, address=to, token_contract=None,
        amount_base_units=10**18,
    )  # fmt: skip
    assert native_uri == f"ethereum:{to}@1?value=1000000000000000000"
    tron = "TLsV52sRDL79HXGGm9yzwKibb6BeruhUzy"
    tron_uri = payment_uri(
        chain_family="tron", chain_id=None, address=tron, token_contract="TR7",
        amount_base_units=5,
    )  # fmt: skip
    assert tron_uri == tron


async def test_a_partial_payment_shows_what_is_still_due(chain):
    invoice = await chain.invoice("10")
    chain.pay(invoice, units("4"))
    await chain.scan()
    html = (await page(chain.client, invoice["id"])).text
    assert "Part of the payment arrived. Still due: 6 USDT." in html
    assert "Pay 6 USDT" in html
    qr_uri = re.search(r'data-uri="([^"]+)"', html).group(1)
    assert qr_uri.endswith(f"uint256={units('6')}")


async def test_paid_and_confirmed_show_the_way_back_to_the_shop(chain):
    invoice = await chain.invoice("10", redirect_url="https://shop.example/thanks?o=1")
    html = (await page(chain.client, invoice["id"])).text
    assert '<p id="return" hidden>' in html  # not before payment
    chain.pay(invoice, units("10"))
    await chain.scan()
    html = (await page(chain.client, invoice["id"])).text
    assert "Payment received. Waiting for the network to confirm it." in html
    assert '<p id="return">' in html
    assert 'href="https://shop.example/thanks?o=1"' in html
    assert '<div id="payable" hidden>' in html  # nothing more to pay
    chain.node.mine(3)
    await chain.scan()
    html = (await page(chain.client, invoice["id"])).text
    assert "Payment confirmed. Thank you!" in html
    assert '<noscript><meta http-equiv="refresh"' not in html  # final: no more refreshing


async def test_an_expired_invoice_says_what_to_do(chain):
    invoice = await chain.invoice("10")
    await chain.expire(invoice["id"])
    html = (await page(chain.client, invoice["id"])).text
    assert "This invoice expired. Do not send anything to it now." in html
    assert invoice["id"] in html
    assert '<div id="payable" hidden>' in html


@pytest.mark.parametrize(
    ("headers", "query", "language", "text"),
    [
        ({"accept-language": "id-ID,id;q=0.9,en;q=0.8"}, "", "id", "Menunggu pembayaran Anda."),
        ({"accept-language": "fr-CH, fr;q=0.9, en;q=0.8"}, "", "en", "Waiting for your payment."),
        ({"accept-language": "id"}, "?lang=en", "en", "Waiting for your payment."),
        ({}, "?lang=id", "id", "Kirim hanya USDT di jaringan"),
        ({"accept-language": ";;;q=abc,,q=0"}, "", "en", "Waiting for your payment."),
        ({}, "?lang=xx", "en", "Waiting for your payment."),
    ],
)
async def test_the_language_follows_the_choice_then_the_browser(
    chain, headers, query, language, text
):
    invoice = await chain.invoice("10")
    response = await chain.client.get(PAGE.format(invoice["id"]) + query, headers=headers)
    assert response.status_code == 200
    assert f'<html lang="{language}">' in response.text
    assert text in response.text
    assert response.headers["content-language"] == language


async def test_a_chosen_language_is_remembered(chain):
    invoice = await chain.invoice("10")
    chosen = await chain.client.get(PAGE.format(invoice["id"]) + "?lang=id")
    assert chosen.cookies.get("nespay_lang") == "id"
    again = await chain.client.get(
        PAGE.format(invoice["id"]),
        headers={"accept-language": "en", "cookie": "nespay_lang=id"},
    )
    assert '<html lang="id">' in again.text


@pytest.mark.parametrize(
    "invoice_id",
    ["inv_00000000000000000000000000", "inv_short", "nope", "inv_" + "z" * 200, "%3Cscript%3E"],
)
async def test_an_unknown_invoice_gets_a_friendly_404_page(chain, invoice_id):
    response = await chain.client.get(f"/pay/{invoice_id}", headers={"accept-language": "id"})
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "Tagihan tidak ditemukan" in response.text
    assert "<script>" not in response.text
    # The same page whatever the id: nothing tells a well-formed id from another.
    assert invoice_id not in response.text


async def test_the_event_stream_tells_a_payment_as_it_happens(chain, api_server):
    """Through a real server (an in-process client would buffer the whole stream)."""
    invoice = await chain.invoice("10")
    events: list[dict] = []

    async def listen():
        url = f"{api_server.base_url}/pay/{invoice['id']}/events"
        async with httpx.AsyncClient(timeout=30) as client, client.stream("GET", url) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            assert stream.headers["cache-control"] == "no-store"
            async for line in stream.aiter_lines():
                if line.startswith("data: "):
                    events.append(orjson.loads(line[6:]))
                    if not events[-1]["live"]:
                        return

    listener = asyncio.create_task(listen())
    async with asyncio.timeout(30):
        while not events:
            await asyncio.sleep(0.05)
    assert events[0]["status"] == "pending"
    chain.pay(invoice, units("4"))
    await chain.scan()
    async with asyncio.timeout(30):
        while events[-1]["status"] != "partially_paid":
            await asyncio.sleep(0.05)
    assert events[-1]["options"][0]["amount_due"] == "6"
    chain.pay(invoice, units("6"))
    await chain.scan()
    chain.node.mine(3)
    await chain.scan()
    await asyncio.wait_for(listener, 30)
    statuses = [event["status"] for event in events]
    assert statuses[0] == "pending" and statuses[-1] == "confirmed"
    assert events[-1]["message"] == "Payment confirmed. Thank you!"
    assert events[-1]["payable"] is False


async def test_the_stream_of_an_unknown_invoice_is_404(chain):
    response = await chain.client.get("/pay/inv_00000000000000000000000000/events")
    assert response.status_code == 404
