"""AES-256-GCM tokens: format, key versions, place binding, tampering, errors that leak nothing."""

import base64

import pytest
from pydantic import SecretStr

from nespay.kit.crypto import (
    DecryptionError,
    Keyring,
    aad_for,
    derive_key,
    generate_master_key,
    is_token,
    key_version,
    token_version,
)
from nespay.security.encryption import (
    ENCRYPTED_COLUMNS,
    EncryptedColumn,
    keyring_from_settings,
    register,
    seal,
    unseal,
)
from tests.fixtures.database import make_settings

A = generate_master_key()
B = generate_master_key()
AAD = aad_for("webhook_endpoints", "secret_encrypted", "whe_1")
SECRET = b"whsec_correct-horse-battery-staple"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


def flip(token: str, part: int) -> str:
    pieces = token.split(":")
    raw = bytearray(unb64(pieces[part]))
    raw[len(raw) // 2] ^= 0x01
    pieces[part] = b64(bytes(raw))
    return ":".join(pieces)


def test_round_trip():
    ring = Keyring(A)
    token = ring.encrypt(SECRET, aad=AAD)
    assert ring.decrypt(token, aad=AAD) == SECRET
    assert ring.decrypt(ring.encrypt(b"", aad=AAD), aad=AAD) == b""


def test_token_format_and_version():
    ring = Keyring(A)
    token = ring.encrypt(SECRET, aad=AAD)
    assert token.isascii() and is_token(token)
    scheme, fmt, version, nonce, sealed = token.split(":")
    assert (scheme, fmt) == ("enc", "v1")
    assert version == ring.current_version == token_version(token)
    assert len(version) == 8 and int(version, 16) >= 0
    assert len(unb64(nonce)) == 12
    assert len(unb64(sealed)) == len(SECRET) + 16  # ciphertext + GCM tag
    assert token.startswith(ring.current_prefix)
    # Stable across processes: the version depends only on the master key.
    assert Keyring(A).current_version == version != Keyring(B).current_version


def test_associated_data_binds_the_value_to_its_row_and_column():
    ring = Keyring(A)
    token = ring.encrypt(SECRET, aad=aad_for("t", "secret", "row_1"))
    for other in (
        aad_for("t", "secret", "row_2"),
        aad_for("t", "other_secret", "row_1"),
        aad_for("u", "secret", "row_1"),
        b"",
    ):
        with pytest.raises(DecryptionError):
            ring.decrypt(token, aad=other)
    # The length-prefixed encoding is unambiguous.
    assert aad_for("a", "b:c", "d") != aad_for("a:b", "c", "d")
    assert aad_for("t", "c", "1,2") != aad_for("t", "c,1", "2")


@pytest.mark.parametrize("part", [3, 4], ids=["nonce", "ciphertext"])
def test_tampering_is_detected(part):
    ring = Keyring(A)
    token = ring.encrypt(SECRET, aad=AAD)
    with pytest.raises(DecryptionError, match="authentication failed"):
        ring.decrypt(flip(token, part), aad=AAD)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-1],  # truncated: non-canonical or short
        lambda t: t.replace(":", ";", 1),
        lambda t: t + "=",
        lambda t: ":".join(t.split(":")[:4]) + ":" + b64(b"short"),  # shorter than a tag
        lambda t: ":".join(t.split(":")[:3]) + ":" + b64(b"x" * 8) + ":" + t.split(":")[4],
        lambda t: "whsec_plaintext-not-a-token",
    ],
)
def test_malformed_tokens_are_refused(mangle):
    ring = Keyring(A)
    with pytest.raises(DecryptionError):
        ring.decrypt(mangle(ring.encrypt(SECRET, aad=AAD)), aad=AAD)


def test_header_is_authenticated():
    """Relabelling a token with another version is refused even if that key is known."""
    ring = Keyring(B, A)
    token = Keyring(A).encrypt(SECRET, aad=AAD)
    relabelled = token.replace(Keyring(A).current_version, ring.current_version, 1)
    with pytest.raises(DecryptionError):
        ring.decrypt(relabelled, aad=AAD)


def test_previous_key_still_decrypts_after_the_master_key_changes():
    old_token = Keyring(A).encrypt(SECRET, aad=AAD)
    ring = Keyring(B, A)
    assert ring.versions == (Keyring(B).current_version, Keyring(A).current_version)
    assert ring.decrypt(old_token, aad=AAD) == SECRET
    assert ring.needs_rotation(old_token)
    new_token = ring.reencrypt(old_token, aad=AAD)
    assert not ring.needs_rotation(new_token)
    assert token_version(new_token) == ring.current_version
    assert Keyring(B).decrypt(new_token, aad=AAD) == SECRET
    # New writes use the current key only.
    assert token_version(ring.encrypt(SECRET, aad=AAD)) == Keyring(B).current_version


def test_unknown_version_is_refused():
    token = Keyring(A).encrypt(SECRET, aad=AAD)
    with pytest.raises(DecryptionError, match="unknown key version"):
        Keyring(B).decrypt(token, aad=AAD)
    # Once the previous key is removed, its tokens are unknown too.
    with pytest.raises(DecryptionError, match="unknown key version"):
        Keyring(B, None).decrypt(token, aad=AAD)


def test_error_messages_carry_no_key_material_or_plaintext():
    ring = Keyring(B, A)
    token = Keyring(A).encrypt(SECRET, aad=AAD)
    forbidden = [A, B, A.upper(), B.upper(), SECRET.decode(), "correct-horse"]
    forbidden += [derive_key(bytes.fromhex(k)).hex() for k in (A, B)]
    errors = []
    for bad, aad in [
        (token, b"elsewhere"),
        (flip(token, 4), AAD),
        (Keyring(generate_master_key()).encrypt(SECRET, aad=AAD), AAD),
        (SECRET.decode(), AAD),
        (token[:-2], AAD),
    ]:
        with pytest.raises(DecryptionError) as caught:
            ring.decrypt(bad, aad=aad)
        errors.append(caught.value)
    for error in errors:
        text = f"{error} {error!r} {error.__cause__!r} {error.__context__!r}"
        assert error.__cause__ is None
        assert not any(secret in text for secret in forbidden), text
    for bad in ("zz" * 64, "ab" * 63, A + "00"):
        with pytest.raises(ValueError) as caught:
            Keyring(bad)
        assert bad not in str(caught.value)
    assert A not in repr(ring) and B not in repr(ring)


def test_nonces_differ_across_encryptions():
    ring = Keyring(A)
    tokens = [ring.encrypt(SECRET, aad=AAD) for _ in range(200)]
    assert len({t.split(":")[3] for t in tokens}) == 200
    assert len(set(tokens)) == 200


def test_derived_key_is_not_the_master_key():
    master = bytes.fromhex(A)
    key = derive_key(master)
    assert len(key) == 32
    assert key not in master and key != master[:32] and key != master[32:]
    assert derive_key(master, "other-purpose") != key
    assert key_version(key) not in A and key_version(key) not in key.hex()
    # Purposes are separate keyrings.
    token = Keyring(A).encrypt(SECRET, aad=AAD)
    with pytest.raises(DecryptionError):
        Keyring(A, purpose="other-purpose").decrypt(token, aad=AAD)


def test_same_previous_and_current_key_is_one_key():
    assert Keyring(A, A).versions == (Keyring(A).current_version,)


def test_seal_and_unseal_bind_to_the_column_and_row():
    ring = Keyring(A)
    spec = EncryptedColumn("webhook_endpoints", "secret_encrypted")
    token = seal(ring, spec, "whe_1", "whsec_é")
    assert unseal(ring, spec, "whe_1", token) == "whsec_é"
    with pytest.raises(DecryptionError):
        unseal(ring, spec, "whe_2", token)
    with pytest.raises(DecryptionError):
        unseal(ring, EncryptedColumn("webhook_endpoints", "other"), "whe_1", token)


def test_register_is_idempotent_and_checks_identifiers():
    before = list(ENCRYPTED_COLUMNS)
    try:
        spec = register("zz_test_table", "secret_encrypted")
        assert register("zz_test_table", "secret_encrypted") is spec
        assert ENCRYPTED_COLUMNS.count(spec) == 1
        with pytest.raises(ValueError):
            register("zz_test_table", "secret_encrypted", id_column="uuid")
        with pytest.raises(ValueError):
            register('x"; DROP TABLE y; --', "secret")
    finally:
        ENCRYPTED_COLUMNS[:] = before


def test_keyring_from_settings_is_cached_and_uses_both_keys():
    settings = make_settings(
        "postgresql://postgres@127.0.0.1:5432/x",
        encryption_master_key=B,
        encryption_master_key_previous=A,
    )
    ring = keyring_from_settings(settings)
    assert keyring_from_settings(settings) is ring
    assert ring.current_version == Keyring(B).current_version
    assert ring.versions == Keyring(B, A).versions
    only_b = make_settings("postgresql://postgres@127.0.0.1:5432/x", encryption_master_key=B)
    assert keyring_from_settings(only_b).versions == (Keyring(B).current_version,)
    assert isinstance(settings.encryption_master_key, SecretStr)


def test_master_keys_are_random():
    assert len(A) == 128 and A != B
    assert len({generate_master_key() for _ in range(10)}) == 10
