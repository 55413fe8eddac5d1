"""Reference data loaded by `nespay db seed` (the guide's `prisma:seed:prod`).

Safe to run twice: rows are inserted when missing and never overwritten, so an operator's
changes (a network enabled, an endpoint re-prioritised) survive a re-seed. Mainnets and
testnets start disabled; an operator enables what they accept. Testnets list only the
stablecoins their issuers publish (Circle's test USDC; Tron Nile's USDT); other testnet tokens
can be added with `nespay currencies add`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from nespay.chains import faketron
from nespay.kit.ids import new_id


@dataclass(frozen=True)
class SeedNetwork:
    code: str
    name: str
    chain_family: str
    chain_id: int | None
    native: tuple[str, str, int]  # code, name, decimals (a VA network: its currency)
    confirmations: int
    block_time_ms: int
    rpc: tuple[str, ...]
    tokens: tuple[tuple[str, str, int], ...] = ()  # code, contract, decimals
    is_testnet: bool = False
    explorer_url: str | None = None
    enabled: bool = False


ETH = ("ETH", "Ether", 18)
USDT, USDC = "USDT", "USDC"

NETWORKS: tuple[SeedNetwork, ...] = (
    SeedNetwork(
        "ethereum",
        "Ethereum",
        "evm",
        1,
        ETH,
        12,
        12_000,
        ("https://ethereum-rpc.publicnode.com", "https://eth.llamarpc.com"),
        (
            (USDT, "0xdAC17F958D2ee523a2206206994597C13D831ec7", 6),
            (USDC, "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48", 6),
        ),
        explorer_url="https://etherscan.io",
    ),
    SeedNetwork(
        "sepolia",
        "Ethereum Sepolia",
        "evm",
        11155111,
        ETH,
        12,
        12_000,
        ("https://ethereum-sepolia-rpc.publicnode.com", "https://rpc.sepolia.org"),
        ((USDC, "0x1c7D4B196Cb0C7B01d743Fbc6116a902379C7238", 6),),
        is_testnet=True,
        explorer_url="https://sepolia.etherscan.io",
    ),
    SeedNetwork(
        "polygon",
        "Polygon PoS",
        "evm",
        137,
        ("POL", "Polygon Ecosystem Token", 18),
        64,
        2_000,
        ("https://polygon-rpc.com", "https://polygon-bor-rpc.publicnode.com"),
        (
            (USDT, "0xc2132D05D31c914a87C6611C10748AEb04B58e8F", 6),
            (USDC, "0x3c499c542cEF5E3811e1192ce70d8cC03d5c3359", 6),
        ),
        explorer_url="https://polygonscan.com",
    ),
    SeedNetwork(
        "polygon-amoy",
        "Polygon Amoy",
        "evm",
        80002,
        ("POL", "Polygon Ecosystem Token", 18),
        64,
        2_000,
        ("https://rpc-amoy.polygon.technology", "https://polygon-amoy-bor-rpc.publicnode.com"),
        ((USDC, "0x41E94Eb019C0762f9Bfcf9Fb1E58725BfB0e7582", 6),),
        is_testnet=True,
        explorer_url="https://amoy.polygonscan.com",
    ),
    SeedNetwork(
        "bsc",
        "BNB Smart Chain",
        "evm",
        56,
        ("BNB", "BNB", 18),
        15,
        3_000,
        ("https://bsc-dataseed.bnbchain.org", "https://bsc-rpc.publicnode.com"),
        (
            (USDT, "0x55d398326f99059fF775485246999027B3197955", 18),
            (USDC, "0x8AC76a51cc950d9822D68b83fE1Ad97B32Cd580d", 18),
        ),
        explorer_url="https://bscscan.com",
    ),
    SeedNetwork(
        "bsc-testnet",
        "BNB Smart Chain Testnet",
        "evm",
        97,
        ("BNB", "Test BNB", 18),
        15,
        3_000,
        (
            "https://bsc-testnet-rpc.publicnode.com",
            "https://data-seed-prebsc-1-s1.bnbchain.org:8545",
        ),
        is_testnet=True,
        explorer_url="https://testnet.bscscan.com",
    ),
    SeedNetwork(
        "arbitrum",
        "Arbitrum One",
        "evm",
        42161,
        ETH,
        20,
        250,
        ("https://arb1.arbitrum.io/rpc", "https://arbitrum-one-rpc.publicnode.com"),
        (
            (USDT, "0xFd086bC7CD5C481DCC9C85ebE478A1C0b69FCbb9", 6),
            (USDC, "0xaf88d065e77c8cC2239327C5EDb3A432268e5831", 6),
        ),
        explorer_url="https://arbiscan.io",
    ),
    SeedNetwork(
        "arbitrum-sepolia",
        "Arbitrum Sepolia",
        "evm",
        421614,
        ETH,
        20,
        250,
        ("https://sepolia-rollup.arbitrum.io/rpc",),
        ((USDC, "0x75faf114eafb1BDbe2F0316DF893fd58CE46AA4d", 6),),
        is_testnet=True,
        explorer_url="https://sepolia.arbiscan.io",
    ),
    SeedNetwork(
        "base",
        "Base",
        "evm",
        8453,
        ETH,
        12,
        2_000,
        ("https://mainnet.base.org", "https://base-rpc.publicnode.com"),
        (
            (USDC, "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913", 6),
            (USDT, "0xfde4C96c8593536E31F229EA8f37b2ADa2699bb2", 6),
        ),
        explorer_url="https://basescan.org",
    ),
    SeedNetwork(
        "base-sepolia",
        "Base Sepolia",
        "evm",
        84532,
        ETH,
        12,
        2_000,
        ("https://sepolia.base.org",),
        ((USDC, "0x036CbD53842c5426634e7929541eC2318f3dCF7e", 6),),
        is_testnet=True,
        explorer_url="https://sepolia.basescan.org",
    ),
    SeedNetwork(
        "optimism",
        "OP Mainnet",
        "evm",
        10,
        ETH,
        12,
        2_000,
        ("https://mainnet.optimism.io", "https://optimism-rpc.publicnode.com"),
        (
            (USDT, "0x94b008aA00579c1307B0EF2c499aD98a8ce58e58", 6),
            (USDC, "0x0b2C639c533813f4Aa9D7837cAf62653d097Ff85", 6),
        ),
        explorer_url="https://optimistic.etherscan.io",
    ),
    SeedNetwork(
        "optimism-sepolia",
        "OP Sepolia",
        "evm",
        11155420,
        ETH,
        12,
        2_000,
        ("https://sepolia.optimism.io",),
        ((USDC, "0x5fd84259d66Cd46123540766Be93DFE6D43130D7", 6),),
        is_testnet=True,
        explorer_url="https://sepolia-optimism.etherscan.io",
    ),
    SeedNetwork(
        "tron",
        "Tron",
        "tron",
        728126428,
        ("TRX", "Tronix", 6),
        19,
        3_000,
        ("https://api.trongrid.io",),
        ((USDT, "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t", 6),),
        explorer_url="https://tronscan.org",
    ),
    SeedNetwork(
        "tron-nile",
        "Tron Nile",
        "tron",
        3448148188,
        ("TRX", "Tronix", 6),
        19,
        3_000,
        ("https://nile.trongrid.io",),
        ((USDT, "TXYZopYRdj2D9XRtbG411XZZ3kM5VkAeBf", 6),),
        is_testnet=True,
        explorer_url="https://nile.tronscan.org",
    ),
    # The fake TronGrid of `nespay sandbox --chain tron` (nespay.chains.faketron; its block 0
    # is always the same, so is its chain id). No Tron node runs on a development machine.
    SeedNetwork(
        "tron-local",
        "Local Tron (sandbox)",
        "tron",
        faketron.chain_id(),
        ("TRX", "Tronix", 6),
        1,
        3_000,
        (f"http://127.0.0.1:{faketron.SANDBOX_PORT}",),
        is_testnet=True,
    ),
    # Intrajasa's rupiah virtual accounts (docs/intrajasa.md): no chain, no RPC; IDR with
    # ISO 4217's two decimals (Intrajasa's "25000.00"); a payment Intrajasa confirms is final.
    SeedNetwork(
        "intrajasa",
        "Intrajasa virtual accounts (IDR)",
        "va",
        None,
        ("IDR", "Indonesian rupiah", 2),
        1,
        1_000,
        (),
    ),
    SeedNetwork(
        "local",
        "Local development chain",
        "evm",
        31337,
        ETH,
        3,
        1_000,
        ("http://127.0.0.1:8545",),
        is_testnet=True,
    ),
)

_NETWORK = text(
    """
    INSERT INTO networks (code, name, chain_family, chain_id, confirmations, block_time_ms,
                          is_testnet, enabled, explorer_url)
    VALUES (:code, :name, :chain_family, :chain_id, :confirmations, :block_time_ms,
            :is_testnet, :enabled, :explorer_url)
    ON CONFLICT (code) DO NOTHING
    """
)
_CURRENCY = text(
    """
    INSERT INTO currencies (id, network_code, code, name, contract, decimals)
    VALUES (:id, :network_code, :code, :name, :contract, :decimals)
    ON CONFLICT (network_code, code) DO NOTHING
    """
)
_RPC = text(
    """
    INSERT INTO rpc_endpoints (id, network_code, url, priority)
    VALUES (:id, :network_code, :url, :priority)
    ON CONFLICT (network_code, url) DO NOTHING
    """
)


@dataclass
class SeedCounts:
    networks: int = 0
    currencies: int = 0
    rpc_endpoints: int = 0
    seen: int = field(default=0)


async def seed_reference_data(
    conn: AsyncConnection, progress: Callable[[str], None] | None = None
) -> SeedCounts:
    """Insert what is missing; returns how many rows were new."""
    counts = SeedCounts()
    for network in NETWORKS:
        counts.networks += (await conn.execute(_NETWORK, _network_row(network))).rowcount
        for row in _currency_rows(network):
            counts.currencies += (await conn.execute(_CURRENCY, row)).rowcount
        for priority, url in enumerate(network.rpc, start=1):
            row = {
                "id": new_id("rpc"),
                "network_code": network.code,
                "url": url,
                "priority": priority * 10,
            }
            counts.rpc_endpoints += (await conn.execute(_RPC, row)).rowcount
        counts.seen += 1
        if progress is not None:
            progress(network.code)
    return counts


def _network_row(network: SeedNetwork) -> dict[str, object]:
    return {
        "code": network.code,
        "name": network.name,
        "chain_family": network.chain_family,
        "chain_id": network.chain_id,
        "confirmations": network.confirmations,
        "block_time_ms": network.block_time_ms,
        "is_testnet": network.is_testnet,
        "enabled": network.enabled,
        "explorer_url": network.explorer_url,
    }


def _currency_rows(network: SeedNetwork) -> list[dict[str, object]]:
    code, name, decimals = network.native
    rows = [
        {
            "id": new_id("cur"),
            "network_code": network.code,
            "code": code,
            "name": name,
            "contract": None,
            "decimals": decimals,
        }
    ]
    for token_code, contract, token_decimals in network.tokens:
        token_name = "Tether USD" if token_code == USDT else "USD Coin"
        rows.append(
            {
                "id": new_id("cur"),
                "network_code": network.code,
                "code": token_code,
                "name": token_name,
                # EVM contracts are stored lowercase (matching is by lowercase); Tron's base58.
                "contract": contract.lower() if network.chain_family == "evm" else contract,
                "decimals": token_decimals,
            }
        )
    return rows
