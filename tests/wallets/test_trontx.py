"""Tron transactions built and signed offline (nespay.wallets.trontx): the bytes are those a
published TransferContract carries (raw_data_hex from the java-tron HTTP API's example), a
TRC-20 transfer reads back as asked, a signature recovers to its key's address, and garbage
is refused rather than read."""

from __future__ import annotations

import pytest

from nespay.kit.addresses import tron_from_hex
from nespay.wallets import trontx

# /wallet/broadcasttransaction's documented example: raw_data (JSON) and its raw_data_hex.
OWNER_HEX = "41608f8da72479edc7dd921e4c30bb7e7cddbe722e"
TO_HEX = "41e9d79cc47518930bc322d9bf7cddd260a0260a8d"
PUBLISHED_RAW_HEX = (
    "0a025e4b220847c9dc89341b300d40f8fed3a2a72e5a66080112620a2d747970652e676f6f676c65617069732e"
    "636f6d2f70726f746f636f6c2e5472616e73666572436f6e747261637412310a1541608f8da72479edc7dd921e"
    "4c30bb7e7cddbe722e121541e9d79cc47518930bc322d9bf7cddd260a0260a8d18e8077093afd0a2a72e"
)
USDT = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"
KEY = "0x" + "4c" * 32


def _ref() -> trontx.RefBlock:
    # A block id whose bytes 6..8 are 5e4b and 8..16 are 47c9dc89341b300d (TaPoS fields).
    return trontx.RefBlock(0x5E4B, "0" * 12 + "5e4b" + "47c9dc89341b300d" + "0" * 32)


def test_a_trx_transfer_is_byte_for_byte_the_published_one():
    raw = trontx.build_raw(
        owner=tron_from_hex(OWNER_HEX),
        to=tron_from_hex(TO_HEX),
        token=None,
        amount=1000,
        ref=_ref(),
        expiration=1591089627000,
        timestamp=1591089567635,
        fee_limit=0,
    )
    assert raw.hex() == PUBLISHED_RAW_HEX
    read = trontx.decode_raw(bytes.fromhex(PUBLISHED_RAW_HEX))
    assert (read.owner, read.to, read.token, read.amount) == (
        tron_from_hex(OWNER_HEX),
        tron_from_hex(TO_HEX),
        None,
        1000,
    )
    assert (read.ref_block_bytes, read.ref_block_hash) == ("5e4b", "47c9dc89341b300d")


def test_a_trc20_transfer_reads_back_as_asked_and_its_signature_recovers_the_owner():
    owner = trontx.address_of(KEY)
    raw = trontx.build_raw(
        owner=owner,
        to=tron_from_hex(TO_HEX),
        token=USDT,
        amount=2**70,  # beyond int64: a uint256 in the calldata
        ref=_ref(),
        expiration=2_000,
        timestamp=1_000,
        fee_limit=40_000_000,
    )
    read = trontx.decode_raw(raw)
    assert (read.owner, read.to, read.token, read.amount, read.fee_limit) == (
        owner,
        tron_from_hex(TO_HEX),
        USDT,
        2**70,
        40_000_000,
    )
    signed = trontx.sign(KEY, raw)
    assert signed.tx_id == trontx.tx_id(raw) and len(signed.signature) == 65
    assert trontx.signer_of(signed.tx_id, signed.signature) == owner
    assert trontx.parse_signed(signed.transaction_hex) == signed
    # Another key's signature is another signer; a flipped byte recovers nobody we know.
    other = trontx.sign("0x" + "5d" * 32, raw)
    assert trontx.signer_of(signed.tx_id, other.signature) != owner
    assert trontx.signer_of("00" * 32, signed.signature) != owner


@pytest.mark.parametrize("garbage", ["zz", "0a05ffff", "ff" * 40, ""])
def test_garbage_is_not_a_transaction(garbage):
    with pytest.raises(ValueError):
        trontx.decode_raw(trontx.parse_signed(garbage).raw_data)


def test_amounts_out_of_range_are_refused():
    common = {
        "owner": trontx.address_of(KEY),
        "to": tron_from_hex(TO_HEX),
        "ref": _ref(),
        "expiration": 2,
        "timestamp": 1,
        "fee_limit": 1,
    }
    for amount, token in ((0, None), (-1, USDT), (2**63, None), (2**256, USDT)):
        with pytest.raises(ValueError):
            trontx.build_raw(amount=amount, token=token, **common)
