"""Secrets at rest: AES-256-GCM under keys derived from the master key, with key versions.

A master key (64 random bytes, given as 128 hex characters) is never used directly: HKDF-SHA256
derives a 32-byte key per purpose (`nespay:secrets:v1`). Each key has a version id, a short
fingerprint derived from it by HKDF with another `info` (it names the key, it cannot recover it).

A ciphertext is one ASCII token that says how to open it::

    enc:v1:<key version>:<base64url nonce>:<base64url ciphertext+tag>

`v1` is the token format; the 12-byte nonce is random per encryption. The associated data binds
a ciphertext to its place (`aad_for(table, column, row_id)`), so a value copied to another row
or column does not decrypt; the token's header is authenticated too.

`Keyring` encrypts with the current key and decrypts with the current or the previous one, which
is what lets `nespay keys rotate` re-encrypt everything while services keep running.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

TOKEN_PREFIX = "enc:v1:"  # noqa: S105 - a format marker, not a secret
MASTER_KEY_BYTES = 64
KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
DEFAULT_PURPOSE = "secrets"

_TOKEN = re.compile(r"enc:v1:([0-9a-f]{8}):([A-Za-z0-9_-]+):([A-Za-z0-9_-]+)")
_HKDF_SALT = b"nespay:hkdf-salt:v1"


class DecryptionError(Exception):
    """A token could not be opened. The message names the reason, never a key or a value."""


def generate_master_key() -> str:
    """A fresh master key: 64 random bytes as 128 hex characters."""
    return secrets.token_hex(MASTER_KEY_BYTES)


def _hkdf(material: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=_HKDF_SALT, info=info).derive(
        material
    )


def derive_key(master: bytes, purpose: str = DEFAULT_PURPOSE) -> bytes:
    """The 32-byte AES key for one purpose (HKDF-SHA256, info `nespay:<purpose>:v1`)."""
    return _hkdf(master, f"nespay:{purpose}:v1".encode(), KEY_BYTES)


def key_version(derived_key: bytes) -> str:
    """A key's version id: 8 hex characters of HKDF(key, info `nespay:key-id:v1`)."""
    return _hkdf(derived_key, b"nespay:key-id:v1", 4).hex()


def parse_master_key(master_hex: str) -> bytes:
    """128 hex characters → 64 bytes; a bad value raises ValueError without echoing it."""
    try:
        master = bytes.fromhex(master_hex)
    except (ValueError, TypeError):
        raise ValueError("master key: expected 128 hex characters (64 bytes)") from None
    if len(master) != MASTER_KEY_BYTES:
        raise ValueError("master key: expected 128 hex characters (64 bytes)")
    return master


def aad_for(table: str, column: str, row_id: str) -> bytes:
    """Associated data naming a value's place; each part length-prefixed, so it is unambiguous."""
    parts = (table, column, str(row_id))
    return b"nespay:aad:v1:" + b"".join(
        f"{len(encoded)}:".encode() + encoded + b"," for encoded in (p.encode() for p in parts)
    )


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(data: str) -> bytes:
    """Strict: only the canonical encoding (no stray bits) is accepted, so a token is unique."""
    decoded = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
    if _b64encode(decoded) != data:
        raise ValueError("non-canonical base64")
    return decoded


def is_token(value: str) -> bool:
    """Whether a value looks like a token of this module (not whether it decrypts)."""
    return _TOKEN.fullmatch(value) is not None


def token_version(token: str) -> str:
    """The key version a token names; DecryptionError if it is not a token."""
    match = _TOKEN.fullmatch(token) if isinstance(token, str) else None
    if match is None:
        raise DecryptionError("not an encrypted value (malformed token)")
    return match.group(1)


class _Key:
    __slots__ = ("aead", "version")

    def __init__(self, master_hex: str, purpose: str) -> None:
        derived = derive_key(parse_master_key(master_hex), purpose)
        self.version = key_version(derived)
        self.aead = AESGCM(derived)

    def __repr__(self) -> str:
        return f"<key {self.version}>"


class Keyring:
    """The current key (encrypts and decrypts) and optionally the previous one (decrypts)."""

    def __init__(
        self,
        current_master_hex: str,
        previous_master_hex: str | None = None,
        *,
        purpose: str = DEFAULT_PURPOSE,
    ) -> None:
        self._current = _Key(current_master_hex, purpose)
        self._keys = {self._current.version: self._current}
        if previous_master_hex is not None and previous_master_hex != current_master_hex:
            previous = _Key(previous_master_hex, purpose)
            if previous.version == self._current.version:  # 2**-32 chance: refuse, don't guess
                raise ValueError("master keys: the current and previous keys share a version id")
            self._keys[previous.version] = previous
        self.purpose = purpose

    def __repr__(self) -> str:
        return f"Keyring(current={self.current_version}, versions={list(self.versions)})"

    @property
    def current_version(self) -> str:
        return self._current.version

    @property
    def versions(self) -> tuple[str, ...]:
        """Versions this keyring decrypts, the current one first."""
        return tuple(self._keys)

    @property
    def current_prefix(self) -> str:
        """`enc:v1:<current version>:`: tokens under the current key start with it."""
        return f"{TOKEN_PREFIX}{self.current_version}:"

    def encrypt(self, plaintext: bytes, *, aad: bytes) -> str:
        key = self._current
        nonce = secrets.token_bytes(NONCE_BYTES)
        header = f"{TOKEN_PREFIX}{key.version}:"
        sealed = key.aead.encrypt(nonce, plaintext, header.encode() + aad)
        return f"{header}{_b64encode(nonce)}:{_b64encode(sealed)}"

    def decrypt(self, token: str, *, aad: bytes) -> bytes:
        version = token_version(token)
        key = self._keys.get(version)
        if key is None:
            raise DecryptionError(f"unknown key version {version}: not the current or previous key")
        _, _, _, nonce_b64, sealed_b64 = token.split(":")
        try:
            nonce, sealed = _b64decode(nonce_b64), _b64decode(sealed_b64)
        except (binascii.Error, ValueError):
            raise DecryptionError("not an encrypted value (malformed token)") from None
        if len(nonce) != NONCE_BYTES or len(sealed) < TAG_BYTES:
            raise DecryptionError("not an encrypted value (malformed token)")
        header = f"{TOKEN_PREFIX}{version}:".encode()
        try:
            return key.aead.decrypt(nonce, sealed, header + aad)
        except InvalidTag:
            raise DecryptionError(
                f"authentication failed under key {version}: tampered, or moved from its place"
            ) from None

    def needs_rotation(self, token: str) -> bool:
        """True unless the token is under the current key (malformed values count as needing it)."""
        return not (isinstance(token, str) and token.startswith(self.current_prefix))

    def reencrypt(self, token: str, *, aad: bytes) -> str:
        """Open with whichever key the token names, seal again with the current key."""
        return self.encrypt(self.decrypt(token, aad=aad), aad=aad)
