"""PostgreSQL registry store (asyncpg): one database shared by many guardrail instances.

- Start-up applies the versioned migrations in ``migrations/postgres/`` in one transaction under
  an advisory lock, recorded in ``schema_migrations``: N instances starting at once migrate once.
- ``add_version`` and ``delete`` run under a per-name transaction-scoped advisory lock, so the
  latest version, the compatibility check and the insert form one critical section across
  instances; the unique (name, version) and (name, fingerprint) constraints back it up.
- Every write sends ``NOTIFY guardrail_registry, '<name>'`` (delivered on commit). Each instance
  LISTENs on a dedicated connection and tells its watchers which name changed; when that
  connection drops it reconnects, and until it is back it tells them every ``refresh_interval``
  seconds that anything may have changed, so caches fall back to polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg
import orjson

from ..errors import RegistryUnavailable
from ..stats.model import SAMPLE_COLUMNS, Rollup, Sample, StatsFilter
from . import display_url
from .migrations import Migration, MigrationState, migrations
from .models import NewVersion, SchemaConfig, SchemaVersion

log = logging.getLogger("guardrail.registry")

CHANNEL = "guardrail_registry"
# Advisory lock keys: one bigint for migrations, (namespace, hashtext(name)) for names. The two
# key forms never collide in PostgreSQL's lock space.
MIGRATION_LOCK = 0x6775_6172_6472_6C00  # "guardrl\0"
NAME_LOCK_NAMESPACE = 0x4752  # "GR"

LOCAL_LOCK_STRIPES = 64

# What "the database is not reachable / not answering" looks like through asyncpg.
FAILURES: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,  # e.g. a connection left mid-protocol by a drop
)

_COLUMNS = "name, version, schema::text, fingerprint, description, created_at"

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    # A plain connection (the CLI's) or a pooled one (the store's): both run the same queries.
    Connection: TypeAlias = asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]


def _version(row: asyncpg.Record) -> SchemaVersion:
    created: datetime = row["created_at"]
    return SchemaVersion(
        name=row["name"],
        version=row["version"],
        schema=orjson.loads(row["schema"]),
        fingerprint=row["fingerprint"],
        description=row["description"],
        created_at=created.astimezone(UTC).isoformat(timespec="milliseconds"),
    )


def _config(raw: str | None) -> SchemaConfig:
    return SchemaConfig.from_stored(orjson.loads(raw) if raw is not None else None)


async def apply_migrations(conn: Connection) -> list[str]:
    """Apply every migration not yet recorded; returns the ones applied (``0001_registry``).

    One transaction under an advisory lock: a second instance starting at the same moment
    waits, then finds everything recorded and applies nothing."""
    applied: list[str] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version TEXT PRIMARY KEY, name TEXT NOT NULL,"
            " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for migration in migrations("postgres"):
            if migration.version in done:
                continue
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                migration.version,
                migration.name,
            )
            applied.append(f"{migration.version}_{migration.name}")
    return applied


async def migration_status(conn: Connection) -> list[tuple[Migration, datetime | None]]:
    """Every shipped migration with when it was applied (None: pending)."""
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    rows = await conn.fetch("SELECT version, applied_at FROM schema_migrations") if exists else []
    applied = {r["version"]: r["applied_at"] for r in rows}
    return [(m, applied.get(m.version)) for m in migrations("postgres")]


async def migrate_database(dsn: str, *, timeout: float = 10.0) -> list[str]:
    """Connect to ``dsn`` and apply the pending migrations (``guardrail db migrate``)."""
    try:
        conn = await asyncpg.connect(dsn, timeout=timeout)
        try:
            return await apply_migrations(conn)
        finally:
            await conn.close()
    except FAILURES as exc:
        raise RegistryUnavailable(f"cannot migrate {display_url(dsn)}: {exc}") from None


async def migration_status_of(dsn: str, *, timeout: float = 10.0) -> list[MigrationState]:
    """Each shipped migration and when ``dsn``'s database applied it (``guardrail db status``)."""
    try:
        conn = await asyncpg.connect(dsn, timeout=timeout)
        try:
            states = await migration_status(conn)
        finally:
            await conn.close()
    except FAILURES as exc:
        raise RegistryUnavailable(f"cannot read {display_url(dsn)}: {exc}") from None
    return [
        MigrationState(m.version, m.name, at.astimezone(UTC).isoformat() if at else None)
        for m, at in states
    ]


class PostgresStore:
    """The registry in PostgreSQL; see the module docstring for how instances cooperate."""

    def __init__(
        self,
        dsn: str,
        *,
        min_connections: int = 1,
        max_connections: int = 10,
        timeout: float = 5.0,
        refresh_interval: float = 1.0,
        listen: bool = True,
    ) -> None:
        self.dsn = dsn
        self.min_connections = min_connections
        self.max_connections = max_connections
        self.timeout = timeout
        self.refresh_interval = refresh_interval
        self.listen = listen
        self.applied_migrations: list[str] = []
        self._pool: asyncpg.Pool | None = None
        self._listener: asyncio.Task[None] | None = None
        self._watchers: list[Callable[[str | None], None]] = []
        self.listening = asyncio.Event()  # set while the change feed is connected
        # Writes of one name from this instance queue here first, in arrival order (as SQLite's
        # one writer thread orders them), and only then for the database-wide advisory lock.
        self._local_locks = [asyncio.Lock() for _ in range(LOCAL_LOCK_STRIPES)]

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        try:
            self._pool = await asyncpg.create_pool(
                self.dsn,
                min_size=self.min_connections,
                max_size=self.max_connections,
                timeout=self.timeout,  # to connect
                command_timeout=self.timeout,  # per statement: a stalled server is an outage
            )
            # Its own connection, without the pool's statement timeout: a migration (or the wait
            # for another instance's) may take longer than any query should.
            conn = await asyncpg.connect(self.dsn, timeout=self.timeout)
            try:
                self.applied_migrations = await apply_migrations(conn)
            finally:
                await conn.close()
        except FAILURES as exc:
            await self._close_pool()
            raise RegistryUnavailable(f"cannot open {display_url(self.dsn)}: {exc}") from None
        for migration in self.applied_migrations:
            log.info("registry: applied migration %s", migration)
        if self.listen:
            self._listener = asyncio.create_task(self._listen_forever(), name="guardrail-listen")

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        await self._close_pool()

    async def _close_pool(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            await asyncio.wait_for(pool.close(), self.timeout)
        except FAILURES:
            pool.terminate()

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[Connection]:
        """A pooled connection; a database failure becomes RegistryUnavailable (503)."""
        if self._pool is None:
            raise RegistryUnavailable("the registry store is not open")
        try:
            async with self._pool.acquire(timeout=self.timeout) as conn:
                yield conn
        except FAILURES as exc:
            raise RegistryUnavailable(f"registry store error: {exc}") from None

    async def ping(self) -> None:
        async with self._connection() as conn:
            await conn.fetchval("SELECT 1")

    # -- change feed -----------------------------------------------------------------------

    def watch(self, callback: Callable[[str | None], None]) -> None:
        """Call ``callback(name)`` when any instance changes ``name``; ``callback(None)`` when
        changes may have been missed (the feed was down)."""
        self._watchers.append(callback)

    def _changed(self, name: str | None) -> None:
        for callback in self._watchers:
            callback(name)

    def _on_notify(self, conn: object, pid: int, channel: str, payload: object) -> None:
        self._changed(str(payload))

    async def _listen_forever(self) -> None:
        """Keep one LISTEN connection; reconnect when it drops, polling meanwhile."""
        warned = False
        while True:
            try:
                await self._listen_once()
            except FAILURES as exc:
                if not warned or self.listening.is_set():
                    log.warning("registry change feed lost (%s); polling until it is back", exc)
                warned = True
            self.listening.clear()
            self._changed(None)  # changes made while we were not listening
            await asyncio.sleep(self.refresh_interval)

    async def _listen_once(self) -> None:
        """LISTEN until the connection drops (always ends by raising one of FAILURES)."""
        conn = await asyncpg.connect(self.dsn, timeout=self.timeout)
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        try:
            await conn.add_listener(CHANNEL, self._on_notify)
            self._changed(None)  # anything that happened before the LISTEN took effect
            self.listening.set()
            log.info("registry change feed: listening on %s", CHANNEL)
            while not lost.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), self.refresh_interval)
                # A half-open TCP connection raises nothing by itself: probe it.
                await conn.fetchval("SELECT 1", timeout=self.timeout)
            raise ConnectionError("the LISTEN connection was closed")
        finally:
            conn.terminate()

    # -- registry --------------------------------------------------------------------------

    def _local_lock(self, name: str) -> asyncio.Lock:
        return self._local_locks[hash(name) % LOCAL_LOCK_STRIPES]

    async def add_version(self, new: NewVersion) -> tuple[SchemaVersion, bool]:
        async with self._local_lock(new.name), self._connection() as conn, conn.transaction():
            await self._lock_name(conn, new.name)
            row = await conn.fetchrow(
                f"SELECT {_COLUMNS} FROM schema_versions WHERE name = $1 AND fingerprint = $2",
                new.name,
                new.fingerprint,
            )
            if row is not None:
                return _version(row), False
            row = await conn.fetchrow(
                f"SELECT {_COLUMNS} FROM schema_versions WHERE name = $1 "
                "ORDER BY version DESC LIMIT 1",
                new.name,
            )
            latest = _version(row) if row is not None else None
            config = _config(
                await conn.fetchval(
                    "SELECT config::text FROM schema_configs WHERE name = $1", new.name
                )
            )
            new.check(latest, config)  # may raise: the transaction rolls back
            created = datetime.now(UTC)
            version = SchemaVersion(
                name=new.name,
                version=(latest.version if latest else 0) + 1,
                schema=new.schema,
                fingerprint=new.fingerprint,
                description=new.description,
                created_at=created.isoformat(timespec="milliseconds"),
            )
            await conn.execute(
                "INSERT INTO schema_versions (name, version, schema, fingerprint, description,"
                " created_at) VALUES ($1, $2, $3::json, $4, $5, $6)",
                version.name,
                version.version,
                orjson.dumps(version.schema).decode(),
                version.fingerprint,
                version.description,
                created,
            )
            await self._notify(conn, new.name)
            return version, True

    @staticmethod
    async def _lock_name(conn: Connection, name: str) -> None:
        await conn.execute(
            "SELECT pg_advisory_xact_lock($1, hashtext($2))", NAME_LOCK_NAMESPACE, name
        )

    @staticmethod
    async def _notify(conn: Connection, name: str) -> None:
        # Inside the writing transaction: PostgreSQL delivers it on commit, never on rollback.
        await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, name)

    async def get_version(self, name: str, version: int | None) -> SchemaVersion | None:
        async with self._connection() as conn:
            if version is None:
                row = await conn.fetchrow(
                    f"SELECT {_COLUMNS} FROM schema_versions WHERE name = $1 "
                    "ORDER BY version DESC LIMIT 1",
                    name,
                )
            else:
                row = await conn.fetchrow(
                    f"SELECT {_COLUMNS} FROM schema_versions WHERE name = $1 AND version = $2",
                    name,
                    version,
                )
        return _version(row) if row is not None else None

    async def list_versions(self, name: str) -> list[SchemaVersion]:
        async with self._connection() as conn:
            rows = await conn.fetch(
                f"SELECT {_COLUMNS} FROM schema_versions WHERE name = $1 ORDER BY version", name
            )
        return [_version(r) for r in rows]

    async def list_latest(self) -> list[tuple[SchemaVersion, int]]:
        async with self._connection() as conn:
            rows = await conn.fetch(
                f"SELECT DISTINCT ON (name) {_COLUMNS}, count(*) OVER (PARTITION BY name) AS n "
                "FROM schema_versions ORDER BY name, version DESC"
            )
        return [(_version(r), int(r["n"])) for r in rows]

    async def delete(self, name: str) -> list[int]:
        async with self._local_lock(name), self._connection() as conn, conn.transaction():
            await self._lock_name(conn, name)
            rows = await conn.fetch(
                "DELETE FROM schema_versions WHERE name = $1 RETURNING version", name
            )
            await conn.execute("DELETE FROM schema_configs WHERE name = $1", name)
            if rows:
                await self._notify(conn, name)
        return sorted(r["version"] for r in rows)

    async def get_config(self, name: str) -> SchemaConfig:
        async with self._connection() as conn:
            raw = await conn.fetchval(
                "SELECT config::text FROM schema_configs WHERE name = $1", name
            )
        return _config(raw)

    async def update_config(self, name: str, changes: dict[str, Any]) -> SchemaConfig:
        async with self._connection() as conn, conn.transaction():
            await self._lock_name(conn, name)  # read, merge and write as one step
            raw = await conn.fetchval(
                "SELECT config::text FROM schema_configs WHERE name = $1", name
            )
            merged = _config(raw).merged(changes)
            await conn.execute(
                "INSERT INTO schema_configs (name, config) VALUES ($1, $2::jsonb) "
                "ON CONFLICT (name) DO UPDATE SET config = excluded.config",
                name,
                orjson.dumps(merged.stored()).decode(),
            )
            await self._notify(conn, name)
        return merged

    # -- stats -----------------------------------------------------------------------------

    async def write_rollups(self, batch: Sequence[Rollup]) -> None:
        if not batch:
            return
        # Every instance writes its keys in one order, so two batches never deadlock.
        rollups = sorted(batch, key=lambda r: r.key)
        paths = sorted((*r.key, p, k, c) for r in rollups for p, k, c in r.failing_paths)
        async with self._connection() as conn, conn.transaction():
            await conn.executemany(
                _ADD_ROLLUP,
                [
                    (
                        *r.key,
                        r.count,
                        r.attempts,
                        r.prompt_tokens,
                        r.completion_tokens,
                        list(r.latency),
                        list(r.upstream_latency),
                    )
                    for r in rollups
                ],
            )
            if paths:
                await conn.executemany(_ADD_PATH, paths)

    async def query_rollups(self, filters: StatsFilter) -> list[Rollup]:
        where, params = _where(filters)
        async with self._connection() as conn:
            path_rows = await conn.fetch(
                "SELECT minute, schema, version, model, outcome, path, keyword, count "
                f"FROM stats_paths{where}",
                *params,
            )
            rows = await conn.fetch(f"SELECT {_ROLLUP_COLUMNS} FROM stats_rollups{where}", *params)
        paths: dict[tuple[object, ...], list[tuple[str, str, int]]] = {}
        for p in path_rows:
            paths.setdefault(tuple(p[:5]), []).append((p["path"], p["keyword"], p["count"]))
        return [
            Rollup(
                minute=row["minute"],
                schema=row["schema"],
                version=row["version"],
                model=row["model"],
                outcome=row["outcome"],
                count=row["count"],
                attempts=row["attempts"],
                prompt_tokens=row["prompt_tokens"],
                completion_tokens=row["completion_tokens"],
                latency=tuple(row["latency"]),
                upstream_latency=tuple(row["upstream_latency"]),
                failing_paths=tuple(paths.get(tuple(row[:5]), ())),
            )
            for row in rows
        ]

    async def drop_rollups_before(self, minute: int) -> int:
        async with self._connection() as conn, conn.transaction():
            await conn.execute("DELETE FROM stats_paths WHERE minute < $1", minute)
            status = await conn.execute("DELETE FROM stats_rollups WHERE minute < $1", minute)
        return int(status.split()[-1])  # "DELETE n"

    async def add_samples(self, samples: Sequence[Sample], *, keep: int) -> None:
        if not samples:
            return
        async with self._connection() as conn, conn.transaction():
            await conn.executemany(
                f"INSERT INTO stats_samples ({SAMPLE_COLUMNS}) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9, $10, $11)",
                [s.row() for s in samples],
            )
            for schema, version in sorted({(s.schema, s.version) for s in samples}):
                await conn.execute(
                    "DELETE FROM stats_samples WHERE schema = $1 AND version = $2 AND id NOT IN "
                    "(SELECT id FROM stats_samples WHERE schema = $1 AND version = $2 "
                    "ORDER BY id DESC LIMIT $3)",
                    schema,
                    version,
                    keep,
                )

    async def list_samples(
        self, schema: str, version: str | None = None, limit: int = 100
    ) -> list[Sample]:
        async with self._connection() as conn:
            rows = await conn.fetch(
                f"SELECT {_SAMPLE_READ} FROM stats_samples "
                "WHERE schema = $1 AND ($2::text IS NULL OR version = $2) "
                "ORDER BY id DESC LIMIT $3",
                schema,
                version,
                limit,
            )
        return [
            Sample(
                at=row["at"],
                request_id=row["request_id"],
                schema=row["schema"],
                version=row["version"],
                model=row["model"],
                outcome=row["outcome"],
                attempts=row["attempts"],
                errors=tuple(tuple(e) for e in orjson.loads(row["errors"])),
                output=row["output"],
                redaction=row["redaction"],
                digest=row["digest"],
            )
            for row in rows
        ]


_ROLLUP_COLUMNS = (
    "minute, schema, version, model, outcome, count, attempts, prompt_tokens, "
    "completion_tokens, latency, upstream_latency"
)
_SAMPLE_READ = SAMPLE_COLUMNS.replace("errors", "errors::text AS errors")
# Adding to a row is one statement: the row lock makes concurrent adds from instances exact.
_ADD_ROLLUP = f"""
INSERT INTO stats_rollups AS r ({_ROLLUP_COLUMNS})
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
ON CONFLICT (minute, schema, version, model, outcome) DO UPDATE SET
    count = r.count + excluded.count,
    attempts = r.attempts + excluded.attempts,
    prompt_tokens = r.prompt_tokens + excluded.prompt_tokens,
    completion_tokens = r.completion_tokens + excluded.completion_tokens,
    latency = guardrail_add_buckets(r.latency, excluded.latency),
    upstream_latency = guardrail_add_buckets(r.upstream_latency, excluded.upstream_latency)
"""
_ADD_PATH = """
INSERT INTO stats_paths AS p (minute, schema, version, model, outcome, path, keyword, count)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (minute, schema, version, model, outcome, path, keyword)
DO UPDATE SET count = p.count + excluded.count
"""


def _where(filters: StatsFilter) -> tuple[str, list[object]]:
    """The WHERE clause (with its leading space) and parameters a filter means."""
    clauses: list[str] = []
    params: list[object] = []
    bounds = (
        ("schema = ", filters.schema),
        ("version = ", filters.version),
        ("model = ", filters.model),
        # ``since`` counts the whole minute it falls in; ``until`` is exclusive.
        ("minute >= ", None if filters.since is None else filters.since - filters.since % 60),
        ("minute < ", filters.until),
    )
    for clause, value in bounds:
        if value is not None:
            params.append(value)
            clauses.append(f"{clause}${len(params)}")
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params
