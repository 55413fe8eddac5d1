"""The HMAC keys an endpoint signs with: its secret, and for 24 h after a rotation the previous
one too (Standard Webhooks lets a header carry several signatures; the receiver accepts any).

Decrypting costs an HKDF derivation and an AES-GCM open; deliveries reuse the result, keyed by
the ciphertexts themselves, so a rotation (new ciphertext) is picked up at once."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache

from nespay.config import Settings
from nespay.kit.crypto import Keyring
from nespay.kit.signing import secret_key
from nespay.models.identity import WEBHOOK_PREVIOUS_SECRET, WEBHOOK_SECRET
from nespay.security.encryption import EncryptedColumn, keyring_from_settings, unseal


def signing_keys(
    settings: Settings,
    endpoint_id: str,
    secret_encrypted: str,
    previous_encrypted: str | None,
    previous_expires_at: datetime | None,
    now: datetime,
) -> list[bytes]:
    """Newest first; the previous key only while it has not expired."""
    keyring = keyring_from_settings(settings)
    keys = [_key(keyring, WEBHOOK_SECRET, endpoint_id, secret_encrypted)]
    if previous_encrypted and previous_expires_at is not None and previous_expires_at > now:
        keys.append(_key(keyring, WEBHOOK_PREVIOUS_SECRET, endpoint_id, previous_encrypted))
    return keys


@lru_cache(maxsize=4096)
def _key(keyring: Keyring, column: EncryptedColumn, endpoint_id: str, token: str) -> bytes:
    return secret_key(unseal(keyring, column, endpoint_id, token))
