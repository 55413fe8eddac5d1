"""Merchant callbacks: endpoints, signed deliveries of events (the outbox), retries."""
