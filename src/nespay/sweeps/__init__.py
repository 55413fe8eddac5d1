"""Consolidation: deposit addresses holding confirmed funds swept into the network's treasury
(see docs/consolidation.md)."""
