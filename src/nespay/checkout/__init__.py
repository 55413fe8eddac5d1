"""The hosted checkout: the payer's page for an invoice (`GET /pay/{invoice_id}` on the api)."""
