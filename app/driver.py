"""The raters' hot paths (lease, label) on the database driver itself, blocking or asynchronous.

SQLAlchemy's execution of a statement (its execution context, events, result wrapping), and a Session's
transaction around it, cost about four times what SQLite spends running the statement (60 against 13 µs per
indexed SELECT, measured here): most of a lease's server time. So the hot paths run Core statements that
SQLAlchemy compiled once per dialect, driver and parameter shape (`Prepared`), with the column types' own bind
and result processors, so what they write and read is what the ORM writes and reads.

The query functions are written once, as coroutines that take a transaction (`async def lease_in(transaction,
...)` in app.crud), and run two ways:
- blocking (`transact_blocking`): on SQLite, whose calls answer in-process, and for synchronous callers (the
  worker's synthetic teacher); the coroutine never suspends, so `run_to_end` drives it without an event loop;
- asynchronous on PostgreSQL (`AsyncPool`, asyncpg): a round trip suspends the request, not the event loop,
  and no thread pool is involved.

Driver errors come out as SQLAlchemy's exception classes (IntegrityError, DBAPIError), marked
`connection_invalidated` when the database cut the connection, as an ORM session would raise them.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import weakref
from collections.abc import Callable, Coroutine, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, TypeVar

import asyncpg
from sqlalchemy import Engine
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.sql import Executable

Params = ParamSpec("Params")
Result = TypeVar("Result")

# Settings of every PostgreSQL connection. Generic plans for prepared statements: by default PostgreSQL re-plans a
# prepared statement whenever it guesses a custom plan cheaper, and planning the lease's pick took 2.4 ms against
# 0.4 ms to run it (measured here).
POSTGRES_SETTINGS = {"plan_cache_mode": "force_generic_plan"}

# And of the hot paths' asynchronous connections: no sequential scans. Their statements all find their rows by
# index, but a generic plan is made from the statistics of when it was first prepared and kept for the
# connection's life. Prepared while the labels table was empty, it scanned the whole table for every label check
# from then on; and the leases table stays small in live rows while a label deletes its lease, so its dead rows
# outnumber the live ones until vacuum, and a sequential scan reads them all. With the scans, PostgreSQL spent
# 1.3 cores on 230 labels/s from 100 raters; without, 0.8 cores on 390 labels/s (bench/api_load.py, measured here).
HOT_PATH_SETTINGS = {**POSTGRES_SETTINGS, "enable_seqscan": "off"}

# Per SQLite engine, the in-process lock that queues writers (see app.db.write_transaction).
_write_locks: weakref.WeakKeyDictionary[Engine, threading.Lock] = weakref.WeakKeyDictionary()


def writer_lock(engine: Engine) -> threading.Lock | None:
    """The lock this process's writers to an SQLite database queue on (see app.db.write_transaction)."""
    return _write_locks.get(engine)


def add_writer_lock(engine: Engine) -> None:
    _write_locks[engine] = threading.Lock()


@dataclass(frozen=True)
class _Form:
    """A statement as the driver runs it, for one dialect and one count of values per expanding parameter."""

    sql: str
    positions: Sequence[str] | None  # parameter names in order for a positional driver (SQLite); None: by name
    defaults: Mapping[str, Any]  # values compiled into the statement (literals, LIMIT 1)
    expansion: Mapping[str, Sequence[str]]  # an expanding parameter -> the names its values take
    bind_processors: Mapping[str, Callable[[Any], Any]]
    result_processors: Sequence[Callable[[Any], Any] | None]
    row_type: type[tuple[Any, ...]]


class Prepared:
    """A Core statement, compiled on first use per dialect and parameter shape, run on a driver transaction."""

    def __init__(self, statement: Executable) -> None:
        self.statement = statement
        self._compiled: dict[tuple[str, str], tuple[Any, list[str]]] = {}  # by dialect and driver: expanding names
        self._forms: dict[tuple[str, str, tuple[int, ...]], _Form] = {}

    async def rows(self, transaction: Transaction, params: Mapping[str, Any]) -> list[Any]:
        """Every row the statement returns, as named tuples (columns by their labels)."""
        form = self._form(transaction.dialect, params)
        rows = await transaction.execute(form.sql, _driver_params(form, params))
        processors = form.result_processors
        return [
            form.row_type(
                *(value if process is None else process(value) for value, process in zip(row, processors, strict=True))
            )
            for row in rows
        ]

    async def first(self, transaction: Transaction, params: Mapping[str, Any]) -> Any:
        """The first row, or None."""
        rows = await self.rows(transaction, params)
        return rows[0] if rows else None

    async def scalar(self, transaction: Transaction, params: Mapping[str, Any]) -> Any:
        """The first column of the first row, or None."""
        row = await self.first(transaction, params)
        return None if row is None else row[0]

    async def run(self, transaction: Transaction, params: Mapping[str, Any]) -> None:
        """Run a statement that returns no rows."""
        form = self._form(transaction.dialect, params)
        await transaction.execute(form.sql, _driver_params(form, params))

    def _form(self, dialect: Dialect, params: Mapping[str, Any]) -> _Form:
        driver = (dialect.name, dialect.driver)
        if driver not in self._compiled:
            compiled = self.statement.compile(dialect=dialect)  # type: ignore[attr-defined]
            self._compiled[driver] = compiled, sorted(name for name, bind in compiled.binds.items() if bind.expanding)
        compiled, expanding = self._compiled[driver]
        key = (*driver, tuple(len(params[name]) for name in expanding))
        form = self._forms.get(key)
        if form is None:
            form = self._forms[key] = _make_form(self.statement, compiled, dialect, params, expanding)
        return form


def _make_form(
    statement: Any, compiled: Any, dialect: Dialect, params: Mapping[str, Any], expanding: list[str]
) -> _Form:
    state = compiled.construct_expanded_state(dict(params))
    required = {name for name, bind in compiled.binds.items() if bind.required}
    expanded = {name for names in state.parameter_expansion.values() for name in names}
    if hasattr(statement, "selected_columns"):
        columns = [(column.key, column.type) for column in statement.selected_columns]
    else:
        columns = [(column["name"], column["type"]) for column in statement.returning_column_descriptions]
    return _Form(
        sql=state.statement,
        positions=state.positiontup,
        defaults={name: value for name, value in state.parameters.items() if name not in required | expanded},
        expansion={name: state.parameter_expansion[name] for name in expanding},
        bind_processors=_bind_processors(compiled, dialect, state),
        result_processors=[type_.dialect_impl(dialect).result_processor(dialect, None) for _name, type_ in columns],
        row_type=collections.namedtuple("Row", [name for name, _type in columns], rename=True),  # type: ignore[misc]
    )


def _bind_processors(compiled: Any, dialect: Dialect, state: Any) -> dict[str, Callable[[Any], Any]]:
    """Each parameter's processor (as SQLAlchemy stores a datetime in SQLite), by the names the driver sees."""
    processors = {}
    for name, bind in compiled.binds.items():
        process = bind.type.dialect_impl(dialect).bind_processor(dialect)
        for target in state.parameter_expansion.get(name, [name]):
            if process is not None and target in state.parameters:
                processors[target] = process
    return processors


def _driver_params(form: _Form, params: Mapping[str, Any]) -> Any:
    values = {**form.defaults, **params}
    for name, names in form.expansion.items():
        values.update(zip(names, values.pop(name), strict=True))
    for name, process in form.bind_processors.items():
        values[name] = process(values[name])
    if form.positions is not None:
        return tuple(values[name] for name in form.positions)
    return values


class NeedsTransaction(Exception):
    """Raised by a query function that runs statement by statement (`Transaction.atomic` False) when it finds it
    needs its statements in one transaction after all: the runner runs it again in one (AsyncPool.run)."""


class Transaction:
    """One transaction on a DBAPI cursor: `execute` returns the rows, if the statement returns any.

    `atomic`: whether the statements run in one transaction. False only where a runner was asked to run a
    function's statements one by one, each committed on its own (DatabaseRunner.write on PostgreSQL's
    asynchronous connections); such a function raises NeedsTransaction where one statement is not enough.
    """

    def __init__(self, dialect: Dialect, cursor: Any, atomic: bool = True) -> None:
        self.dialect = dialect
        self._cursor = cursor
        self.atomic = atomic

    async def execute(self, sql: str, params: Any) -> list[Any]:
        self._cursor.execute(sql, params)
        return self._cursor.fetchall() if self._cursor.description else []


class AsyncTransaction(Transaction):
    """A transaction on an asyncpg connection (its `cursor` is the connection itself)."""

    async def execute(self, sql: str, params: Any) -> list[Any]:
        return await self._cursor.fetch(sql, *params)  # type: ignore[no-any-return]


def run_to_end(coroutine: Coroutine[Any, Any, Result]) -> Result:
    """The result of a coroutine that never suspends (one on a blocking transaction), without an event loop."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coroutine.close()
    raise RuntimeError("a query on a blocking transaction suspended")


QueryFunction = Callable[Concatenate[Transaction, Params], Coroutine[Any, Any, Result]]


def transact_blocking(
    engine: Engine, function: QueryFunction[Params, Result], /, *args: Params.args, **kwargs: Params.kwargs
) -> Result:
    """`function(transaction, ...)` in a read-then-write transaction on a pooled connection, committed at the end.

    Like app.db.write_transaction: on SQLite it starts with BEGIN IMMEDIATE behind this process's lock for
    the database's writers; on PostgreSQL the statements lock rows themselves.
    """
    return run_blocking(engine, function, args, kwargs, write=True)


def run_blocking(
    engine: Engine, function: QueryFunction[..., Result], args: Any, kwargs: Any, *, write: bool
) -> Result:
    """transact_blocking, or with `write` False a function that only reads: then no writer lock and no BEGIN
    IMMEDIATE on SQLite, so it never waits behind a writer (WAL readers don't).

    Run once more in a new transaction when the first raised IntegrityError: a concurrent request committed
    between its checks and its write, and asked again the checks see that request's rows.
    """
    try:
        return _run_blocking_once(engine, function, args, kwargs, write)
    except IntegrityError:
        return _run_blocking_once(engine, function, args, kwargs, write)


def _run_blocking_once(
    engine: Engine, function: QueryFunction[..., Result], args: Any, kwargs: Any, write: bool
) -> Result:
    dialect = engine.dialect
    lock = writer_lock(engine) if write else None
    connection = engine.raw_connection()  # checked out of the pool (an idle one is pinged first)
    try:
        with lock if lock is not None else nullcontext():
            transaction = Transaction(dialect, connection.cursor())
            try:
                if lock is not None:
                    run_to_end(transaction.execute("BEGIN IMMEDIATE", ()))
                result = run_to_end(function(transaction, *args, **kwargs))
                connection.commit()
                return result
            except dialect.loaded_dbapi.Error as error:
                disconnected = dialect.is_disconnect(error, connection.dbapi_connection, None)
                if disconnected:
                    connection.invalidate(error)
                else:
                    connection.rollback()
                raise _sqlalchemy_error(dialect, error, disconnected) from error
            except BaseException:
                connection.rollback()
                raise
    finally:
        connection.close()  # back to the pool


def _sqlalchemy_error(dialect: Dialect, error: Exception, disconnected: bool) -> BaseException:
    return DBAPIError.instance(
        None, None, error, dialect.loaded_dbapi.Error, connection_invalidated=disconnected, dialect=dialect
    )


# asyncpg's errors for a connection the database or the network ended.
_DISCONNECTS = (
    OSError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.AdminShutdownError,  # the server ended it (pg_terminate_backend, a restart)
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,
)


class AsyncPool:
    """Asynchronous PostgreSQL connections (asyncpg) for the hot paths, one pool per event loop.

    asyncpg rather than psycopg's async connections: a three-statement transaction cost 0.31 ms of CPU against
    0.50 ms, 50 at a time (measured here), and the hot paths' statements are SQLAlchemy's, compiled for it.
    The app's lifespan opens a pool in the loop that serves its requests and closes it at the end (a test that
    runs two clients of one app has two loops, and a pool serves only the loop it was opened in); `run` runs a
    query function on one of the running loop's connections. No ping before use, unlike
    the engine's pool (app.db): the event loop reads every idle connection's socket, so asyncpg sees one the
    database cut as closed, and the pool opens a fresh one in its place.
    """

    def __init__(self, engine: Engine, size: int) -> None:
        from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg

        self.dialect = PGDialect_asyncpg()  # compiles the statements ($1 parameters); runs nothing itself
        self._size = size
        self._dsn = make_url(engine.url).set(drivername="postgresql").render_as_string(hide_password=False)
        self._pools: dict[asyncio.AbstractEventLoop, Any] = {}

    def serves_running_loop(self) -> bool:
        try:
            return asyncio.get_running_loop() in self._pools
        except RuntimeError:
            return False

    async def open(self) -> None:
        self._pools[asyncio.get_running_loop()] = await asyncpg.create_pool(
            self._dsn,
            min_size=1,
            max_size=self._size,
            server_settings=HOT_PATH_SETTINGS,
            reset=_keep_session_state,
        )

    async def close(self) -> None:
        pool = self._pools.pop(asyncio.get_running_loop(), None)
        if pool is not None:
            await pool.close()

    async def run(
        self,
        function: QueryFunction[..., Result],
        args: Any,
        kwargs: Any,
        *,
        write: bool,
        whole: bool = True,
        retry: bool = True,
    ) -> Result:
        """As run_blocking, on an asynchronous connection of the running loop's pool: with `write`, in a
        transaction (the statements lock rows themselves; one more try after an IntegrityError); without, each
        statement on its own (no BEGIN and COMMIT round trips). With `write` but not `whole`, each statement on
        its own too, until the function raises NeedsTransaction: then it runs again in a transaction."""
        try:
            return await self._run_once(function, args, kwargs, atomic=write and whole)
        except NeedsTransaction:
            return await self.run(function, args, kwargs, write=write, retry=retry)
        except IntegrityError:
            if not retry:
                raise
            return await self.run(function, args, kwargs, write=write, whole=whole, retry=False)

    async def _run_once(self, function: QueryFunction[..., Result], args: Any, kwargs: Any, atomic: bool) -> Result:
        pool = self._pools[asyncio.get_running_loop()]
        connection = await pool.acquire()
        try:
            async with connection.transaction() if atomic else nullcontext():
                return await function(AsyncTransaction(self.dialect, connection, atomic), *args, **kwargs)
        except asyncpg.IntegrityConstraintViolationError as error:
            raise IntegrityError(None, None, error) from error
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as error:
            cut = connection.is_closed() or isinstance(error, _DISCONNECTS)
            if cut:
                connection.terminate()  # not handed out again: the pool opens a fresh one in its place
            raise DBAPIError(None, None, error, connection_invalidated=cut) from error
        finally:
            await pool.release(connection)  # a closed one is replaced by a fresh one on a later acquire


async def _keep_session_state(_connection: Any) -> None:
    """Nothing to reset when a connection goes back to the pool: the hot paths set no session state, and asyncpg's
    default (RESET ALL and friends) would cost a round trip per request."""
