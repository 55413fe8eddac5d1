"""The event log: every state change writes its event in the same transaction (the outbox)."""
