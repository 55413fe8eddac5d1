"""Nespay: self-hosted cryptocurrency payments."""
