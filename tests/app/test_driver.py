"""app.driver: statements compiled once and run on the driver write and read what the ORM does."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    create_engine,
    insert,
    select,
    text,
)

from app.driver import AsyncPool, NeedsTransaction, Prepared, run_to_end, transact_blocking

metadata = MetaData()
things = Table(
    "things",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(20)),
    Column("seen_at", DateTime(timezone=True)),
)
SEEN = datetime(2026, 12, 6, 9, 30, 15, 123456, tzinfo=UTC)
ADD = Prepared(insert(things).values(name=bindparam("name"), seen_at=bindparam("seen_at")).returning(things.c.id))
PICK = Prepared(
    select(things.c.id, things.c.name, things.c.seen_at)
    .where(things.c.id.in_(bindparam("ids", expanding=True)))
    .order_by(things.c.id)
)


@pytest.fixture
def engine(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'driver.sqlite'}")
    metadata.create_all(engine)
    yield engine
    engine.dispose()


async def _add(transaction, names: list[str]) -> list[int]:
    return [await ADD.scalar(transaction, {"name": name, "seen_at": SEEN}) for name in names]


async def _pick(transaction, ids: list[int]) -> list[tuple[int, str, datetime]]:
    return [tuple(row) for row in await PICK.rows(transaction, {"ids": ids})]


def test_a_datetime_is_stored_as_the_orm_stores_it(engine) -> None:
    (driver_id,) = transact_blocking(engine, _add, ["driver"])
    with engine.begin() as connection:
        orm_id = connection.execute(insert(things).values(name="orm", seen_at=SEEN).returning(things.c.id)).scalar()
        stored = dict(connection.execute(text("SELECT id, seen_at FROM things")).all())
        read_by_sqlalchemy = connection.execute(select(things.c.seen_at).order_by(things.c.id)).scalars().all()
    assert stored[driver_id] == stored[orm_id]  # the same text in SQLite, so comparisons and equality agree
    rows = transact_blocking(engine, _pick, [driver_id, orm_id])
    assert [row[2] for row in rows] == read_by_sqlalchemy  # and the same value read back


@pytest.mark.parametrize("count", [0, 1, 3])
def test_an_expanding_parameter_takes_any_number_of_values(engine, count: int) -> None:
    ids = transact_blocking(engine, _add, ["a", "b", "c", "d"])
    rows = transact_blocking(engine, _pick, ids[:count])
    assert [(row[0], row[1]) for row in rows] == list(zip(ids[:count], "abcd"[:count], strict=True))


def test_a_failed_transaction_stores_nothing(engine) -> None:
    async def add_then_fail(transaction) -> None:
        await _add(transaction, ["lost"])
        raise ValueError("after the insert")

    with pytest.raises(ValueError, match="after the insert"):
        transact_blocking(engine, add_then_fail)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM things")).scalar() == 0


def test_run_to_end_refuses_a_coroutine_that_suspends() -> None:
    async def suspends() -> None:
        await asyncio.sleep(0)

    with pytest.raises(RuntimeError, match="suspended"):
        run_to_end(suspends())


@pytest.mark.postgres
def test_statement_by_statement_until_the_function_asks_for_a_transaction(postgres_url: str) -> None:
    # DatabaseRunner.write on PostgreSQL: no BEGIN and COMMIT round trips, each statement commits on its own,
    # until the function raises NeedsTransaction; then it runs once more, in one transaction.
    runs: list[tuple[bool, list[int]]] = []

    async def two_statements(transaction) -> list[int]:
        ids = [(await transaction.execute("SELECT pg_current_xact_id()::text::bigint", ()))[0][0] for _ in range(2)]
        runs.append((transaction.atomic, ids))
        if not transaction.atomic:
            raise NeedsTransaction
        return ids

    async def run() -> list[int]:
        pool = AsyncPool(create_engine(postgres_url), size=1)
        await pool.open()
        try:
            return await pool.run(two_statements, (), {}, write=True, whole=False)
        finally:
            await pool.close()

    ids = asyncio.run(run())
    (alone, alone_ids), (atomic, atomic_ids) = runs
    assert (alone, atomic) == (False, True)
    assert alone_ids[0] != alone_ids[1]  # a transaction each
    assert atomic_ids[0] == atomic_ids[1] == ids[0]  # one
