"""Blockchain networks, their currencies and RPC endpoints; scanners (per chain family)."""
