"""Secrets at rest: which columns hold encrypted values, the process keyring, key rotation."""
