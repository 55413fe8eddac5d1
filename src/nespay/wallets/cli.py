"""`nespay wallets …`: hot wallets from the command line.

`import-hot-key` reads the private key from standard input only (hidden prompt at a
terminal, one line from a pipe): never from an argument (it would sit in the shell history
and in `ps`) nor from an environment variable. It prints the address, never the key.
"""

from __future__ import annotations

import getpass
import sys
from typing import Annotated

import typer

wallets_app = typer.Typer(no_args_is_help=True, help="Hot wallets that send money out.")

ROLE_HELP = "payouts (withdrawals, refunds) or gas (funds sweeps' gas)"


def _read_key() -> str:
    if sys.stdin.isatty():
        return getpass.getpass("private key (hex, not echoed): ")
    return sys.stdin.readline().strip()


@wallets_app.command("import-hot-key")
def import_hot_key(
    network: Annotated[str, typer.Option(help="The network's code")],
    role: Annotated[str, typer.Option(help=ROLE_HELP)] = "payouts",
    refused: Annotated[str | None, typer.Argument(hidden=True, show_default=False)] = None,
) -> None:
    """Store a hot wallet's private key, read from standard input, encrypted; print its
    address. The network's previous wallet of this role is deactivated."""
    from nespay.audit.service import record
    from nespay.chains.cli import _fail, _say, _with_session
    from nespay.cli import settings_or_exit
    from nespay.security.encryption import keyring_from_settings
    from nespay.wallets.evmtx import InvalidPrivateKey, normalise_private_key
    from nespay.wallets.hotkeys import import_local_key

    if refused is not None:
        del refused
        _fail(
            "the private key is read from standard input only, never from an argument (it "
            "would stay in the shell history and in the process list): pipe it in or paste it "
            "at the prompt"
        )
    settings = settings_or_exit()
    raw = _read_key()
    try:
        key = normalise_private_key(raw)
    except InvalidPrivateKey as error:
        _fail(f"{error} on standard input")
    del raw
    keyring = keyring_from_settings(settings)

    async def work(session):  # type: ignore[no-untyped-def]
        wallet = await import_local_key(
            session, keyring, network=network, role=role, private_key=key
        )
        await record(
            session,
            _actor(),
            "hot_wallet.imported",
            target_type="hot_wallet",
            target_id=wallet.id,
            detail={"network": network, "role": role, "address": wallet.address},
        )
        return wallet

    wallet = _with_session(work)
    _say(f"hot wallet {wallet.id}: {role} on {network}, signer local")
    _say(_shown(wallet.address))


@wallets_app.command("add-privy")
def add_privy(
    network: Annotated[str, typer.Option(help="The network's code")],
    wallet_id: Annotated[str, typer.Option(help="The Privy wallet's id")],
    address: Annotated[str, typer.Option(help="The Privy wallet's address (0x…)")],
    role: Annotated[str, typer.Option(help=ROLE_HELP)] = "payouts",
) -> None:
    """Use a Privy server wallet as the network's hot wallet of this role."""
    from nespay.chains.cli import _say, _with_session
    from nespay.kit.addresses import checksum_address
    from nespay.wallets.hotkeys import add_privy_wallet

    async def work(session):  # type: ignore[no-untyped-def]
        return await add_privy_wallet(
            session, network=network, role=role, wallet_id=wallet_id, address=address
        )

    try:
        wallet = _with_session(work)
    except ValueError as error:
        from nespay.chains.cli import _fail

        _fail(str(error))
    _say(f"hot wallet {wallet.id}: {role} on {network}, signer privy")
    _say(checksum_address(wallet.address))


@wallets_app.command("record-funding")
def record_funding(
    network: Annotated[str, typer.Option(help="The network's code")],
    currency: Annotated[str, typer.Option(help="The currency's code (USDT, ETH, …)")],
    amount: Annotated[str, typer.Option(help='Whole units, e.g. "0.5"')],
    reason: Annotated[str, typer.Option(help="Where it came from (kept in the audit log)")],
) -> None:
    """Record funds sent into the network's hot wallets from outside (gas money, float for
    withdrawals), so the ledger — and reconciliation — knows them."""
    from nespay.chains.cli import _fail, _say, _with_session
    from nespay.ledger.funding import record_funding as record

    async def work(session):  # type: ignore[no-untyped-def]
        return await record(
            session, _actor(), network=network, currency=currency, amount=amount, reason=reason
        )

    try:
        _with_session(work)
    except ValueError as error:
        _fail(str(error))
    _say(f"recorded {amount} {currency.upper()} into the hot wallets of {network}")


@wallets_app.command("import-xprv")
def import_xprv(
    chain_family: Annotated[str, typer.Option(help="evm")] = "evm",
    refused: Annotated[str | None, typer.Argument(hidden=True, show_default=False)] = None,
) -> None:
    """Store the deposit addresses' account private key (the xprv whose public key is
    HD_WALLET_XPUB), read from standard input, encrypted: the jobs process derives each
    deposit address's key from it to sign its sweep. Refused unless it matches the xpub."""
    from nespay.audit.service import record
    from nespay.chains.cli import _fail, _say, _with_session
    from nespay.cli import settings_or_exit
    from nespay.security.encryption import keyring_from_settings
    from nespay.wallets.hdkeys import InvalidXprv
    from nespay.wallets.hdkeys import import_xprv as store

    if refused is not None:
        del refused
        _fail(
            "the xprv is read from standard input only, never from an argument (it would stay "
            "in the shell history and in the process list): pipe it in or paste it at the prompt"
        )
    settings = settings_or_exit()
    if sys.stdin.isatty():
        raw = getpass.getpass("account xprv (not echoed): ")
    else:
        raw = sys.stdin.readline().strip()
    keyring = keyring_from_settings(settings)

    async def work(session):  # type: ignore[no-untyped-def]
        xpub = await store(session, settings, keyring, chain_family=chain_family, xprv=raw)
        await record(
            session,
            _actor(),
            "hd_account_key.imported",
            target_type="hd_account_key",
            target_id=chain_family,
            detail={"xpub": xpub},
        )
        return xpub

    try:
        xpub = _with_session(work)
    except InvalidXprv as error:
        _fail(f"the xprv on standard input {error}")
    _say(f"{chain_family} account key stored, encrypted; it signs sweeps of the addresses of")
    _say(xpub)


@wallets_app.command("list")
def list_wallets() -> None:
    """Hot wallets: id, network, role, signer, address, and whether each is active."""
    from nespay.chains.cli import _say, _with_session
    from nespay.wallets.hotkeys import all_wallets

    for wallet, active in _with_session(all_wallets):
        state = "active" if active else "inactive"
        _say(
            f"{wallet.id}  {wallet.network_code:<16} {wallet.role:<8} {wallet.signer:<6} "
            f"{_shown(wallet.address)}  {state}"
        )


def _actor():  # type: ignore[no-untyped-def]
    from nespay.auth.principals import Actor

    return Actor("system", "cli")


def _shown(address: str) -> str:
    from nespay.kit.addresses import display_stored

    return display_stored(address)
