"""`nespay.chains.localchain` against a real anvil: the shipped contracts deploy and behave,
tokens and ether move, BatchSender packs many transfers into one transaction, mining can be
manual, and reorgs really replace blocks. The shipped artifacts match a fresh compile."""

import json
import subprocess
import time

import pytest

from nespay.chains import localchain
from nespay.chains.evm import (
    DECIMALS,
    NAME,
    SYMBOL,
    TOTAL_SUPPLY,
    TRANSFER_TOPIC,
    decode_string,
    decode_transfer_log,
    decode_uint,
    encode_abi,
    hex_to_int,
)
from tests.fixtures.anvil import (  # noqa: F401  (fixtures)
    ANVIL,
    anvil,
    fresh_anvil,
    run_anvil,
    test_token,
)
from tests.fixtures.processes import ROOT, free_port


def _recipients(count, start=1):
    return ["0x" + format(0xD00D0000 + start + i, "040x") for i in range(count)]


def _transfer_logs(node, block, token=None):
    query = {"fromBlock": hex(block), "toBlock": hex(block), "topics": [TRANSFER_TOPIC]}
    if token:
        query["address"] = token
    return node.rpc("eth_getLogs", query)


def _moves(node, block, token):
    transfers = (decode_transfer_log(log) for log in _transfer_logs(node, block, token))
    return [(t.recipient, t.amount) for t in transfers]


# --- contracts ---------------------------------------------------------------------------------


def test_deployed_token_reads_back_its_constructor_arguments(anvil):  # noqa: F811
    # A name longer than one ABI word and non-ASCII, to exercise the dynamic encoding.
    name = "Test Dollar with a name longer than thirty-two bytes — ✓ ünïcode"
    token = localchain.deploy_test_token(anvil.url, name, "TÜSD", 18)
    assert decode_string(anvil.rpc("eth_call", {"to": token, "data": NAME}, "latest")) == name
    assert decode_string(anvil.rpc("eth_call", {"to": token, "data": SYMBOL}, "latest")) == "TÜSD"
    assert decode_uint(anvil.rpc("eth_call", {"to": token, "data": DECIMALS}, "latest")) == 18
    assert localchain.token_metadata(anvil.url, token) == (name, "TÜSD", 18)


def test_session_token(anvil, test_token):  # noqa: F811
    assert localchain.token_metadata(anvil.url, test_token) == ("Test USD", "TUSD", 6)
    assert anvil.rpc("eth_getCode", test_token, "latest") not in ("0x", "0x0")


def test_empty_strings_and_decimals_zero(anvil):  # noqa: F811
    token = anvil.deploy_token("", "", 0)
    assert localchain.token_metadata(anvil.url, token) == ("", "", 0)


def test_mint_transfer_and_balances(anvil):  # noqa: F811
    token = anvil.deploy_token()
    owner, alice = anvil.accounts[0], anvil.accounts[1]
    anvil.mint(token, owner, 1_000_000)
    anvil.mint(token, alice, 5)
    tx_hash = anvil.transfer(token, alice, 250_000)
    assert anvil.receipt(tx_hash)["status"] == "0x1"
    assert anvil.balance(token, owner) == 750_000
    assert anvil.balance(token, alice) == 250_005
    total = anvil.rpc("eth_call", {"to": token, "data": TOTAL_SUPPLY}, "latest")
    assert decode_uint(total) == 1_000_005

    # Alice spends from her own account (an unlocked dev account).
    localchain.transfer_token(anvil.url, token, owner, 5, sender=alice)
    assert anvil.balance(token, alice) == 250_000

    # A transfer beyond the balance reverts: the node refuses to estimate it.
    with pytest.raises(localchain.LocalChainError):
        anvil.transfer(token, alice, 10**18)
    assert anvil.balance(token, owner) == 750_005


def test_mint_log_is_a_transfer_from_zero(anvil, test_token):  # noqa: F811
    holder = _recipients(1, start=9000)[0]
    receipt = anvil.receipt(anvil.mint(test_token, holder, 42))
    transfer = decode_transfer_log(receipt["logs"][0])
    assert (transfer.sender, transfer.recipient, transfer.amount) == ("0x" + "0" * 40, holder, 42)


def test_send_native(anvil):  # noqa: F811
    target = _recipients(1, start=7000)[0]
    before = anvil.native_balance(target)
    tx_hash = anvil.send_native(target, 10**17)
    assert anvil.receipt(tx_hash)["status"] == "0x1"
    assert anvil.native_balance(target) == before + 10**17


def test_batch_transfer_200_recipients_in_one_transaction(anvil, test_token):  # noqa: F811
    recipients = _recipients(200)
    amounts = [1_000 + i for i in range(200)]
    anvil.mint(test_token, anvil.accounts[0], sum(amounts))
    tx_hash = anvil.batch_transfer(test_token, recipients, amounts)
    receipt = anvil.receipt(tx_hash)
    assert receipt["status"] == "0x1"

    logs = _transfer_logs(anvil, hex_to_int(receipt["blockNumber"]), test_token)
    transfers = [decode_transfer_log(log) for log in logs]
    assert len(transfers) == 200
    assert {t.tx_hash for t in transfers} == {tx_hash}
    assert [(t.recipient, t.amount) for t in transfers] == [*zip(recipients, amounts, strict=True)]
    assert all(t.sender == anvil.accounts[0] for t in transfers)
    assert anvil.balance(test_token, recipients[199]) >= 1_199


def test_batch_transfer_rejects_mismatched_lists(anvil, test_token):  # noqa: F811
    with pytest.raises(ValueError):
        anvil.batch_transfer(test_token, _recipients(2), [1])
    # BatchSender itself checks too.
    data = localchain.BATCH_TRANSFER + encode_abi(
        ["address", "address[]", "uint256[]"], [test_token, _recipients(2), [1]]
    )
    with pytest.raises(localchain.LocalChainError):
        localchain.send_transaction(anvil.url, {"to": anvil.batch_sender, "data": data})


def test_batch_transfer_many_splits_into_chunks(anvil, test_token):  # noqa: F811
    recipients = _recipients(25, start=5000)
    anvil.mint(test_token, anvil.accounts[0], 25)
    hashes = anvil.batch_transfer_many(test_token, recipients, [1] * 25, chunk=10)
    assert len(hashes) == 3
    assert [len(anvil.receipt(h)["logs"]) for h in hashes] == [10, 10, 5]


# --- mining ------------------------------------------------------------------------------------


def test_automine_off_then_mine(fresh_anvil):  # noqa: F811
    node = fresh_anvil
    token = node.deploy_token()
    node.mint(token, node.accounts[0], 1_000)
    batch_sender = node.batch_sender  # deploy it now: deploying waits for a receipt
    node.set_automine(False)
    head = node.head()
    first = node.transfer(token, node.accounts[1], 10, wait=False)
    second = node.transfer(token, node.accounts[2], 20, wait=False)
    native = node.send_native(node.accounts[3], 1, wait=False)
    assert node.head() == head
    assert node.receipt(first) is None
    with pytest.raises(localchain.LocalChainError, match="automine"):
        localchain.wait_for_receipt(node.url, first, timeout=0.2)

    assert node.mine() == head + 1
    receipts = [node.receipt(h) for h in (first, second, native)]
    assert {r["blockNumber"] for r in receipts} == {hex(head + 1)}
    assert all(r["status"] == "0x1" for r in receipts)
    assert len(_transfer_logs(node, head + 1, token)) == 2
    assert node.mine(5) == head + 6

    # Batches without waiting: the approval and the batch share the next block.
    recipients = _recipients(50)
    node.mint(token, node.accounts[0], 50, wait=False)
    batch = node.batch_transfer(token, recipients, [1] * 50, wait=False)
    node.mine()
    assert node.receipt(batch)["status"] == "0x1"
    assert localchain.allowance(node.url, token, node.accounts[0], batch_sender) > 0
    assert len(_transfer_logs(node, head + 7, token)) == 51  # the mint and 50 transfers

    node.set_automine(True)
    assert node.receipt(node.transfer(token, node.accounts[1], 1))["blockNumber"] == hex(head + 8)


def test_queued_batches_over_many_full_blocks_all_get_mined():
    # With automine off, an approval and 40 batches queued at once on a node with 2M-gas
    # blocks: one batch per block, the base fee rising for 40 blocks (5x: beyond a default
    # send's fee cap). None may be dropped (see set_automine).
    with run_anvil(31337, "--gas-limit", "2000000") as node:
        token = node.deploy_token()
        recipients = _recipients(2_000)
        node.mint(token, node.accounts[0], 2_000)
        node.batch_sender  # noqa: B018  (deploy it before turning automine off)
        node.set_automine(False)
        head = node.head()
        base_fee = int(node.block()["baseFeePerGas"], 16)
        hashes = node.batch_transfer_many(token, recipients, [1] * 2_000, chunk=50, wait=False)
        assert len(hashes) == 40
        node.mine(45)
        receipts = [node.receipt(h) for h in hashes]
        assert all(r is not None and r["status"] == "0x1" for r in receipts)
        assert len({r["blockNumber"] for r in receipts}) == 40
        assert int(node.block()["baseFeePerGas"], 16) > 2 * base_fee
        assert node.rpc("txpool_status") == {"pending": "0x0", "queued": "0x0"}
        logs = node.rpc(
            "eth_getLogs",
            {
                "fromBlock": hex(head + 1),
                "toBlock": "latest",
                "address": token,
                "topics": [TRANSFER_TOPIC],
            },
        )
        assert len(logs) == 2_000
        assert node.balance(token, recipients[-1]) == 1


def test_reorg_replaces_blocks(fresh_anvil):  # noqa: F811
    node = fresh_anvil
    token = node.deploy_token()
    alice, bob, carol = node.accounts[1:4]
    node.mint(token, node.accounts[0], 1_000)
    removed = node.transfer(token, alice, 100)
    kept_height = node.head()
    node.mine(2)
    height = kept_height  # the transfer's block, two below the head
    old_hash = node.block(height)["hash"]
    old_head_hash = node.block("latest")["hash"]
    assert len(_transfer_logs(node, height, token)) == 1

    # Replace the last three blocks; the new block at `height` carries a different transfer.
    node.reorg(
        3,
        [(node.transfer_request(token, bob, 7), 0), (node.transfer_request(token, carol, 8), 2)],
    )

    assert node.head() == height + 2  # same height, new blocks
    assert node.block(height)["hash"] != old_hash
    assert node.block("latest")["hash"] != old_head_hash
    assert node.block(height - 1)["hash"] == node.block(height)["parentHash"]
    assert node.receipt(removed) is None  # the old transaction is gone, not re-mined
    assert node.rpc("txpool_content") == {"pending": {}, "queued": {}}
    assert _moves(node, height, token) == [(bob, 7)]
    assert _moves(node, height + 1, token) == []
    assert _moves(node, height + 2, token) == [(carol, 8)]
    assert node.balance(token, alice) == 0
    assert node.balance(token, bob) == 7
    # Logs queried by the old block hash are gone too.
    with pytest.raises(AssertionError):
        node.rpc("eth_getLogs", {"blockHash": old_hash})


def test_rollback_and_snapshot_revert(fresh_anvil):  # noqa: F811
    node = fresh_anvil
    token = node.deploy_token()
    node.mint(token, node.accounts[0], 10)
    snapshot = node.snapshot()
    head = node.head()
    tx_hash = node.transfer(token, node.accounts[1], 3)
    node.mine(2)
    assert node.head() == head + 3

    node.rollback(2)
    assert node.head() == head + 1
    assert node.balance(token, node.accounts[1]) == 3  # the transfer's block is still there

    assert node.revert(snapshot) is True
    assert node.head() == head
    assert node.receipt(tx_hash) is None
    assert node.balance(token, node.accounts[1]) == 0
    new_hash = node.block(node.mine())["hash"]
    assert node.head() == head + 1 and new_hash


# --- anvil process -----------------------------------------------------------------------------


def test_find_anvil_prefers_node_modules():
    assert localchain.find_anvil() == ANVIL


def test_start_anvil_with_block_time_and_chain_id(tmp_path):
    port = free_port()
    log = tmp_path / "anvil.log"
    process = localchain.start_anvil(port, block_time=1, chain_id=4242, log_path=log)
    url = f"http://127.0.0.1:{port}"
    try:
        assert hex_to_int(localchain.rpc(url, "eth_chainId")) == 4242
        first = localchain.block_number(url)
        deadline = time.monotonic() + 5
        while localchain.block_number(url) < first + 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert localchain.block_number(url) >= first + 2  # interval mining, no transactions
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert log.stat().st_size > 0


def test_start_anvil_fails_loudly_on_a_taken_port(anvil):  # noqa: F811
    port = int(anvil.url.rsplit(":", 1)[1])
    with pytest.raises(localchain.LocalChainError, match="cannot start anvil"):
        localchain.start_anvil(port, timeout=5)
    assert anvil.head() >= 0  # the running node is untouched


# --- artifacts ---------------------------------------------------------------------------------


def test_shipped_artifacts_match_a_fresh_compile():
    result = subprocess.run(
        ["node", "scripts/compile_contracts.mjs", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_mode_fails_on_a_stale_artifact(tmp_path):
    # Copy the project bits the script reads, break one artifact, expect exit 1.
    (tmp_path / "contracts").mkdir()
    (tmp_path / "scripts").mkdir()
    (tmp_path / "src/nespay/chains/contracts").mkdir(parents=True)
    for name in ("TestToken", "BatchSender"):
        source = ROOT / "contracts" / f"{name}.sol"
        (tmp_path / "contracts" / f"{name}.sol").write_text(source.read_text())
        artifact = json.loads(localchain.ARTIFACTS.joinpath(f"{name}.json").read_text())
        if name == "BatchSender":
            artifact["bytecode"] = artifact["bytecode"][:-2] + "00"
        (tmp_path / "src/nespay/chains/contracts" / f"{name}.json").write_text(json.dumps(artifact))
    script = tmp_path / "scripts" / "compile_contracts.mjs"
    script.write_text((ROOT / "scripts" / "compile_contracts.mjs").read_text())
    (tmp_path / "node_modules").symlink_to(ROOT / "node_modules")
    result = subprocess.run(
        ["node", str(script), "--check"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1
    assert "BatchSender.json: bytecode differs" in result.stderr
    assert "TestToken" not in result.stderr


def test_artifacts_shape():
    for name in ("TestToken", "BatchSender"):
        artifact = localchain.load_artifact(name)
        assert artifact["bytecode"].startswith("0x") and len(artifact["bytecode"]) > 100
        assert artifact["solc"] == "0.8.37"
        assert len(artifact["source_sha256"]) == 64
        assert isinstance(artifact["abi"], list)
    abi = localchain.load_artifact("TestToken")["abi"]
    functions = {entry["name"] for entry in abi if entry["type"] == "function"}
    assert {
        "mint",
        "transfer",
        "transferFrom",
        "approve",
        "balanceOf",
        "allowance",
        "totalSupply",
        "name",
        "symbol",
        "decimals",
    } <= functions
