"""Intrajasa (kliringindonesia.co.id): rupiah virtual accounts for IDR invoices
(docs/intrajasa.md)."""
