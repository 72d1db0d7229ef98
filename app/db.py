"""Engines and sessions: SQLite tuned for concurrent writers, PostgreSQL through psycopg 3."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

from app.driver import (
    POSTGRES_SETTINGS,
    AsyncPool,
    QueryFunction,
    Transaction,
    add_writer_lock,
    run_blocking,
    run_to_end,
    transact_blocking,
    writer_lock,
)
from app.settings import Settings

Params = ParamSpec("Params")
Result = TypeVar("Result")


def make_engine(settings: Settings) -> Engine:
    """Build the engine for `settings.resolved_database_url`; creates the data folder for SQLite."""
    url = settings.resolved_database_url
    if url.startswith("sqlite"):
        return _make_sqlite_engine(url, settings)
    settings_option = " ".join(f"-c {name}={value}" for name, value in POSTGRES_SETTINGS.items())
    options = {"options": settings_option} if url.startswith("postgresql+psycopg") else {}
    engine = create_engine(
        url, pool_size=settings.db_pool_size, max_overflow=settings.db_pool_size, connect_args=options
    )
    _ping_after_idle(engine)
    return engine


# A pooled connection idle this long is pinged before use (it may have been cut by a database restart).
IDLE_PING_SECONDS = 5.0


def _ping_after_idle(engine: Engine) -> None:
    """SQLAlchemy's `pool_pre_ping` pings on every checkout: one more round trip per request, about a fifth of
    a lease's time on PostgreSQL here. Busy connections were just used, so only idle ones are pinged; a
    connection cut while busy fails one request, and SQLAlchemy then replaces the whole pool."""

    @event.listens_for(engine, "checkin")
    def _remember_idle_since(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < IDLE_PING_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as error:
            raise DisconnectionError from error  # the pool retries with a fresh connection


def _make_sqlite_engine(url: str, settings: Settings) -> Engine:
    if ":memory:" not in url and url != "sqlite://":
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": settings.sqlite_busy_timeout_ms / 1000},
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_size,
    )
    busy_timeout_ms = settings.sqlite_busy_timeout_ms

    @event.listens_for(engine, "connect")
    def _configure_connection(dbapi_connection: Any, _record: Any) -> None:
        # The sqlite3 module's own transaction handling would BEGIN lazily (DEFERRED) on the first write;
        # we switch it off and emit BEGIN ourselves so write transactions can be BEGIN IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across app crashes, fast commits
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")

    add_writer_lock(engine)
    return engine


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False, autoflush=False)


def is_sqlite(session: Session) -> bool:
    return session.get_bind().dialect.name == "sqlite"


def _end_read_transaction(session: Session, caller: str) -> None:
    """End the read transaction a session may still have open, before a write transaction of its own."""
    if session.in_transaction():
        if session.new or session.dirty or session.deleted:
            raise RuntimeError(f"{caller} needs a session without pending changes")
        session.rollback()


@contextmanager
def write_transaction(session: Session) -> Iterator[Session]:
    """Run a read-then-write unit in its own transaction and commit it.

    On SQLite the transaction starts with BEGIN IMMEDIATE (a deferred one that reads, then writes fails with
    "database is locked" when another writer committed meanwhile, and no busy timeout retries it), and writers
    of this process queue on a lock instead of sleeping in SQLite's busy handler, which keeps tail latency low.
    On PostgreSQL callers lock rows themselves (FOR UPDATE [SKIP LOCKED]). Any read transaction still open on
    the session is ended first.
    """
    _end_read_transaction(session, "write_transaction")
    engine = session.get_bind()
    lock = writer_lock(engine) if isinstance(engine, Engine) else None
    with lock if lock is not None else nullcontext():
        if lock is not None:
            session.connection(execution_options={"sqlite_begin": "IMMEDIATE"})
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def transact_in_session(
    session: Session, function: QueryFunction[Params, Result], /, *args: Params.args, **kwargs: Params.kwargs
) -> Result:
    """app.driver.transact_blocking on the session's engine, for synchronous callers of a hot-path query function.
    Any read transaction still open on the session is ended first (on SQLite it would hold off the writer)."""
    _end_read_transaction(session, "transact_in_session")
    engine = session.get_bind()
    assert isinstance(engine, Engine)
    return transact_blocking(engine, function, *args, **kwargs)


def blocking_twin(function: QueryFunction[Params, Result]) -> Callable[Concatenate[Session, Params], Result]:
    """`function`'s twin for synchronous callers (the worker's synthetic teacher): the same arguments after a
    session instead of the transaction, run in a transaction of its own (transact_in_session)."""

    def twin(session: Session, /, *args: Params.args, **kwargs: Params.kwargs) -> Result:
        return transact_in_session(session, function, *args, **kwargs)

    twin.__doc__ = f"{function.__name__} for synchronous callers, in a transaction of its own (app.db.blocking_twin)."
    return twin


def read_in_session(
    session: Session, function: QueryFunction[Params, Result], /, *args: Params.args, **kwargs: Params.kwargs
) -> Result:
    """A driver query function that only reads, in the session's own transaction (left open, as a query leaves
    it), for synchronous callers."""
    connection = session.connection()
    transaction = Transaction(connection.dialect, connection.connection.cursor())
    return run_to_end(function(transaction, *args, **kwargs))


def ping(session: Session) -> None:
    """Raise if the database does not answer."""
    session.execute(text("SELECT 1")).scalar_one()


class DatabaseRunner:
    """Runs the (synchronous) data-layer functions for `async def` routes without stalling the event loop.

    PostgreSQL answers over a socket: a call there runs on a thread pool of the runner's own, one thread per
    pooled connection, so the loop serves other requests while it waits. A pool of its own rather than the
    framework's 40 threads: few threads convoy less on the GIL, and a hop costs far less than a round trip.
    SQLite answers in-process in a fraction of a millisecond, less than the hop to a thread costs, so its calls
    run inline (its writers queue on a lock anyway, see write_transaction).

    Each call runs in a session of its own, closed at its end, its connection back in the pool: a request that
    held one while waiting for a thread could leave every thread waiting for a connection. Loaded rows stay
    readable (closing detaches them, it does not expire them).

    The lease and label paths (`transact`, `write`) and the auth cache's misses (`read`) run on the driver
    (app.driver): inline on SQLite, and on PostgreSQL on asynchronous connections while the app's lifespan has
    opened them (`open`), else on the thread pool.
    """

    def __init__(self, session_factory: sessionmaker[Session], threads: int) -> None:
        self._session_factory = session_factory
        self._engine: Engine = session_factory.kw["bind"]
        self.dialect: str = self._engine.dialect.name
        inline = self.dialect == "sqlite"
        self._executor = None if inline else ThreadPoolExecutor(threads, thread_name_prefix="database")
        self._async_pool = None if inline else AsyncPool(self._engine, threads)

    async def run(
        self,
        function: Callable[Concatenate[Session, Params], Result],
        /,
        *args: Params.args,
        **kwargs: Params.kwargs,
    ) -> Result:
        """`function(session, *args, **kwargs)` in a session of its own, awaited; the session is closed afterwards."""
        call = functools.partial(_call_in_session, self._session_factory, function, *args, **kwargs)
        return await self._off_loop(call)

    async def transact(
        self, function: QueryFunction[Params, Result], /, *args: Params.args, **kwargs: Params.kwargs
    ) -> Result:
        """`function(transaction, *args, **kwargs)` in a write transaction on the driver (see app.driver), awaited."""
        return await self._on_driver(function, args, kwargs, write=True)

    async def write(
        self, function: QueryFunction[Params, Result], /, *args: Params.args, **kwargs: Params.kwargs
    ) -> Result:
        """As transact, for a function whose every write is one statement and that raises NeedsTransaction where
        it needs more (app.driver.Transaction.atomic): on PostgreSQL's asynchronous connections its statements
        run without BEGIN and COMMIT, two round trips less; elsewhere, as transact."""
        return await self._on_driver(function, args, kwargs, write=True, whole=False)

    async def read(
        self, function: QueryFunction[Params, Result], /, *args: Params.args, **kwargs: Params.kwargs
    ) -> Result:
        """As transact, for a function that only reads (app.driver.run_blocking: no writer lock on SQLite)."""
        return await self._on_driver(function, args, kwargs, write=False)

    async def _on_driver(
        self, function: QueryFunction[..., Result], args: Any, kwargs: Any, *, write: bool, whole: bool = True
    ) -> Result:
        pool = self._async_pool
        if pool is not None and pool.serves_running_loop():
            return await pool.run(function, args, kwargs, write=write, whole=whole)
        call = functools.partial(run_blocking, self._engine, function, args, kwargs, write=write)
        return await self._off_loop(call)

    async def _off_loop(self, call: Callable[[], Result]) -> Result:
        """`call()` inline on SQLite, on the runner's thread pool on PostgreSQL."""
        if self._executor is None:
            return call()
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    async def open(self) -> None:
        """Open the asynchronous connections for requests served by the running event loop (PostgreSQL)."""
        if self._async_pool is not None:
            await self._async_pool.open()

    async def aclose(self) -> None:
        if self._async_pool is not None:
            await self._async_pool.close()

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)


def _call_in_session(
    session_factory: sessionmaker[Session], function: Callable[..., Result], *args: Any, **kwargs: Any
) -> Result:
    with session_factory() as session:
        return function(session, *args, **kwargs)
