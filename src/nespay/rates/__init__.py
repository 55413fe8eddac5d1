"""Fiat exchange rates: sources that fetch them, the table that keeps them, and the lookup
that prices a fiat invoice (SPEC §5)."""
