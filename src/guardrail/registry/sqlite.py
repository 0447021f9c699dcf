"""SQLite registry store: stdlib sqlite3 on one dedicated thread, WAL, immediate write transactions.

Every call runs on a single worker thread that owns the connection, so the event loop never
blocks on disk and writes in this process are serialised; ``BEGIN IMMEDIATE`` with a busy timeout
serialises writers across processes sharing the file.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import orjson

from ..errors import RegistryUnavailable
from ..stats.model import (
    SAMPLE_COLUMNS,
    Rollup,
    Sample,
    StatsFilter,
    from_sparse,
    merge_histograms,
    to_sparse,
)
from .models import NewVersion, SchemaConfig, SchemaVersion

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_versions (
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    schema TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    PRIMARY KEY (name, version),
    UNIQUE (name, fingerprint)
);
CREATE TABLE IF NOT EXISTS schema_configs (
    name TEXT PRIMARY KEY,
    config TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS stats_rollups (
    minute INTEGER NOT NULL,
    schema TEXT NOT NULL,
    version TEXT NOT NULL,
    model TEXT NOT NULL,
    outcome TEXT NOT NULL,
    count INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    latency TEXT NOT NULL,
    upstream_latency TEXT NOT NULL,
    PRIMARY KEY (minute, schema, version, model, outcome)
);
CREATE TABLE IF NOT EXISTS stats_paths (
    minute INTEGER NOT NULL,
    schema TEXT NOT NULL,
    version TEXT NOT NULL,
    model TEXT NOT NULL,
    outcome TEXT NOT NULL,
    path TEXT NOT NULL,
    keyword TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (minute, schema, version, model, outcome, path, keyword)
);
CREATE TABLE IF NOT EXISTS stats_samples (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    request_id TEXT NOT NULL,
    schema TEXT NOT NULL,
    version TEXT NOT NULL,
    model TEXT NOT NULL,
    outcome TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    errors TEXT NOT NULL,
    output TEXT,
    redaction TEXT NOT NULL,
    digest TEXT
);
CREATE INDEX IF NOT EXISTS stats_samples_by_schema ON stats_samples (schema, version, id);
"""
_COLUMNS = "name, version, schema, fingerprint, description, created_at"


def sqlite_path(url: str) -> str:
    """``sqlite:///relative.db`` -> ``relative.db``; ``sqlite:////abs.db`` -> ``/abs.db``."""
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        raise ValueError(f"not a SQLite URL: {url!r} (expected sqlite:///path.db)")
    return url[len(prefix) :] or ":memory:"


def _row(row: tuple[Any, ...]) -> SchemaVersion:
    name, version, schema, fp, description, created_at = row
    return SchemaVersion(name, version, orjson.loads(schema), fp, description, created_at)


class SQLiteStore:
    def __init__(self, path: str, *, busy_timeout_ms: int = 5000) -> None:
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="guardrail-sqlite")
        self._conn: sqlite3.Connection | None = None

    @classmethod
    def from_url(cls, url: str) -> SQLiteStore:
        return cls(sqlite_path(url))

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def call() -> T:
            if self._conn is None:
                raise RegistryUnavailable("the registry store is not open")
            return fn(self._conn)

        if self._conn is None:
            raise RegistryUnavailable("the registry store is not open")
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, call)
        except sqlite3.Error as exc:
            raise RegistryUnavailable(f"registry store error: {exc}") from None

    async def open(self) -> None:
        def connect() -> None:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path,
                timeout=self.busy_timeout_ms / 1000,
                isolation_level=None,  # explicit BEGIN/COMMIT
                check_same_thread=False,
            )
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.executescript(_SCHEMA)
            self._conn = conn

        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, connect)
        except sqlite3.Error as exc:
            raise RegistryUnavailable(f"cannot open SQLite registry {self.path}: {exc}") from None

    async def close(self) -> None:
        if self._conn is None:
            return

        def disconnect() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await asyncio.get_running_loop().run_in_executor(self._executor, disconnect)
        self._executor.shutdown(wait=True)

    async def ping(self) -> None:
        """Readable and writable: reads the versions table, then takes and drops the write lock
        (waiting a quarter second at most), so a file another process holds locked is unready."""

        def probe(conn: sqlite3.Connection) -> None:
            conn.execute("SELECT 1 FROM schema_versions LIMIT 1").fetchall()
            conn.execute("PRAGMA busy_timeout = 250")
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("ROLLBACK")
            finally:
                conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")

        await self._run(probe)

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in one immediate (write-locked) transaction."""

        def transaction(conn: sqlite3.Connection) -> T:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

        return await self._run(transaction)

    async def add_version(self, new: NewVersion) -> tuple[SchemaVersion, bool]:
        return await self._write(lambda conn: self._add(conn, new))

    def _add(self, conn: sqlite3.Connection, new: NewVersion) -> tuple[SchemaVersion, bool]:
        existing = conn.execute(
            f"SELECT {_COLUMNS} FROM schema_versions WHERE name = ? AND fingerprint = ?",
            (new.name, new.fingerprint),
        ).fetchone()
        if existing is not None:
            return _row(existing), False
        latest_row = conn.execute(
            f"SELECT {_COLUMNS} FROM schema_versions WHERE name = ? ORDER BY version DESC LIMIT 1",
            (new.name,),
        ).fetchone()
        latest = _row(latest_row) if latest_row else None
        new.check(latest, self._config(conn, new.name))
        version = SchemaVersion(
            name=new.name,
            version=(latest.version if latest else 0) + 1,
            schema=new.schema,
            fingerprint=new.fingerprint,
            description=new.description,
            created_at=datetime.now(UTC).isoformat(timespec="milliseconds"),
        )
        conn.execute(
            f"INSERT INTO schema_versions ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
            (
                version.name,
                version.version,
                orjson.dumps(version.schema).decode(),
                version.fingerprint,
                version.description,
                version.created_at,
            ),
        )
        return version, True

    async def get_version(self, name: str, version: int | None) -> SchemaVersion | None:
        def get(conn: sqlite3.Connection) -> SchemaVersion | None:
            if version is None:
                sql = f"SELECT {_COLUMNS} FROM schema_versions WHERE name = ? "
                row = conn.execute(sql + "ORDER BY version DESC LIMIT 1", (name,)).fetchone()
            else:
                row = conn.execute(
                    f"SELECT {_COLUMNS} FROM schema_versions WHERE name = ? AND version = ?",
                    (name, version),
                ).fetchone()
            return _row(row) if row else None

        return await self._run(get)

    async def list_versions(self, name: str) -> list[SchemaVersion]:
        def versions(conn: sqlite3.Connection) -> list[SchemaVersion]:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM schema_versions WHERE name = ? ORDER BY version", (name,)
            ).fetchall()
            return [_row(r) for r in rows]

        return await self._run(versions)

    async def list_latest(self) -> list[tuple[SchemaVersion, int]]:
        def latest(conn: sqlite3.Connection) -> list[tuple[SchemaVersion, int]]:
            rows = conn.execute(
                f"SELECT {', '.join('v.' + c.strip() for c in _COLUMNS.split(','))}, n.count "
                "FROM schema_versions v JOIN (SELECT name, MAX(version) AS latest, "
                "COUNT(*) AS count FROM schema_versions GROUP BY name) n "
                "ON v.name = n.name AND v.version = n.latest ORDER BY v.name"
            ).fetchall()
            return [(_row(r[:6]), r[6]) for r in rows]

        return await self._run(latest)

    async def delete(self, name: str) -> list[int]:
        def delete(conn: sqlite3.Connection) -> list[int]:
            rows = conn.execute(
                "SELECT version FROM schema_versions WHERE name = ? ORDER BY version", (name,)
            ).fetchall()
            conn.execute("DELETE FROM schema_versions WHERE name = ?", (name,))
            conn.execute("DELETE FROM schema_configs WHERE name = ?", (name,))
            return [r[0] for r in rows]

        return await self._write(delete)

    @staticmethod
    def _config(conn: sqlite3.Connection, name: str) -> SchemaConfig:
        row = conn.execute("SELECT config FROM schema_configs WHERE name = ?", (name,)).fetchone()
        return SchemaConfig.from_stored(orjson.loads(row[0]) if row else None)

    async def get_config(self, name: str) -> SchemaConfig:
        return await self._run(lambda conn: self._config(conn, name))

    async def update_config(self, name: str, changes: dict[str, Any]) -> SchemaConfig:
        def update(conn: sqlite3.Connection) -> SchemaConfig:
            merged = self._config(conn, name).merged(changes)
            conn.execute(
                "INSERT INTO schema_configs (name, config) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET config = excluded.config",
                (name, orjson.dumps(merged.stored()).decode()),
            )
            return merged

        return await self._write(update)

    # -- stats -------------------------------------------------------------------------------

    async def write_rollups(self, batch: Sequence[Rollup]) -> None:
        if batch:
            await self._write(lambda conn: _add_rollups(conn, batch))

    async def drop_rollups_before(self, minute: int) -> int:
        def drop(conn: sqlite3.Connection) -> int:
            conn.execute("DELETE FROM stats_paths WHERE minute < ?", (minute,))
            return conn.execute("DELETE FROM stats_rollups WHERE minute < ?", (minute,)).rowcount

        return await self._write(drop)

    async def query_rollups(self, filters: StatsFilter) -> list[Rollup]:
        where, params = _where(filters)

        def query(conn: sqlite3.Connection) -> list[Rollup]:
            paths: dict[tuple[Any, ...], list[tuple[str, str, int]]] = {}
            for *key, path, keyword, count in conn.execute(
                "SELECT minute, schema, version, model, outcome, path, keyword, count "
                f"FROM stats_paths{where}",
                params,
            ):
                paths.setdefault(tuple(key), []).append((path, keyword, count))
            rows = conn.execute(f"SELECT {_ROLLUP_COLUMNS} FROM stats_rollups{where}", params)
            return [_rollup(row, tuple(paths.get(tuple(row[:5]), ()))) for row in rows]

        return await self._run(query)

    async def add_samples(self, samples: Sequence[Sample], *, keep: int) -> None:
        if not samples:
            return

        def add(conn: sqlite3.Connection) -> None:
            conn.executemany(
                f"INSERT INTO stats_samples ({SAMPLE_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [s.row() for s in samples],
            )
            for schema, version in {(s.schema, s.version) for s in samples}:
                conn.execute(
                    "DELETE FROM stats_samples WHERE schema = ? AND version = ? AND id NOT IN "
                    "(SELECT id FROM stats_samples WHERE schema = ? AND version = ? "
                    "ORDER BY id DESC LIMIT ?)",
                    (schema, version, schema, version, keep),
                )

        await self._write(add)

    async def list_samples(
        self, schema: str, version: str | None = None, limit: int = 100
    ) -> list[Sample]:
        sql = f"SELECT {SAMPLE_COLUMNS} FROM stats_samples WHERE schema = ?"
        params: list[Any] = [schema]
        if version is not None:
            sql += " AND version = ?"
            params.append(version)
        sql += " ORDER BY id DESC LIMIT ?"
        params.append(limit)

        def rows(conn: sqlite3.Connection) -> list[Sample]:
            return [_sample(row) for row in conn.execute(sql, params)]

        return await self._run(rows)


_ROLLUP_COLUMNS = (
    "minute, schema, version, model, outcome, count, attempts, prompt_tokens, "
    "completion_tokens, latency, upstream_latency"
)


def _where(filters: StatsFilter) -> tuple[str, list[Any]]:
    """The WHERE clause (with its leading space) and parameters a filter means."""
    clauses: list[str] = []
    params: list[Any] = []
    for column, value in (
        ("schema", filters.schema),
        ("version", filters.version),
        ("model", filters.model),
    ):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    if filters.since is not None:
        clauses.append("minute >= ?")
        params.append(filters.since - filters.since % 60)  # the minute holding ``since``
    if filters.until is not None:
        clauses.append("minute < ?")
        params.append(filters.until)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def _rollup(row: tuple[Any, ...], paths: tuple[tuple[str, str, int], ...]) -> Rollup:
    minute, schema, version, model, outcome, count, attempts, prompt, completion, lat, up = row
    return Rollup(
        minute,
        schema,
        version,
        model,
        outcome,
        count,
        attempts,
        prompt,
        completion,
        from_sparse(orjson.loads(lat)),
        from_sparse(orjson.loads(up)),
        paths,
    )


def _sample(row: tuple[Any, ...]) -> Sample:
    at, request_id, schema, version, model, outcome, attempts, errors, output, redaction, digest = (
        row
    )
    return Sample(
        at,
        request_id,
        schema,
        version,
        model,
        outcome,
        attempts,
        tuple(tuple(e) for e in orjson.loads(errors)),
        output,
        redaction,
        digest,
    )


def _add_rollups(conn: sqlite3.Connection, batch: Sequence[Rollup]) -> None:
    """Add each rollup to its row (read, add, write: the transaction holds the write lock)."""
    for r in batch:
        row = conn.execute(
            "SELECT latency, upstream_latency FROM stats_rollups WHERE minute = ? AND schema = ? "
            "AND version = ? AND model = ? AND outcome = ?",
            r.key,
        ).fetchone()
        latency, upstream = r.latency, r.upstream_latency
        if row is not None:
            latency = tuple(merge_histograms([latency, from_sparse(orjson.loads(row[0]))]))
            upstream = tuple(merge_histograms([upstream, from_sparse(orjson.loads(row[1]))]))
        conn.execute(
            f"INSERT INTO stats_rollups ({_ROLLUP_COLUMNS}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (minute, schema, version, model, outcome) DO UPDATE SET "
            "count = count + excluded.count, attempts = attempts + excluded.attempts, "
            "prompt_tokens = prompt_tokens + excluded.prompt_tokens, "
            "completion_tokens = completion_tokens + excluded.completion_tokens, "
            "latency = excluded.latency, upstream_latency = excluded.upstream_latency",
            (
                *r.key,
                r.count,
                r.attempts,
                r.prompt_tokens,
                r.completion_tokens,
                orjson.dumps(to_sparse(latency)).decode(),
                orjson.dumps(to_sparse(upstream)).decode(),
            ),
        )
        conn.executemany(
            "INSERT INTO stats_paths "
            "(minute, schema, version, model, outcome, path, keyword, count) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT "
            "(minute, schema, version, model, outcome, path, keyword) "
            "DO UPDATE SET count = count + excluded.count",
            [(*r.key, path, keyword, count) for path, keyword, count in r.failing_paths],
        )
