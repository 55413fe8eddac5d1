"""Tron addresses: base58check of 0x41 ‖ keccak256(public key)[-20:], checked against tronpy's
published vectors and TronGrid's well-known USDT contract; the HD provider's Tron children
equal an independent encoding of the full BIP44 path's keys (m/44'/195'/1'/0/i of the anvil
mnemonic, the development default); every typed address is refused in the other family's
form, with a message that says so."""

import pytest
from bip_utils import Bip44Changes, Bip44Coins, Secp256k1PrivateKey

from nespay.kit.addresses import (
    ZERO_TRON_ADDRESS,
    AddressInvalid,
    parse_address,
    parse_evm_address,
    parse_tron_address,
    tron_address_from_public_key,
    tron_from_hex,
    tron_to_hex,
)
from nespay.wallets import HdWalletProvider
from nespay.wallets.hd import _encode
from tests.wallets.test_hd import bip44_account

# tronpy tests/test_keys.py (andelf/tronpy@a0731f7): private key → address, and its hex form.
TRONPY_KEY = "279ff36d9bf9f305af3280034bb4187c6dd299bac6b26a3c20b999c7c0d50e6e"
TRONPY_ADDRESS = "TPX6HK2NRN4XKRX1JAhbC827bm7gMmy5w1"
TRONPY_HEX = "4194a15629b2b2bbd3a5453e6d6696b2875278633b"
# tronweb's signature vectors (same file): private key 1.
KEY_ONE_ADDRESS = "TMVQGm1qAQYVdetCeGRRkTWYYrLXuHK2HC"
# Tether's TRC-20 contract, as tronscan shows it in both forms.
USDT = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"
USDT_HEX = "41a614f803b6fd780986a42c78ec9c7f77e6ded13c"


def _public(private_hex: str) -> bytes:
    key = Secp256k1PrivateKey.FromBytes(bytes.fromhex(private_hex))
    return key.PublicKey().RawUncompressed().ToBytes()


def test_published_private_key_vectors_give_their_addresses():
    assert tron_address_from_public_key(_public(TRONPY_KEY)) == TRONPY_ADDRESS
    assert tron_to_hex(TRONPY_ADDRESS) == TRONPY_HEX
    assert tron_address_from_public_key(_public("00" * 31 + "01")) == KEY_ONE_ADDRESS


def test_the_hd_encoder_agrees_with_the_published_vector():
    from bip_utils import Bip32Secp256k1

    # _encode takes a BIP32 key; a master key from any seed, then compare its own pubkey path.
    key = Bip32Secp256k1.FromSeed(bytes(range(32)))
    public = key.PublicKey().RawUncompressed().ToBytes()
    assert _encode("tron", key) == tron_address_from_public_key(public)


def test_hex_forms_convert_both_ways():
    assert tron_from_hex(USDT_HEX) == USDT
    assert tron_from_hex(USDT_HEX[2:]) == USDT  # an event log's bare 20 bytes
    assert tron_from_hex("0x" + USDT_HEX[2:]) == USDT  # JSON-RPC's form
    assert tron_from_hex(USDT_HEX.upper().replace("0X", "0x")) == USDT
    assert tron_to_hex(USDT) == USDT_HEX
    assert tron_from_hex("41" + "00" * 20) == ZERO_TRON_ADDRESS
    for bad in ("", "41", "42" + "00" * 20, "41" + "zz" * 20, "00" * 19, "00" * 22):
        with pytest.raises(ValueError):
            tron_from_hex(bad)


def test_hd_tron_children_are_the_full_paths_addresses(shared_settings):
    provider = HdWalletProvider(shared_settings)
    external = bip44_account(Bip44Coins.TRON).Change(Bip44Changes.CHAIN_EXT)
    for index in (0, 1, 2, 7, 1000):
        public = external.AddressIndex(index).PublicKey().RawUncompressed().ToBytes()
        derived = provider.address_at("tron", index)
        assert derived == tron_address_from_public_key(public)
        assert parse_tron_address(derived) == derived and len(derived) == 34


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("0x" + "ab" * 20, "hex (EVM-style)"),
        (USDT_HEX, "hex (EVM-style)"),
        (USDT[:-1] + ("u" if USDT[-1] != "u" else "v"), "checksum"),  # one character mistyped
        (USDT.lower(), "33 base58"),  # a lower-case t is no Tron address
        ("T" + USDT[1:].replace("q", "Q"), "checksum"),
        (USDT + "1", "33 base58"),
        (USDT[:-1], "33 base58"),
        ("T" + "0" * 33, "33 base58"),  # 0 is not in base58's alphabet
        ("TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6\x00", "33 base58"),
        (" " + USDT, "33 base58"),
        (ZERO_TRON_ADDRESS, "zero address"),
        # a valid base58check address with another version byte (a Bitcoin P2PKH address)
        ("1BoatSLRHtKNngkdXEeobR76b53LETtpyT", "33 base58"),
    ],
)
def test_malformed_or_foreign_tron_addresses_are_refused_saying_why(text, says):
    with pytest.raises(AddressInvalid) as caught:
        parse_address("tron", text)
    assert says in str(caught.value)


def test_a_tron_address_is_refused_for_an_evm_network_and_an_evm_one_for_tron():
    with pytest.raises(AddressInvalid, match="Tron address"):
        parse_evm_address(USDT)
    with pytest.raises(AddressInvalid, match="Tron address"):
        parse_address("evm", TRONPY_ADDRESS)
    with pytest.raises(AddressInvalid, match="EVM-style"):
        parse_address("tron", "0x" + TRONPY_HEX[2:])
    assert parse_address("tron", USDT) == USDT
    assert parse_address("evm", "0x" + "AB" * 20) == "0x" + "ab" * 20


def test_an_unknown_family_or_empty_input_is_refused():
    for family, text in (("solana", USDT), ("tron", ""), ("evm", "")):
        with pytest.raises(AddressInvalid):
            parse_address(family, text)
