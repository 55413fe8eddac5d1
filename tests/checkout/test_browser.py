"""The hosted checkout in a real browser (Playwright driving Debian's Chromium, `./run test`
installs it): the page as a payer sees it, its QR code decoded from a screenshot, a payment
on anvil moving the page to paid without a reload, and axe-core's WCAG 2.2 AA rules."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest
import zxingcpp
from PIL import Image
from playwright.async_api import Browser, Page, async_playwright

from tests.payments.conftest import units

ROOT = Path(__file__).resolve().parents[2]
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
CHROMIUM = "/usr/bin/chromium"
# As root, without a sandbox; no background traffic (this machine has no network).
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WCAG = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]


@pytest.fixture
async def browser() -> Browser:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield launched
        finally:
            await launched.close()


async def open_page(browser: Browser, url: str, **context) -> Page:
    page = await (await browser.new_context(**context)).new_page()
    response = await page.goto(url)
    assert response is not None
    return page


async def until_uri(browser: Browser, url: str) -> Page:
    """The page once the api process's catalog knows the test's new network (it reloads
    every 5 s): its QR holds an EIP-681 URI from then on."""
    for _ in range(40):
        page = await open_page(browser, url)
        if (await page.get_attribute("#qr-0", "data-uri") or "").startswith("ethereum:"):
            return page
        await page.context.close()
        await asyncio.sleep(0.25)
    raise AssertionError("the page never showed the network's chain id")


async def violations(page: Page) -> list[dict]:
    await page.evaluate(AXE.read_text())
    result = await page.evaluate(
        "async (tags) => await axe.run(document, {runOnly: {type: 'tag', values: tags}})", WCAG
    )
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]]}
        for v in result["violations"]
    ]


async def test_the_page_loads_and_its_qr_code_decodes_to_the_payment_uri(
    chain, api_server, browser
):
    invoice = await chain.invoice("7.25")
    option = invoice["payment_options"][0]
    page = await until_uri(browser, f"{api_server.base_url}/pay/{invoice['id']}")
    assert await page.title() == f"Pay invoice {invoice['id']}"
    assert "Pay 7.25 USDT" in await page.inner_text("h1")
    assert await page.inner_text("#address-0") == option["address"]
    assert await page.is_visible("button.copy")  # the script ran (CSP allowed our own file)
    countdown = await page.inner_text("#countdown")
    assert countdown.count(":") >= 1 and countdown.replace(":", "").isdigit()
    shot = await page.locator("#qr-0").screenshot()
    (decoded,) = zxingcpp.read_barcodes(Image.open(io.BytesIO(shot)))
    expected = (
        f"ethereum:{option['token_contract']}@31337/transfer"
        f"?address={option['address']}&uint256={units('7.25')}"
    )
    assert decoded.text == expected
    assert await page.get_attribute("#qr-0", "data-uri") == expected


async def test_a_payment_moves_the_page_to_paid_without_a_reload(chain, api_server, browser):
    invoice = await chain.invoice("10", redirect_url="https://shop.example/thanks")
    page = await until_uri(browser, f"{api_server.base_url}/pay/{invoice['id']}")
    await page.evaluate("() => { window.__sameDocument = true; }")
    assert not await page.is_visible("#return")

    chain.pay(invoice, units("4"))
    await chain.scan()
    await page.wait_for_function(
        "() => document.getElementById('amount-0').textContent === '6'", timeout=15_000
    )
    assert "Still due: 6 USDT" in await page.inner_text("#status")

    chain.pay(invoice, units("6"))
    await chain.scan()
    await page.wait_for_function("() => document.body.dataset.status === 'paid'", timeout=15_000)
    assert "Payment received" in await page.inner_text("#status")
    assert not await page.is_visible("#payable")
    assert await page.is_visible("#return a")
    assert await page.get_attribute("#return a", "href") == "https://shop.example/thanks"

    chain.node.mine(3)
    await chain.scan()
    await page.wait_for_function(
        "() => document.body.dataset.status === 'confirmed'", timeout=15_000
    )
    assert await page.inner_text("#status") == "Payment confirmed. Thank you!"
    assert await page.evaluate("() => window.__sameDocument === true")  # never reloaded


async def test_without_javascript_the_page_still_says_everything_and_refreshes(
    chain, api_server, browser
):
    invoice = await chain.invoice("10")
    page = await open_page(
        browser, f"{api_server.base_url}/pay/{invoice['id']}", java_script_enabled=False
    )
    assert "Waiting for your payment." in await page.inner_text("#status")
    assert await page.is_visible("#address-0")
    assert not await page.is_visible("button.copy")  # needs the script
    refresh = await page.locator('noscript meta[http-equiv="refresh"]').count()
    assert refresh == 1


@pytest.mark.parametrize("language", ["en", "id"])
async def test_axe_finds_no_wcag_violation(chain, api_server, browser, language):
    invoice = await chain.invoice("10", redirect_url="https://shop.example/thanks")
    base = api_server.base_url
    pending = await open_page(
        browser, f"{base}/pay/{invoice['id']}?lang={language}", bypass_csp=True
    )
    assert await violations(pending) == []

    chain.pay(invoice, units("10"))
    await chain.scan()
    paid = await open_page(browser, f"{base}/pay/{invoice['id']}?lang={language}", bypass_csp=True)
    assert "status-paid" in (await paid.get_attribute("#status", "class") or "")
    assert await violations(paid) == []

    missing = await open_page(
        browser, f"{base}/pay/inv_00000000000000000000000000?lang={language}", bypass_csp=True
    )
    assert await violations(missing) == []
