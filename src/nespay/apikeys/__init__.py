"""API keys for merchants' servers: shown once, stored hashed, scoped, revocable."""
