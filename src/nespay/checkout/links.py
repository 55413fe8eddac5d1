"""Where an invoice's hosted page lives: `BASE_URL` + `/pay/{invoice_id}`.

Every process that writes invoice views (the api's answers, the events the api and the
scanner emit) sets the base from its settings at start (`nespay.runtime.Runtime`), so an
answer and a callback carry the same `hosted_url`."""

from __future__ import annotations

PATH = "/pay"
_base = "http://localhost:8000"


def configure(base_url: str) -> None:
    global _base
    _base = base_url.rstrip("/")


def hosted_url(invoice_id: str) -> str:
    return f"{_base}{PATH}/{invoice_id}"
