"""Tron transactions built and signed offline: the `raw_data` protobuf (java-tron's
`protocol.Transaction.raw`), its id (sha256 of those bytes), the secp256k1 signature over the
id (65 bytes r ‖ s ‖ v, v the recovery id 0/1), and the signed `Transaction` bytes that
`/wallet/broadcasthex` takes as they are.

Nespay builds `raw_data` itself rather than taking the node's (`triggersmartcontract` returns
an unsigned transaction): the bytes signed are the bytes asked for, so a lying node cannot
slip another transfer under the signature, and broadcasting the hex (not the JSON, which the
node would re-encode) keeps the id the one stored before anything was sent.

The protobuf messages are declared here at run time with the protobuf library's descriptors
(the field numbers of java-tron's `core/Tron.proto` and `core/contract/*.proto`), so encoding
and decoding are the library's, never hand-written. Checked against a TransferContract
published with its `raw_data_hex` (tests/wallets/test_trontx.py). ECDSA is eth-keys'.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from typing import Any

from eth_keys import keys
from eth_keys.exceptions import BadSignature
from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, message_factory

from nespay.kit.addresses import tron_address_from_public_key, tron_from_hex, tron_payload

TRANSFER_SELECTOR = "a9059cbb"  # transfer(address,uint256)
BALANCE_OF_SELECTOR = "70a08231"  # balanceOf(address)
TYPE_URL = "type.googleapis.com/protocol."
CONTRACT_TYPES = {"TransferContract": 1, "TriggerSmartContract": 31}
MAX_INT64 = 2**63 - 1

_F = descriptor_pb2.FieldDescriptorProto


def _field(message: Any, name: str, number: int, kind: int, **extra: Any) -> None:
    message.field.add(name=name, number=number, type=kind, label=_F.LABEL_OPTIONAL, **extra)


@cache
def _messages() -> dict[str, type]:
    """The Tron messages Nespay uses (a subset of java-tron's: unknown fields of the others
    are not needed to build or read a transfer)."""
    proto = descriptor_pb2.FileDescriptorProto(
        name="nespay_tron.proto", package="protocol", syntax="proto3"
    )
    proto.dependency.append("google/protobuf/any.proto")
    transfer = proto.message_type.add(name="TransferContract")
    _field(transfer, "owner_address", 1, _F.TYPE_BYTES)
    _field(transfer, "to_address", 2, _F.TYPE_BYTES)
    _field(transfer, "amount", 3, _F.TYPE_INT64)
    trigger = proto.message_type.add(name="TriggerSmartContract")
    _field(trigger, "owner_address", 1, _F.TYPE_BYTES)
    _field(trigger, "contract_address", 2, _F.TYPE_BYTES)
    _field(trigger, "call_value", 3, _F.TYPE_INT64)
    _field(trigger, "data", 4, _F.TYPE_BYTES)
    _field(trigger, "call_token_value", 5, _F.TYPE_INT64)
    _field(trigger, "token_id", 6, _F.TYPE_INT64)
    contract = proto.message_type.add(name="Contract")
    _field(contract, "type", 1, _F.TYPE_INT32)  # the ContractType enum's number
    _field(contract, "parameter", 2, _F.TYPE_MESSAGE, type_name=".google.protobuf.Any")
    _field(contract, "provider", 3, _F.TYPE_BYTES)
    _field(contract, "ContractName", 4, _F.TYPE_BYTES)
    _field(contract, "Permission_id", 5, _F.TYPE_INT32)
    raw = proto.message_type.add(name="raw")
    _field(raw, "ref_block_bytes", 1, _F.TYPE_BYTES)
    _field(raw, "ref_block_num", 3, _F.TYPE_INT64)
    _field(raw, "ref_block_hash", 4, _F.TYPE_BYTES)
    _field(raw, "expiration", 8, _F.TYPE_INT64)
    _field(raw, "data", 10, _F.TYPE_BYTES)
    raw.field.add(
        name="contract",
        number=11,
        type=_F.TYPE_MESSAGE,
        label=_F.LABEL_REPEATED,
        type_name=".protocol.Contract",
    )
    _field(raw, "scripts", 12, _F.TYPE_BYTES)
    _field(raw, "timestamp", 14, _F.TYPE_INT64)
    _field(raw, "fee_limit", 18, _F.TYPE_INT64)
    transaction = proto.message_type.add(name="Transaction")
    _field(transaction, "raw_data", 1, _F.TYPE_MESSAGE, type_name=".protocol.raw")
    transaction.field.add(name="signature", number=2, type=_F.TYPE_BYTES, label=_F.LABEL_REPEATED)
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(any_pb2.DESCRIPTOR.serialized_pb)
    pool.Add(proto)
    names = ("TransferContract", "TriggerSmartContract", "Contract", "raw", "Transaction")
    found = {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"protocol.{name}"))
        for name in names
    }
    found["Any"] = message_factory.GetMessageClass(
        pool.FindMessageTypeByName("google.protobuf.Any")
    )
    return found


@dataclass(frozen=True)
class RefBlock:
    """The block a transaction is bound to (TaPoS): its number and id (64 hex)."""

    number: int
    block_id: str


@dataclass(frozen=True)
class Transfer:
    """What a raw_data asks: `amount` base units (sun for TRX) from `owner` to `to`, of
    `token` (a TRC-20 contract; None: TRX). Addresses base58."""

    owner: str
    to: str
    token: str | None
    amount: int
    fee_limit: int  # sun; 0 for TRX (no energy)
    expiration: int  # ms
    timestamp: int  # ms
    ref_block_bytes: str
    ref_block_hash: str


@dataclass(frozen=True)
class Signed:
    tx_id: str  # 64 hex, sha256(raw_data)
    raw_data: bytes
    signature: bytes  # 65: r ‖ s ‖ v (0/1)

    @property
    def transaction_hex(self) -> str:
        """The signed `Transaction` protobuf, for `/wallet/broadcasthex`."""
        message = _messages()["Transaction"]()
        message.raw_data.ParseFromString(self.raw_data)
        message.signature.append(self.signature)
        return message.SerializeToString(deterministic=True).hex()


def trc20_transfer_data(to: str, amount: int) -> bytes:
    """`transfer(address,uint256)` calldata: the 20-byte id of `to` (no 41), one word."""
    if not 0 <= amount < 2**256:
        raise ValueError("amount out of uint256 range")
    return (
        bytes.fromhex(TRANSFER_SELECTOR)
        + tron_payload(to)[1:].rjust(32, b"\0")
        + amount.to_bytes(32, "big")
    )


def address_word(address: str) -> str:
    """An address as one ABI word in hex (a `triggerconstantcontract` parameter)."""
    return tron_payload(address)[1:].hex().rjust(64, "0")


def build_raw(
    *,
    owner: str,
    to: str,
    token: str | None,
    amount: int,
    ref: RefBlock,
    expiration: int,
    timestamp: int,
    fee_limit: int,
) -> bytes:
    """The `raw_data` bytes of a TRX transfer (`token` None) or a TRC-20 `transfer` call."""
    if not 0 < amount <= (MAX_INT64 if token is None else 2**256 - 1):
        raise ValueError("the amount must be positive (an int64 in sun for TRX)")
    messages = _messages()
    if token is None:
        value = messages["TransferContract"](
            owner_address=tron_payload(owner), to_address=tron_payload(to), amount=amount
        )
        kind = "TransferContract"
    else:
        value = messages["TriggerSmartContract"](
            owner_address=tron_payload(owner),
            contract_address=tron_payload(token),
            data=trc20_transfer_data(to, amount),
        )
        kind = "TriggerSmartContract"
    parameter = messages["Any"](
        type_url=TYPE_URL + kind, value=value.SerializeToString(deterministic=True)
    )
    raw = messages["raw"](
        ref_block_bytes=bytes.fromhex(ref.block_id[12:16]),
        ref_block_hash=bytes.fromhex(ref.block_id[16:32]),
        expiration=expiration,
        timestamp=timestamp,
        fee_limit=fee_limit if token is not None else 0,
    )
    contract = raw.contract.add(type=CONTRACT_TYPES[kind])
    contract.parameter.CopyFrom(parameter)
    return raw.SerializeToString(deterministic=True)


def tx_id(raw_data: bytes) -> str:
    return hashlib.sha256(raw_data).hexdigest()


def decode_raw(raw_data: bytes) -> Transfer:
    """What a `raw_data` asks (ValueError for anything but one TRX transfer or one TRC-20
    `transfer` call): how the fake node reads what it is sent, and how a test checks it."""
    messages = _messages()
    raw = messages["raw"]()
    try:
        raw.ParseFromString(raw_data)
    except Exception as error:  # noqa: BLE001 - protobuf's DecodeError and kin
        raise ValueError(f"not a Tron raw_data: {error}") from None
    if len(raw.contract) != 1:
        raise ValueError("expected exactly one contract")
    contract = raw.contract[0]
    kind = contract.parameter.type_url.removeprefix(TYPE_URL)
    if CONTRACT_TYPES.get(kind) != contract.type:
        raise ValueError(f"unsupported contract {kind!r}")
    value = messages[kind]()
    value.ParseFromString(contract.parameter.value)
    owner = tron_from_hex(value.owner_address.hex())
    common = {
        "owner": owner,
        "fee_limit": raw.fee_limit,
        "expiration": raw.expiration,
        "timestamp": raw.timestamp,
        "ref_block_bytes": raw.ref_block_bytes.hex(),
        "ref_block_hash": raw.ref_block_hash.hex(),
    }
    if kind == "TransferContract":
        return Transfer(
            to=tron_from_hex(value.to_address.hex()), token=None, amount=value.amount, **common
        )
    data = value.data
    if len(data) != 68 or data[:4].hex() != TRANSFER_SELECTOR or any(data[4:16]):
        raise ValueError("not a TRC-20 transfer(address,uint256) call")
    return Transfer(
        to=tron_from_hex(data[16:36].hex()),
        token=tron_from_hex(value.contract_address.hex()),
        amount=int.from_bytes(data[36:68], "big"),
        **common,
    )


def sign(private_key: str, raw_data: bytes) -> Signed:
    """Sign `raw_data` with a 0x-hex private key (the caller drops the key afterwards)."""
    digest = hashlib.sha256(raw_data).digest()
    signature = keys.PrivateKey(bytes.fromhex(private_key.removeprefix("0x"))).sign_msg_hash(digest)
    return Signed(digest.hex(), raw_data, signature.to_bytes())


def address_of(private_key: str) -> str:
    public = keys.PrivateKey(bytes.fromhex(private_key.removeprefix("0x"))).public_key
    return tron_address_from_public_key(public.to_bytes())


def signer_of(tx_id_hex: str, signature: bytes) -> str | None:
    """The address whose key made `signature` over the id (v 0/1 or 27/28), or None."""
    if len(signature) != 65:
        return None
    v = signature[64]
    v = v - 27 if v >= 27 else v
    try:
        recovered = keys.Signature(signature[:64] + bytes([v])).recover_public_key_from_msg_hash(
            bytes.fromhex(tx_id_hex)
        )
    except (BadSignature, ValueError):
        return None
    return tron_address_from_public_key(recovered.to_bytes())


def parse_signed(transaction_hex: str) -> Signed:
    """A signed `Transaction` (broadcasthex's body) → its parts; ValueError when garbled."""
    message = _messages()["Transaction"]()
    try:
        message.ParseFromString(bytes.fromhex(transaction_hex))
    except Exception as error:  # noqa: BLE001 - protobuf's DecodeError, bad hex
        raise ValueError(f"not a signed Tron transaction: {error}") from None
    raw = message.raw_data.SerializeToString(deterministic=True)
    signature = message.signature[0] if message.signature else b""
    return Signed(tx_id(raw), raw, signature)
