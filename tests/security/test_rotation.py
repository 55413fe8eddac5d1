"""Key rotation on a real table: complete, resumable, safe beside writers, robust to bad rows."""

import asyncio
import secrets

import pytest
from sqlalchemy import text

from nespay.kit.crypto import Keyring, generate_master_key, token_version
from nespay.security.encryption import EncryptedColumn, seal, unseal
from nespay.security.rotation import rotate
from tests.fixtures.database import pg_dump

ROWS = 1200
A = generate_master_key()
B = generate_master_key()
OLD = Keyring(A)
BOTH = Keyring(B, A)  # services during the rotation: read both, write with B
NEW = Keyring(B)  # after the rotation, the previous key removed


class Crash(Exception):
    pass


def row_id(i: int) -> str:
    return f"row_{i:05d}"


@pytest.fixture
async def scratch(database):
    name = f"rot_test_{secrets.token_hex(4)}"
    async with database.engine.begin() as conn:
        await conn.execute(text(f'CREATE TABLE "{name}" (id text PRIMARY KEY, secret text)'))
    try:
        yield EncryptedColumn(name, "secret")
    finally:
        async with database.engine.begin() as conn:
            await conn.execute(text(f'DROP TABLE IF EXISTS "{name}"'))


async def fill(database, spec, rows=ROWS, keyring=OLD, nulls=3):
    """`rows` secrets sealed under `keyring`, plus a few NULLs; returns id → plaintext."""
    plain = {row_id(i): f"whsec_{secrets.token_hex(16)}" for i in range(rows)}
    params = [{"id": rid, "v": seal(keyring, spec, rid, value)} for rid, value in plain.items()]
    params += [{"id": f"null_{i}", "v": None} for i in range(nulls)]
    async with database.engine.begin() as conn:
        await conn.execute(
            text(f'INSERT INTO "{spec.table}" (id, secret) VALUES (:id, :v)'), params
        )
    return plain


async def stored(database, spec):
    async with database.engine.connect() as conn:
        rows = await conn.execute(text(f'SELECT id, secret FROM "{spec.table}" ORDER BY id'))
        return {rid: value for rid, value in rows}


async def set_value(conn, spec, rid, token):
    await conn.execute(
        text(f'UPDATE "{spec.table}" SET secret = :v WHERE id = :id'), {"v": token, "id": rid}
    )


async def check(database, spec, plain, *, except_ids=()):
    values = await stored(database, spec)
    for rid, expected in plain.items():
        if rid in except_ids:
            continue
        assert token_version(values[rid]) == NEW.current_version, rid
        assert unseal(NEW, spec, rid, values[rid]) == expected, rid
    assert all(values[f"null_{i}"] is None for i in range(3))
    return values


async def test_rotation_re_encrypts_every_row_and_is_idempotent(database, scratch):
    plain = await fill(database, scratch)
    calls = []
    report = await rotate(
        database.engine, BOTH, [scratch], batch_size=500, progress=lambda *a: calls.append(a)
    )
    assert report.version == NEW.current_version
    [column] = report.columns
    assert (column.table, column.column) == (scratch.table, "secret")
    assert (column.total, column.rotated, column.changed, column.remaining) == (ROWS, ROWS, 0, 0)
    assert column.failed == [] and report.complete and report.rotated == ROWS
    name = f"{scratch.table}.secret"
    assert calls == [(name, 0, ROWS), (name, 500, ROWS), (name, 1000, ROWS), (name, ROWS, ROWS)]
    await check(database, scratch, plain)

    before = await stored(database, scratch)
    again = await rotate(database.engine, BOTH, [scratch])
    assert (again.columns[0].total, again.rotated, again.failed) == (0, 0, 0)
    assert await stored(database, scratch) == before  # nothing rewritten


async def test_a_crash_after_one_batch_resumes_where_it_stopped(database, scratch):
    plain = await fill(database, scratch)

    def crash_after_first_batch(column, done, total):
        if done > 0:
            raise Crash

    with pytest.raises(Crash):
        await rotate(
            database.engine, BOTH, [scratch], batch_size=500, progress=crash_after_first_batch
        )
    values = await stored(database, scratch)
    first_run = sum(1 for v in values.values() if v and v.startswith(NEW.current_prefix))
    assert first_run == 500  # the first batch was committed, nothing after it

    # Services keep reading both kinds of rows meanwhile.
    for rid in (row_id(0), row_id(ROWS - 1)):
        assert unseal(BOTH, scratch, rid, values[rid]) == plain[rid]

    report = await rotate(database.engine, BOTH, [scratch], batch_size=500)
    column = report.columns[0]
    assert column.total == column.rotated == ROWS - 500
    assert first_run + column.rotated == ROWS and report.complete
    await check(database, scratch, plain)


async def test_a_row_locked_by_a_writer_is_left_to_the_writer(database, scratch):
    plain = await fill(database, scratch)
    target = row_id(700)
    fresh = seal(BOTH, scratch, target, "whsec_fresh-from-the-writer")
    async with database.engine.connect() as writer:
        transaction = await writer.begin()
        await set_value(writer, scratch, target, fresh)  # holds the row lock, not committed
        report = await asyncio.wait_for(
            rotate(database.engine, BOTH, [scratch], batch_size=500), timeout=30
        )
        await transaction.commit()
    column = report.columns[0]
    assert (column.rotated, column.remaining, column.failed) == (ROWS - 1, 1, [])
    assert not report.complete
    values = await check(database, scratch, plain, except_ids={target})
    assert values[target] == fresh
    assert unseal(NEW, scratch, target, values[target]) == "whsec_fresh-from-the-writer"
    # The writer's value is already under the new key: a re-run has nothing to do.
    assert (await rotate(database.engine, BOTH, [scratch])).columns[0].total == 0


async def test_a_writer_during_the_rotation_keeps_its_value(database, scratch):
    plain = await fill(database, scratch)
    target = row_id(1100)
    fresh = seal(BOTH, scratch, target, "whsec_written-mid-rotation")
    tasks = []

    async def writer():
        async with database.engine.begin() as conn:
            await set_value(conn, scratch, target, fresh)

    def start_writer(column, done, total):
        if done > 0 and not tasks:
            tasks.append(asyncio.get_running_loop().create_task(writer()))

    report = await rotate(database.engine, BOTH, [scratch], batch_size=100, progress=start_writer)
    await tasks[0]
    values = await check(database, scratch, plain, except_ids={target})
    assert values[target] == fresh
    column = report.columns[0]
    # Either the rotation got there first (and the writer overwrote it) or the writer did.
    assert column.rotated + column.remaining in (ROWS - 1, ROWS)
    assert column.failed == []


async def test_corrupted_rows_are_reported_by_id_and_the_rest_rotate(database, scratch):
    plain = await fill(database, scratch)
    tampered, garbage, moved = row_id(42), row_id(777), row_id(1000)
    values = await stored(database, scratch)
    pieces = values[tampered].split(":")
    pieces[4] = ("B" if pieces[4][0] == "A" else "A") + pieces[4][1:]
    async with database.engine.begin() as conn:
        await set_value(conn, scratch, tampered, ":".join(pieces))
        await set_value(conn, scratch, garbage, "not-a-token")
        await set_value(conn, scratch, moved, values[row_id(1)])  # copied from another row
    bad = {tampered, garbage, moved}

    report = await rotate(database.engine, BOTH, [scratch], batch_size=500)
    column = report.columns[0]
    assert sorted(column.failed) == sorted(bad)
    assert "authentication failed" in column.failures[tampered]
    assert "malformed" in column.failures[garbage]
    assert column.rotated == ROWS - 3 and column.remaining == 0 and not report.complete
    assert all("whsec_" not in reason for reason in column.failures.values())
    after = await check(database, scratch, plain, except_ids=bad)
    assert after[garbage] == "not-a-token"  # left as it was

    again = await rotate(database.engine, BOTH, [scratch], batch_size=500)
    assert (again.columns[0].total, again.rotated, sorted(again.columns[0].failed)) == (
        3,
        0,
        sorted(bad),
    )


async def test_values_under_an_unknown_key_are_reported_not_lost(database, scratch):
    plain = await fill(database, scratch, rows=20)
    report = await rotate(database.engine, NEW, [scratch], batch_size=7)  # previous key missing
    column = report.columns[0]
    assert column.rotated == 0 and sorted(column.failed) == sorted(plain)
    assert all("unknown key version" in reason for reason in column.failures.values())
    values = await stored(database, scratch)
    assert all(token_version(values[rid]) == OLD.current_version for rid in plain)


async def test_two_rotations_at_once_share_the_work(database, scratch):
    plain = await fill(database, scratch)
    first, second = await asyncio.gather(
        rotate(database.engine, BOTH, [scratch], batch_size=100),
        rotate(database.engine, BOTH, [scratch], batch_size=100),
    )
    assert first.rotated + second.rotated == ROWS
    assert first.failed == second.failed == 0
    await check(database, scratch, plain)


async def test_a_database_dump_holds_no_plaintext(database, settings, scratch):
    plain = await fill(database, scratch, rows=200)
    await rotate(database.engine, BOTH, [scratch], batch_size=64)
    output = await pg_dump(
        settings.database_url.get_secret_value(), "--data-only", "-t", scratch.table
    )
    assert output.count(NEW.current_prefix) == 200  # the rows are there, encrypted
    leaked = [value for value in plain.values() if value in output]
    assert leaked == []
    assert "whsec_" not in output
    assert A not in output and B not in output
