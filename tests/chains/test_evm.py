"""`nespay.chains.evm`: constants recomputed, Transfer logs decoded from a real node, malformed
logs rejected without raising, addresses normalized, calls and constructor arguments encoded."""

import pytest
from Crypto.Hash import keccak

from nespay.chains import evm
from nespay.chains.evm import (
    TRANSFER_TOPIC,
    Transfer,
    decode_transfer_log,
    encode_abi,
    encode_call,
    hex_to_int,
    normalize_address,
    selector,
    to_checksum_address,
)
from tests.fixtures.anvil import anvil, test_token  # noqa: F401  (fixtures)

ALICE = "0x" + "a1" * 20
BOB = "0x" + "b0" * 20


def _keccak_hex(text: str) -> str:
    return keccak.new(digest_bits=256, data=text.encode()).hexdigest()


def test_event_topics_are_keccak_of_their_signatures():
    assert "0x" + _keccak_hex("Transfer(address,address,uint256)") == TRANSFER_TOPIC
    assert "0x" + _keccak_hex("Approval(address,address,uint256)") == evm.APPROVAL_TOPIC
    assert evm.event_topic("Transfer(address,address,uint256)") == TRANSFER_TOPIC


@pytest.mark.parametrize(
    ("constant", "signature"),
    [
        ("NAME", "name()"),
        ("SYMBOL", "symbol()"),
        ("DECIMALS", "decimals()"),
        ("TOTAL_SUPPLY", "totalSupply()"),
        ("BALANCE_OF", "balanceOf(address)"),
        ("ALLOWANCE", "allowance(address,address)"),
        ("TRANSFER", "transfer(address,uint256)"),
        ("TRANSFER_FROM", "transferFrom(address,address,uint256)"),
        ("APPROVE", "approve(address,uint256)"),
    ],
)
def test_selector_constants(constant, signature):
    assert getattr(evm, constant) == "0x" + _keccak_hex(signature)[:8] == selector(signature)


# --- decode_transfer_log -----------------------------------------------------------------------


def _log(**changes):
    log = {
        "address": "0x5fbdb2315678afecb367f032d93f642f64180aa3",
        "topics": [
            TRANSFER_TOPIC,
            "0x" + "0" * 24 + ALICE[2:],
            "0x" + "0" * 24 + BOB[2:],
        ],
        "data": "0x" + format(1_500_000, "064x"),
        "blockNumber": "0x10",
        "blockHash": "0x" + "ab" * 32,
        "transactionHash": "0x" + "cd" * 32,
        "transactionIndex": "0x0",
        "logIndex": "0x3",
        "removed": False,
    }
    log.update(changes)
    return log


def test_decode_synthetic_log():
    assert decode_transfer_log(_log()) == Transfer(
        token="0x5fbdb2315678afecb367f032d93f642f64180aa3",
        sender=ALICE,
        recipient=BOB,
        amount=1_500_000,
        block_number=16,
        block_hash="0x" + "ab" * 32,
        tx_hash="0x" + "cd" * 32,
        log_index=3,
        removed=False,
    )


def test_decode_lowercases_and_keeps_flags():
    log = _log(
        address="0x5FbDB2315678afecb367f032d93F642f64180aa3",
        topics=[
            TRANSFER_TOPIC.upper().replace("0X", "0x"),
            "0x" + "0" * 24 + ALICE[2:].upper(),
            "0x" + "0" * 24 + BOB[2:],
        ],
        data="0x" + "F" * 64,
        removed=True,
    )
    transfer = decode_transfer_log(log)
    assert transfer is not None
    assert transfer.token == "0x5fbdb2315678afecb367f032d93f642f64180aa3"
    assert transfer.sender == ALICE
    assert transfer.amount == evm.UINT256_MAX
    assert transfer.removed is True


def test_decode_pending_log_without_position():
    log = _log(blockNumber=None, blockHash=None, transactionHash=None, logIndex=None)
    del log["removed"]
    transfer = decode_transfer_log(log)
    assert transfer is not None
    assert (transfer.block_number, transfer.block_hash, transfer.log_index) == (None, None, None)
    assert transfer.removed is False


def test_mint_and_burn_are_transfers_with_the_zero_address():
    zero_topic = "0x" + "0" * 64
    mint = decode_transfer_log(_log(topics=[TRANSFER_TOPIC, zero_topic, _log()["topics"][2]]))
    assert mint is not None and mint.sender == evm.ZERO_ADDRESS


def _topics(*replace):
    topics = list(_log()["topics"])
    for index, value in replace:
        topics[index] = value
    return topics


MALFORMED = {
    "no topics": _log(topics=[]),
    "topics missing": {k: v for k, v in _log().items() if k != "topics"},
    "topics None": _log(topics=None),
    "topics a string": _log(topics="0x" + "0" * 64),
    "only topic0": _log(topics=[TRANSFER_TOPIC]),
    "two topics (value indexed elsewhere)": _log(topics=_log()["topics"][:2]),
    "four topics (ERC-721)": _log(topics=[*_log()["topics"], "0x" + "0" * 63 + "7"], data="0x"),
    "extra topic with data": _log(topics=[*_log()["topics"], "0x" + "0" * 64]),
    "other event": _log(topics=_topics((0, evm.APPROVAL_TOPIC))),
    "topic0 not a string": _log(topics=_topics((0, 7))),
    "topic not a string": _log(topics=_topics((1, None))),
    "topic not padded": _log(topics=_topics((1, "0x" + "1" * 64))),
    "topic short": _log(topics=_topics((2, "0x" + "0" * 24 + BOB[2:-2]))),
    "topic long": _log(topics=_topics((2, "0x" + "0" * 24 + BOB[2:] + "00"))),
    "topic garbage hex": _log(topics=_topics((1, "0x" + "0" * 24 + "zz" * 20))),
    "topic without 0x": _log(topics=_topics((1, "00" + "0" * 24 + ALICE[2:]))),
    "topic with underscore": _log(topics=_topics((1, "0x" + "0" * 24 + "a_" * 20))),
    "data missing": {k: v for k, v in _log().items() if k != "data"},
    "data empty": _log(data="0x"),
    "data short": _log(data="0x" + "0" * 62),
    "data long": _log(data="0x" + "0" * 128),
    "data garbage": _log(data="0x" + "g" * 64),
    "data with spaces": _log(data="0x" + " 1" * 32),
    "data None": _log(data=None),
    "data bytes": _log(data=b"\x00" * 32),
    "address missing": {k: v for k, v in _log().items() if k != "address"},
    "address short": _log(address="0x1234"),
    "address garbage": _log(address="0x" + "x" * 40),
    "blockNumber garbage": _log(blockNumber="0xnope"),
    "blockNumber an int": _log(blockNumber=16),
    "logIndex garbage": _log(logIndex="zz"),
    "not a dict": ["topics", "data"],
    "None": None,
    "empty dict": {},
}


@pytest.mark.parametrize("log", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_logs_are_none_and_never_raise(log):
    assert decode_transfer_log(log) is None


def test_decode_real_logs_from_anvil(anvil, test_token):  # noqa: F811
    sender, recipient = anvil.accounts[0], anvil.accounts[5]
    anvil.mint(test_token, sender, 10_000_000)
    tx_hash = anvil.transfer(test_token, recipient, 1_234_567)
    receipt = anvil.receipt(tx_hash)
    block = int(receipt["blockNumber"], 16)

    logs = anvil.rpc(
        "eth_getLogs",
        {
            "fromBlock": hex(block),
            "toBlock": hex(block),
            "address": test_token,
            "topics": [TRANSFER_TOPIC],
        },
    )
    assert len(logs) == 1
    transfer = decode_transfer_log(logs[0])
    assert transfer == Transfer(
        token=test_token,
        sender=sender,
        recipient=recipient,
        amount=1_234_567,
        block_number=block,
        block_hash=receipt["blockHash"],
        tx_hash=tx_hash,
        log_index=int(logs[0]["logIndex"], 16),
        removed=False,
    )
    # The receipt's copy of the log decodes the same.
    assert decode_transfer_log(receipt["logs"][0]) == transfer


# --- hex_to_int, normalize_address -------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [("0x0", 0), ("0x1a", 26), ("0xFF", 255)])
def test_hex_to_int(value, expected):
    assert hex_to_int(value) == expected


@pytest.mark.parametrize("value", ["0x", "", "1a", "0x1_0", " 0x1", "0xg", None, 16, "0X1a"])
def test_hex_to_int_rejects(value):
    with pytest.raises(ValueError):
        hex_to_int(value)


CHECKSUMMED = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"  # anvil account 0


@pytest.mark.parametrize(
    "value",
    [CHECKSUMMED, CHECKSUMMED.lower(), "0x" + CHECKSUMMED[2:].upper()],
)
def test_normalize_address(value):
    assert normalize_address(value) == "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266"


@pytest.mark.parametrize(
    "value",
    [
        "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92267",  # last digit changed: checksum is wrong
        "0xF39fd6e51aad88F6F4ce6aB8827279cffFb92266",  # one letter's case flipped
        "f39fd6e51aad88f6f4ce6ab8827279cfffb92266",  # no 0x
        "0Xf39fd6e51aad88f6f4ce6ab8827279cfffb92266",
        "0xf39fd6e51aad88f6f4ce6ab8827279cfffb9226",  # 39 digits
        "0xf39fd6e51aad88f6f4ce6ab8827279cfffb922660",  # 41 digits
        "0x" + "g" * 40,
        " 0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266",
        "",
        None,
        b"0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266",
    ],
)
def test_normalize_address_rejects(value):
    with pytest.raises(ValueError):
        normalize_address(value)


def test_to_checksum_address():
    assert to_checksum_address(CHECKSUMMED.lower()) == CHECKSUMMED
    # EIP-55's own examples
    for example in (
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
        "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
        "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
    ):
        assert to_checksum_address(example.lower()) == example
        assert normalize_address(example) == example.lower()


# --- encoding ----------------------------------------------------------------------------------


def test_encode_call_transfer():
    data = encode_call("0xa9059cbb", CHECKSUMMED, 10**6)
    assert data == (
        "0xa9059cbb"
        "000000000000000000000000f39fd6e51aad88f6f4ce6ab8827279cfffb92266"
        "00000000000000000000000000000000000000000000000000000000000f4240"
    )
    assert encode_call("70A08231", ALICE) == "0x70a08231" + "0" * 24 + ALICE[2:]
    assert encode_call(evm.TOTAL_SUPPLY) == "0x18160ddd"


@pytest.mark.parametrize(
    ("selector_hex", "args", "error"),
    [
        ("0xa9059c", (), ValueError),
        ("0xa9059cbb", (-1,), ValueError),
        ("0xa9059cbb", (2**256,), ValueError),
        ("0xa9059cbb", ("0x1234",), ValueError),
        ("0xa9059cbb", (1.5,), TypeError),
        ("0xa9059cbb", (b"\x00",), TypeError),
    ],
)
def test_encode_call_rejects(selector_hex, args, error):
    with pytest.raises(error):
        encode_call(selector_hex, *args)


def _words(*words):
    return "".join(words)


def test_encode_abi_string_string_uint8():
    # (string "Test USD", string "TUSD", uint8 6): three head words (two offsets, one value),
    # then each string's tail: its length and its bytes right-padded to 32.
    assert encode_abi(["string", "string", "uint8"], ["Test USD", "TUSD", 6]) == _words(
        format(0x60, "064x"),
        format(0xA0, "064x"),
        format(6, "064x"),
        format(8, "064x"),
        b"Test USD".hex().ljust(64, "0"),
        format(4, "064x"),
        b"TUSD".hex().ljust(64, "0"),
    )


def test_encode_abi_long_and_empty_strings_and_arrays():
    long = "x" * 33  # two words of content
    assert encode_abi(["string", "uint256"], [long, 1]) == _words(
        format(0x40, "064x"), format(1, "064x"), format(33, "064x"), ("78" * 33).ljust(128, "0")
    )
    assert encode_abi(["string"], [""]) == format(0x20, "064x") + format(0, "064x")
    assert encode_abi(["address", "address[]", "uint256[]"], [ALICE, [BOB, ALICE], [1, 2]]) == (
        _words(
            "0" * 24 + ALICE[2:],
            format(0x60, "064x"),
            format(0xC0, "064x"),
            format(2, "064x"),
            "0" * 24 + BOB[2:],
            "0" * 24 + ALICE[2:],
            format(2, "064x"),
            format(1, "064x"),
            format(2, "064x"),
        )
    )
    assert encode_abi(["int8", "bool"], [-1, True]) == "f" * 64 + format(1, "064x")


@pytest.mark.parametrize(
    ("types", "values", "error"),
    [
        (["uint8"], [256], ValueError),
        (["uint8"], [-1], ValueError),
        (["int8"], [128], ValueError),
        (["uint7"], [1], ValueError),
        (["uint512"], [1], ValueError),
        (["string"], [b"x"], TypeError),
        (["bool"], [1], TypeError),
        (["string[]"], [["a"]], ValueError),
        (["uint256[]"], ["12"], TypeError),
        (["tuple"], [1], ValueError),
        (["uint256"], [], ValueError),
    ],
)
def test_encode_abi_rejects(types, values, error):
    with pytest.raises(error):
        encode_abi(types, values)


def test_decode_string_and_uint():
    encoded = "0x" + encode_abi(["string"], ["Ünïcode ✓"])
    assert evm.decode_string(encoded) == "Ünïcode ✓"
    assert evm.decode_uint("0x" + format(6, "064x")) == 6
    assert evm.decode_address("0x" + "0" * 24 + ALICE[2:]) == ALICE
    for bad in ("0x", "0x" + "00" * 31, "0x" + format(0x1000, "064x") + format(1, "064x")):
        with pytest.raises(ValueError):
            evm.decode_string(bad)
    with pytest.raises(ValueError):
        evm.decode_uint("0x")
