"""Payments seen on chain: recording, confirmations, reversal by reorgs."""
