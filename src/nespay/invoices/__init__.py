"""Invoices: creation (priced in crypto or fiat), states, expiry, the payer view."""
