"""Re-encrypt every registered column under the current master key, while services keep running.

The procedure (`nespay keys rotate`): set ENCRYPTION_MASTER_KEY to the new key and
ENCRYPTION_MASTER_KEY_PREVIOUS to the old one everywhere and restart (services now read both and
write with the new one), run the rotation, then remove the previous key.

For each column, rows whose value is not under the current key are taken in batches in id order
(`FOR UPDATE SKIP LOCKED`, so a row a service is writing is left alone and two rotations share
the work), re-encrypted, written back with a compare-and-set on the old value, and committed per
batch. A crash loses at most the open batch; a re-run only sees rows still under an old key, so
the rotation is resumable and idempotent. A row that does not decrypt is reported by id and
left as it is; the run goes on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from nespay.kit.crypto import DecryptionError, Keyring
from nespay.security.encryption import ENCRYPTED_COLUMNS, EncryptedColumn, quote_identifier

log = structlog.get_logger("nespay.security.rotation")

Progress = Callable[[str, int, int], None]

# Extra passes pick up rows that were locked by a writer during the previous pass.
MAX_PASSES = 5


@dataclass
class ColumnReport:
    table: str
    column: str
    total: int = 0  # rows needing rotation when the column was started
    rotated: int = 0  # rows re-encrypted under the current key
    changed: int = 0  # rows a concurrent writer changed first (their value was kept)
    remaining: int = 0  # rows still under an old key that were neither rotated nor failed
    failures: dict[str, str] = field(default_factory=dict)  # row id → reason (no secrets)

    @property
    def name(self) -> str:
        return f"{self.table}.{self.column}"

    @property
    def failed(self) -> list[str]:
        """Ids of the rows that could not be decrypted (left unchanged)."""
        return list(self.failures)


@dataclass
class RotationReport:
    version: str  # the current key version everything was rotated to
    columns: list[ColumnReport] = field(default_factory=list)

    @property
    def rotated(self) -> int:
        return sum(column.rotated for column in self.columns)

    @property
    def failed(self) -> int:
        return sum(len(column.failures) for column in self.columns)

    @property
    def remaining(self) -> int:
        return sum(column.remaining for column in self.columns)

    @property
    def complete(self) -> bool:
        """Every value is now under the current key."""
        return self.failed == 0 and self.remaining == 0


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class _Statements:
    def __init__(self, spec: EncryptedColumn, batch_size: int) -> None:
        table = quote_identifier(spec.table)
        col = quote_identifier(spec.column)
        ident = quote_identifier(spec.id_column)
        stale = f"{col} IS NOT NULL AND {col} NOT LIKE :prefix ESCAPE '\\'"
        select = f"SELECT {ident}, {col} FROM {table} WHERE {stale}"  # noqa: S608 - registry
        tail = f"ORDER BY {ident} LIMIT {int(batch_size)} FOR UPDATE SKIP LOCKED"
        self.count = text(f"SELECT count(*) FROM {table} WHERE {stale}")  # noqa: S608
        self.first = text(f"{select} {tail}")
        self.next = text(f"{select} AND {ident} > :after {tail}")
        self.update = text(
            f"UPDATE {table} SET {col} = :new WHERE {ident} = :id AND {col} = :old"  # noqa: S608
        )


async def _count(engine: AsyncEngine, statements: _Statements, prefix: str) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(statements.count, {"prefix": prefix}) or 0)


async def rotate_column(
    engine: AsyncEngine,
    keyring: Keyring,
    spec: EncryptedColumn,
    *,
    batch_size: int = 500,
    progress: Progress | None = None,
) -> ColumnReport:
    report = ColumnReport(spec.table, spec.column)
    statements = _Statements(spec, batch_size)
    prefix = _escape_like(keyring.current_prefix) + "%"
    report.total = await _count(engine, statements, prefix)
    if progress:
        progress(spec.name, 0, report.total)
    stale = report.total

    for _ in range(MAX_PASSES):
        if stale <= len(report.failures):
            break
        rotated_before = report.rotated
        after: Any = None
        while True:
            async with engine.begin() as conn:
                if after is None:
                    result = await conn.execute(statements.first, {"prefix": prefix})
                else:
                    result = await conn.execute(statements.next, {"prefix": prefix, "after": after})
                rows = result.all()
                if not rows:
                    break
                for row_id, old in rows:
                    key = str(row_id)
                    if key in report.failures:
                        continue
                    try:
                        new = keyring.reencrypt(old, aad=spec.aad(key))
                    except DecryptionError as error:
                        report.failures[key] = str(error)
                        log.warning(
                            "encryption_rotation_row_failed",
                            column=spec.name,
                            row_id=key,
                            reason=str(error),
                        )
                        continue
                    updated = await conn.execute(
                        statements.update, {"new": new, "id": row_id, "old": old}
                    )
                    if updated.rowcount == 1:
                        report.rotated += 1
                    else:
                        report.changed += 1
                after = rows[-1][0]
            # Committed: report progress only for work that is durable.
            if progress:
                done = report.rotated + report.changed + len(report.failures)
                progress(spec.name, done, max(report.total, done))
            if len(rows) < batch_size:
                break
        stale = await _count(engine, statements, prefix)
        if report.rotated == rotated_before:
            break  # nothing moved this pass: what is left is failed or locked

    report.remaining = max(0, stale - len(report.failures))
    log.info(
        "encryption_rotation_column",
        column=spec.name,
        version=keyring.current_version,
        total=report.total,
        rotated=report.rotated,
        changed=report.changed,
        failed=len(report.failures),
        remaining=report.remaining,
    )
    return report


async def rotate(
    engine: AsyncEngine,
    keyring: Keyring,
    columns: Sequence[EncryptedColumn] = ENCRYPTED_COLUMNS,
    *,
    batch_size: int = 500,
    progress: Progress | None = None,
) -> RotationReport:
    """Re-encrypt every non-null value of `columns` that is not under the current key.

    `progress(column, done, total)` is called with done=0 before a column's first batch and
    after each committed batch; total is the count needing rotation when the column started.
    An exception from `progress` stops the run; committed batches stay committed.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    report = RotationReport(version=keyring.current_version)
    for spec in list(columns):
        report.columns.append(
            await rotate_column(engine, keyring, spec, batch_size=batch_size, progress=progress)
        )
    return report
