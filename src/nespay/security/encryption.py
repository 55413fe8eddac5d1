"""The registry of encrypted columns and the helpers that seal and unseal their values.

Each domain registers the columns that hold secrets (`register("webhook_endpoints",
"secret_encrypted")` at import time); `nespay keys rotate` walks the registry. A value is bound
to its place: the associated data is (table, column, row id), so a ciphertext copied to another
row or column does not decrypt.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from nespay.config import Settings
from nespay.kit.crypto import DecryptionError, Keyring, aad_for

__all__ = [
    "ENCRYPTED_COLUMNS",
    "DecryptionError",
    "EncryptedColumn",
    "Keyring",
    "keyring_from_settings",
    "register",
    "seal",
    "unseal",
]

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def quote_identifier(name: str) -> str:
    """A plain SQL identifier, double-quoted; anything else is refused."""
    if not _IDENTIFIER.fullmatch(name):
        raise ValueError(f"not a plain SQL identifier: {name!r}")
    return f'"{name}"'


@dataclass(frozen=True)
class EncryptedColumn:
    """A text column whose non-null values are tokens of `nespay.kit.crypto`."""

    table: str
    column: str
    id_column: str = "id"

    def __post_init__(self) -> None:
        for name in (self.table, self.column, self.id_column):
            quote_identifier(name)

    @property
    def name(self) -> str:
        return f"{self.table}.{self.column}"

    def aad(self, row_id: object) -> bytes:
        return aad_for(self.table, self.column, str(row_id))


ENCRYPTED_COLUMNS: list[EncryptedColumn] = []


def register(table: str, column: str, id_column: str = "id") -> EncryptedColumn:
    """Add a column to the registry (idempotent); returns its spec for seal/unseal."""
    spec = EncryptedColumn(table, column, id_column)
    for existing in ENCRYPTED_COLUMNS:
        if (existing.table, existing.column) == (table, column):
            if existing != spec:
                raise ValueError(f"{spec.name} is already registered with another id column")
            return existing
    ENCRYPTED_COLUMNS.append(spec)
    return spec


def seal(keyring: Keyring, column: EncryptedColumn, row_id: object, plaintext: str) -> str:
    """Encrypt a value for `column` of row `row_id` under the current key."""
    return keyring.encrypt(plaintext.encode("utf-8"), aad=column.aad(row_id))


def unseal(keyring: Keyring, column: EncryptedColumn, row_id: object, token: str) -> str:
    """Decrypt a value read from `column` of row `row_id`; DecryptionError if it cannot."""
    return keyring.decrypt(token, aad=column.aad(row_id)).decode("utf-8")


@lru_cache(maxsize=4)
def _keyring(current: str, previous: str | None) -> Keyring:
    return Keyring(current, previous)


def keyring_from_settings(settings: Settings) -> Keyring:
    """The process's keyring: ENCRYPTION_MASTER_KEY, plus ENCRYPTION_MASTER_KEY_PREVIOUS if set."""
    previous = settings.encryption_master_key_previous
    return _keyring(
        settings.encryption_master_key.get_secret_value(),
        previous.get_secret_value() if previous is not None else None,
    )
