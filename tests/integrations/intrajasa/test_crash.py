"""The webhook process killed (SIGKILL) after storing a paid VA's callback and before handling
it: after a restart the payment is confirmed with Intrajasa and credited, once."""

from __future__ import annotations

import signal

import httpx
import pytest

from nespay.apps import api
from tests.callbacks.delivery_rig import eventually
from tests.fixtures.app import app_client
from tests.fixtures.factories import merchant_with_key
from tests.fixtures.fake_intrajasa import MERCHANT_ID, SECRET_WORD
from tests.fixtures.processes import base_env, nespay_process
from tests.inbox.rig import HOOKS, rows, settings_env
from tests.integrations.intrajasa.conftest import FEE_BPS, enable_intrajasa, rig_settings

pytestmark = pytest.mark.own_database


async def test_sigkill_after_storing_a_paid_va_callback_loses_nothing(
    database, database_url, fake_intrajasa, tmp_path
):
    await enable_intrajasa(database)
    merchant = await merchant_with_key(database)
    async with app_client(api.create_app, rig_settings(database_url, fake_intrajasa)) as (
        _,
        client,
    ):
        body = {"amount": "25000", "currency": "IDR", "network": "intrajasa"}
        created = await client.post("/api/v1/invoices", json=body, headers=merchant.headers)
        assert created.status_code == 201, created.text
        invoice = created.json()
        raw, headers = fake_intrajasa.pay(invoice["payment_options"][0]["address"])
        env = base_env(
            database_url,
            **settings_env(),
            INTRAJASA_MERCHANT_ID=MERCHANT_ID,
            INTRAJASA_SECRET_WORD=SECRET_WORD,
            INTRAJASA_BASE_URL=fake_intrajasa.url,
            PLATFORM_FEE_BPS=str(FEE_BPS),
        )
        with nespay_process(
            "webhook", {**env, "NESPAY_FAULT": "inbox.after_store"}, tmp_path
        ) as doomed:
            with pytest.raises(httpx.TransportError):  # Intrajasa gets no answer ...
                httpx.post(f"{doomed.base_url}{HOOKS}/intrajasa", content=raw, headers=headers)
            assert doomed.process.wait(timeout=10) == -signal.SIGKILL
        (stored,) = await rows(database)  # ... but its callback was stored, not handled
        assert stored["status"] == "pending" and fake_intrajasa.calls("getstatus") == []
        with nespay_process("webhook", env, tmp_path) as restarted:
            await eventually(
                lambda: rows(database, "status = 'handled'"), what="handled after restart"
            )
            # Intrajasa's retry of the same callback: acknowledged, not handled again.
            retry = httpx.post(
                f"{restarted.base_url}{HOOKS}/intrajasa", content=raw, headers=headers
            )
            assert retry.status_code == 200 and retry.json()["duplicate"] is True
            log = restarted.log()
        paid = await client.get(f"/api/v1/invoices/{invoice['id']}", headers=merchant.headers)
        assert paid.json()["status"] == "confirmed"
        balances = await client.get("/api/v1/balances", headers=merchant.headers)
        assert [(b["network"], b["available"]) for b in balances.json()["data"]] == [
            ("intrajasa", "24750")
        ]
    assert len(fake_intrajasa.calls("getstatus")) == 1
    assert SECRET_WORD not in log and "intrajasa_payment_credited" in log
