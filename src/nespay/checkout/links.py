"""Where an invoice's hosted page lives: `BASE_URL` + `/pay/{invoice_id}`.

The base is the process's `Settings.base_url`, passed in by whoever writes an invoice view
(the api's routes through `nespay.deps.BaseUrlDep`, invoice creation and the sandbox from
their runtime's settings), so an answer and the `invoice.created` callback carry the same
`hosted_url`."""

from __future__ import annotations

PATH = "/pay"


def hosted_url(base_url: str, invoice_id: str) -> str:
    return f"{base_url.rstrip('/')}{PATH}/{invoice_id}"
