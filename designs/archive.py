"""The archive: the store of everything discovered.

One archive per evolution run. It holds

- designs: a unit tree (stored as an artifact, referenced by hash), its
  fingerprint, mode ('seed', 'import', 'mutation', 'crossover', 'scratch'),
  status, family, proposal, reviews, free-form meta, and its parents (lineage);
- verifications: one row per (design, rung, seed, corpus, tokenizer) with the
  metrics, a curves artifact, hardware, wall time and the config used;
- costs: tokens, dollars and compute seconds per agent role;
- events: an append-only log of what happened.

Usage::

    with Archive.open("runs/r1") as archive:          # SQLite, runs/r1/archive.db
        archive.record_design("gpt2", tree.to_dict(), tree.fingerprint(),
                              mode="seed", status="seed")
        tree = UnitTree.from_dict(archive.load_tree_json("gpt2"))
        curves = archive.artifacts.put_json({"loss": [...]})
        archive.record_verification("gpt2", rung="14M", seed=0, corpus_fp=...,
                                    tokenizer_fp=..., metrics={...},
                                    curves_hash=curves, wall_time_s=61.0)

    Archive.open("postgresql+psycopg://host/db", artifacts_dir="/shared/artifacts")

Why it is built this way: a run is killed and resumed, and several workers
(processes, or machines sharing PostgreSQL) write at once. So every write is
one transaction, and every write is idempotent: designs are keyed by their
immutable name, verifications by what they measured, costs and events by a
key the caller chooses (an LLM call id, say). Doing the same write twice,
or racing another process to it, leaves one row. Artifacts are written before
the rows that name them, so a row never points at a missing file.

Reads return frozen dataclasses; callers never see a session. Big things go in
`archive.artifacts` (designs/artifacts.py), content-addressed files whose
hashes the rows carry.

Schema changes: bump SCHEMA_VERSION, change the models, and register
``MIGRATIONS[new_version] = fn`` where ``fn(connection)`` brings a database of
version ``new_version - 1`` up to ``new_version`` (ALTER TABLE ...). Opening an
archive runs the missing migrations in order, in one transaction. New archives
are created from the models directly, so v1 (the initial schema) has no
migration.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Connection,
    DateTime,
    Engine,
    ForeignKey,
    String,
    TypeDecorator,
    UniqueConstraint,
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from designs.artifacts import ArtifactStore

SCHEMA_VERSION = 1
# version -> function(connection) that upgrades a database from version - 1.
MIGRATIONS: dict[int, Callable[[Connection], None]] = {}

MODES = ("seed", "import", "mutation", "crossover", "scratch")
# Statuses in use; not enforced, so that new stages need no schema change.
STATUSES = ("seed", "imported", "proposed", "implemented", "failed", "verified", "rejected")

SQLITE_BUSY_TIMEOUT_S = 30.0  # how long a writer waits for another process's lock
_PG_SCHEMA_LOCK = 0x67656E65  # advisory lock id: serializes concurrent schema setup


class ArchiveError(Exception):
    """The archive cannot do what was asked (conflict, version, missing data)."""


class UnknownDesign(ArchiveError, KeyError):
    """No design of that name; the message suggests close names."""

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return str(self.args[0])


# ---------------------------------------------------------------------------
# What readers get back


@dataclasses.dataclass(frozen=True)
class DesignRecord:
    name: str
    fingerprint: str
    tree_hash: str  # artifact hash of the tree JSON; see Archive.load_tree_json
    family: str | None
    mode: str
    status: str
    parents: tuple[str, ...]  # in the order given when recorded
    proposal: Any
    reviews: list[Any]
    meta: dict[str, Any]
    created_at: datetime
    updated_at: datetime


@dataclasses.dataclass(frozen=True)
class VerificationRecord:
    id: int
    design: str
    rung: str
    seed: int
    corpus_fp: str
    tokenizer_fp: str
    metrics: dict[str, Any]
    curves_hash: str | None
    hardware: dict[str, Any]
    wall_time_s: float
    config: dict[str, Any]
    created_at: datetime


@dataclasses.dataclass(frozen=True)
class CostRecord:
    key: str
    design: str | None
    role: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    dollars: float
    compute_s: float
    created_at: datetime


@dataclasses.dataclass(frozen=True)
class EventRecord:
    key: str
    kind: str
    design: str | None
    payload: Any
    created_at: datetime


# ---------------------------------------------------------------------------
# Tables

_JSON = JSON().with_variant(JSONB(), "postgresql")


class _UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: _UTCDateTime, str: String}


class SchemaMeta(Base):
    """One row: which schema version the database has, and who wrote it."""

    __tablename__ = "schema_meta"
    id: Mapped[int] = mapped_column(primary_key=True)
    schema_version: Mapped[int]
    genesys_version: Mapped[str]
    written_at: Mapped[datetime]


class Design(Base):
    __tablename__ = "designs"
    name: Mapped[str] = mapped_column(primary_key=True)
    fingerprint: Mapped[str] = mapped_column(index=True)
    tree_hash: Mapped[str]
    family: Mapped[str | None]
    mode: Mapped[str]
    status: Mapped[str] = mapped_column(index=True)
    proposal: Mapped[Any] = mapped_column(_JSON, nullable=True)
    reviews: Mapped[list[Any]] = mapped_column(_JSON)
    meta: Mapped[dict[str, Any]] = mapped_column(_JSON)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    lineage: Mapped[list[Lineage]] = relationship(
        foreign_keys="Lineage.child", order_by="Lineage.position", lazy="selectin"
    )

    @property
    def parents(self) -> tuple[str, ...]:
        return tuple(link.parent for link in self.lineage)


class Lineage(Base):
    __tablename__ = "lineage"
    child: Mapped[str] = mapped_column(ForeignKey("designs.name"), primary_key=True)
    parent: Mapped[str] = mapped_column(ForeignKey("designs.name"), primary_key=True, index=True)
    position: Mapped[int]


class Verification(Base):
    __tablename__ = "verifications"
    # One measurement per design, rung, seed and data: re-running it is a no-op.
    __table_args__ = (UniqueConstraint("design", "rung", "seed", "corpus_fp", "tokenizer_fp"),)
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    design: Mapped[str] = mapped_column(ForeignKey("designs.name"))
    rung: Mapped[str]
    seed: Mapped[int]
    corpus_fp: Mapped[str]
    tokenizer_fp: Mapped[str]
    metrics: Mapped[dict[str, Any]] = mapped_column(_JSON)
    curves_hash: Mapped[str | None]
    hardware: Mapped[dict[str, Any]] = mapped_column(_JSON)
    wall_time_s: Mapped[float]
    config: Mapped[dict[str, Any]] = mapped_column(_JSON)
    created_at: Mapped[datetime]


class Cost(Base):
    __tablename__ = "costs"
    key: Mapped[str] = mapped_column(primary_key=True)
    # Not a foreign key: a proposal costs tokens before its design exists.
    design: Mapped[str | None] = mapped_column(index=True)
    role: Mapped[str]
    model: Mapped[str]
    prompt_tokens: Mapped[int]
    completion_tokens: Mapped[int]
    dollars: Mapped[float]
    compute_s: Mapped[float]
    created_at: Mapped[datetime]


class Event(Base):
    __tablename__ = "events"
    key: Mapped[str] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(index=True)
    design: Mapped[str | None] = mapped_column(index=True)  # not a foreign key, as in costs
    payload: Mapped[Any] = mapped_column(_JSON)
    created_at: Mapped[datetime]


# ---------------------------------------------------------------------------
# The archive


class Archive:
    """Designs, verifications, costs and events of one run. Open with `Archive.open`."""

    def __init__(self, engine: Engine, artifacts: ArtifactStore, location: str):
        self._engine = engine
        # Reads begin a plain (deferred) transaction on SQLite; see _on_sqlite_begin.
        self._reader = engine.execution_options(genesys_read_only=True)
        self.artifacts = artifacts
        self.location = location  # "run directory ..." or "database ...", for messages

    @classmethod
    def open(
        cls, target: str | os.PathLike[str], *, artifacts_dir: str | os.PathLike[str] | None = None
    ) -> Archive:
        """Open (creating or migrating as needed) the archive at `target`.

        `target` is a run directory (SQLite at RUN_DIR/archive.db, artifacts in
        RUN_DIR/artifacts/) or a SQLAlchemy URL such as
        ``postgresql+psycopg://host/db`` (artifacts in `artifacts_dir`, default
        ./artifacts). `artifacts_dir` overrides the default in both cases.
        """
        url, default_artifacts, location = _resolve(target)
        engine = _make_engine(url)
        try:
            _prepare_schema(engine, location)
        except BaseException:
            engine.dispose()
            raise
        artifacts = ArtifactStore(Path(artifacts_dir or default_artifacts).absolute())
        return cls(engine, artifacts, location)

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- designs -------------------------------------------------------------

    def record_design(
        self,
        name: str,
        tree_json: dict[str, Any],
        fingerprint: str,
        *,
        mode: str,
        status: str,
        family: str | None = None,
        parents: Sequence[str] = (),
        proposal: Any = None,
        reviews: list[Any] | None = None,
        meta: dict[str, Any] | None = None,
    ) -> DesignRecord:
        """Record a design and its lineage; recording it again changes nothing.

        A name is an immutable identity: the same name with another fingerprint
        is an error, not an update. Parents must already be in the archive.
        """
        _check_design_args(name, mode, parents)
        _check_json(f"design {name!r}", proposal=proposal, reviews=reviews, meta=meta)
        tree_hash = self.artifacts.put_json(tree_json)  # file first: rows never dangle
        now = _now()
        with self._write() as s:
            self._check_parents(s, name, parents)
            row = dict(name=name, fingerprint=fingerprint, tree_hash=tree_hash, family=family,
                       mode=mode, status=status, proposal=proposal, reviews=reviews or [],
                       meta=meta or {}, created_at=now, updated_at=now)
            if self._insert_if_absent(s, Design, row):
                links = [dict(child=name, parent=p, position=i) for i, p in enumerate(parents)]
                if links:
                    s.execute(insert(Lineage), links)
            design = s.get_one(Design, name)
            if design.fingerprint != fingerprint:
                raise ArchiveError(
                    f"design {name!r} is already in {self.location} with fingerprint "
                    f"{design.fingerprint}, not {fingerprint}; names are immutable, "
                    "give the new design a new name"
                )
            return _record(DesignRecord, design)

    def update_design_status(self, name: str, status: str, **fields: Any) -> DesignRecord:
        """Set a design's status and, optionally, its family, proposal, reviews or meta.

        The fields given replace the stored values (meta is not merged).
        """
        unknown = set(fields) - {"family", "proposal", "reviews", "meta"}
        if unknown:
            raise TypeError(f"update_design_status() cannot set {sorted(unknown)}")
        _check_json(f"design {name!r}", **fields)
        with self._write() as s:
            design = self._get_design(s, name)
            for field, value in dict(fields, status=status, updated_at=_now()).items():
                setattr(design, field, value)
            s.flush()
            return _record(DesignRecord, design)

    def get_design(self, name: str) -> DesignRecord:
        with self._read() as s:
            return _record(DesignRecord, self._get_design(s, name))

    def load_tree_json(self, name: str) -> dict[str, Any]:
        return self.artifacts.get_json(self.get_design(name).tree_hash)

    def list_designs(
        self, status: str | None = None, mode: str | None = None
    ) -> list[DesignRecord]:
        """Designs in the order they were recorded, optionally filtered."""
        query = select(Design).order_by(Design.created_at, Design.name)
        if status is not None:
            query = query.where(Design.status == status)
        if mode is not None:
            query = query.where(Design.mode == mode)
        return self._all(DesignRecord, query)

    def find_by_fingerprint(self, fingerprint: str) -> list[DesignRecord]:
        """Designs with this fingerprint (the same normalized code under any name)."""
        query = select(Design).where(Design.fingerprint == fingerprint)
        return self._all(DesignRecord, query.order_by(Design.created_at, Design.name))

    # -- verifications -------------------------------------------------------

    def record_verification(
        self,
        design: str,
        *,
        rung: str,
        seed: int,
        corpus_fp: str,
        tokenizer_fp: str,
        metrics: dict[str, Any],
        wall_time_s: float,
        curves_hash: str | None = None,
        hardware: dict[str, Any] | None = None,
        config: dict[str, Any] | None = None,
    ) -> VerificationRecord:
        """Record one measurement; if it is already recorded, return the stored one.

        The first result for a (design, rung, seed, corpus_fp, tokenizer_fp)
        stands. Store the curves first (`artifacts.put_json`) and pass the hash.
        Metrics must be plain JSON: a diverged loss is None, not NaN.
        """
        _check_json(f"verification of {design!r}", metrics=metrics, hardware=hardware,
                    config=config)
        if curves_hash is not None and not self.artifacts.has(curves_hash):
            raise ArchiveError(f"curves artifact {curves_hash} is not in {self.artifacts.root}")
        identity = dict(design=design, rung=rung, seed=seed, corpus_fp=corpus_fp,
                        tokenizer_fp=tokenizer_fp)
        row = dict(identity, metrics=metrics, curves_hash=curves_hash, hardware=hardware or {},
                   wall_time_s=wall_time_s, config=config or {}, created_at=_now())
        with self._write() as s:
            self._require_design(s, design)
            self._insert_if_absent(s, Verification, row)
            stored = s.scalars(select(Verification).filter_by(**identity)).one()
            return _record(VerificationRecord, stored)

    def verifications(
        self, design: str | None = None, rung: str | None = None
    ) -> list[VerificationRecord]:
        query = select(Verification).order_by(Verification.id)
        if design is not None:
            query = query.where(Verification.design == design)
        if rung is not None:
            query = query.where(Verification.rung == rung)
        return self._all(VerificationRecord, query)

    # -- costs ---------------------------------------------------------------

    def record_cost(
        self,
        key: str,
        *,
        role: str,
        model: str,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        dollars: float = 0.0,
        compute_s: float = 0.0,
        design: str | None = None,
    ) -> CostRecord:
        """Record a cost under the caller's idempotency `key` (an LLM call id, a job id)."""
        row = dict(key=key, design=design, role=role, model=model, prompt_tokens=prompt_tokens,
                   completion_tokens=completion_tokens, dollars=dollars, compute_s=compute_s,
                   created_at=_now())
        with self._write() as s:
            self._insert_if_absent(s, Cost, row)
            return _record(CostRecord, s.get_one(Cost, key))

    def cost_summary(self, design: str | None = None) -> dict[str, dict[str, float]]:
        """Totals per role: calls, prompt_tokens, completion_tokens, dollars, compute_s."""
        totals = [func.count().label("calls")] + [
            func.coalesce(func.sum(column), 0).label(column.key)
            for column in (Cost.prompt_tokens, Cost.completion_tokens, Cost.dollars, Cost.compute_s)
        ]
        query = select(Cost.role, *totals).group_by(Cost.role).order_by(Cost.role)
        if design is not None:
            query = query.where(Cost.design == design)
        with self._read() as s:
            rows = s.execute(query).mappings().all()
        return {row["role"]: {k: v for k, v in row.items() if k != "role"} for row in rows}

    # -- events --------------------------------------------------------------

    def record_event(
        self, kind: str, payload: Any, *, design: str | None = None, key: str | None = None
    ) -> EventRecord:
        """Append an event; with a `key`, recording it again is a no-op."""
        _check_json(f"event {kind!r}", payload=payload)
        key = key or uuid.uuid4().hex
        row = dict(key=key, kind=kind, design=design, payload=payload, created_at=_now())
        with self._write() as s:
            self._insert_if_absent(s, Event, row)
            return _record(EventRecord, s.get_one(Event, key))

    def events(self, kind: str | None = None, design: str | None = None) -> list[EventRecord]:
        query = select(Event).order_by(Event.created_at, Event.key)
        if kind is not None:
            query = query.where(Event.kind == kind)
        if design is not None:
            query = query.where(Event.design == design)
        return self._all(EventRecord, query)

    # -- plumbing ------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[Session]:
        """One write transaction: committed on success, rolled back on any error."""
        with Session(self._engine) as s, s.begin():
            yield s

    @contextmanager
    def _read(self) -> Iterator[Session]:
        with Session(self._reader) as s:
            yield s

    def _all(self, record_type: type, query: Any) -> list[Any]:
        with self._read() as s:
            return [_record(record_type, row) for row in s.scalars(query)]

    def _insert_if_absent(self, s: Session, model: type[Base], row: dict[str, Any]) -> bool:
        """INSERT ... ON CONFLICT DO NOTHING; True when this call inserted the row.

        Safe against a concurrent writer of the same key: one of them inserts,
        the other waits for it and does nothing.
        """
        postgres = self._engine.dialect.name == "postgresql"
        dialect_insert = postgresql_insert if postgres else sqlite_insert
        statement = dialect_insert(model).values(**row).on_conflict_do_nothing()
        key = model.__table__.primary_key.columns  # RETURNING: rowcount is not portable
        return s.execute(statement.returning(*key)).first() is not None

    def _get_design(self, s: Session, name: str) -> Design:
        design = s.get(Design, name)
        if design is None:
            raise self._unknown_design(s, name)
        return design

    def _require_design(self, s: Session, name: str) -> None:
        """Like _get_design, for when only existence matters (cheaper)."""
        if s.scalar(select(Design.name).where(Design.name == name)) is None:
            raise self._unknown_design(s, name)

    def _unknown_design(self, s: Session, name: str) -> UnknownDesign:
        names = list(s.scalars(select(Design.name)))
        close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
        hint = f"close names: {', '.join(close)}" if close else f"it holds {len(names)} designs"
        return UnknownDesign(f"no design named {name!r} in {self.location}; {hint}")

    def _check_parents(self, s: Session, name: str, parents: Sequence[str]) -> None:
        if not parents:
            return
        known = set(s.scalars(select(Design.name).where(Design.name.in_(parents))))
        missing = [p for p in parents if p not in known]
        if missing:
            raise ArchiveError(f"parents of {name!r} are not in {self.location}: {missing}")


def _check_design_args(name: str, mode: str, parents: Sequence[str]) -> None:
    if mode not in MODES:
        raise ArchiveError(f"mode {mode!r} is not one of {MODES}")
    if isinstance(parents, str):
        raise TypeError("parents must be a sequence of names, not a string")
    if len(set(parents)) != len(parents) or name in parents:
        raise ArchiveError(f"parents of {name!r} repeat or include itself: {list(parents)}")


def _check_json(what: str, **values: Any) -> None:
    """Refuse NaN, Infinity and non-JSON values before writing anything.

    PostgreSQL's JSONB refuses NaN while SQLite would store it; a run must not
    behave differently on the two, so both refuse it, with this message.
    """
    for field, value in values.items():
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise ValueError(
                f"{field} of {what} is not plain JSON ({e}); record NaN or Infinity as None"
            ) from None


def _record(record_type: type, row: Base) -> Any:
    """Copy an ORM row into its frozen record, so it outlives the session."""
    return record_type(**{f.name: getattr(row, f.name) for f in dataclasses.fields(record_type)})


def _now() -> datetime:
    return datetime.now(UTC)


# ---------------------------------------------------------------------------
# Engines and schema


def _resolve(target: str | os.PathLike[str]) -> tuple[URL, Path, str]:
    """(database URL, default artifacts dir, description for messages)."""
    if isinstance(target, str) and "://" in target:
        url = make_url(target)
        return url, Path("artifacts"), f"database {url.render_as_string(hide_password=True)}"
    run_dir = Path(target)
    run_dir.mkdir(parents=True, exist_ok=True)
    url = URL.create("sqlite", database=str(run_dir / "archive.db"))
    return url, run_dir / "artifacts", f"run directory {run_dir}"


def _strict_json(value: Any) -> str:
    """The database's JSON encoder; a backstop behind _check_json."""
    return json.dumps(value, allow_nan=False)


def _make_engine(url: URL) -> Engine:
    if url.get_backend_name() != "sqlite":
        return create_engine(url, json_serializer=_strict_json, pool_pre_ping=True)
    engine = create_engine(
        url, json_serializer=_strict_json, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S}
    )
    event.listen(engine, "connect", _on_sqlite_connect)
    event.listen(engine, "begin", _on_sqlite_begin)
    return engine


def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Stop the sqlite3 module from issuing its own BEGINs; _on_sqlite_begin does.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
    cursor.execute("PRAGMA journal_mode = WAL")  # readers never block the writer
    cursor.execute("PRAGMA synchronous = NORMAL")  # durable across process kills in WAL
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()


def _on_sqlite_begin(connection: Connection) -> None:
    """Writes take the write lock up front (BEGIN IMMEDIATE).

    A deferred transaction that reads and then writes cannot wait for the lock
    (its snapshot may be stale) and fails at once with "database is locked";
    an immediate one waits up to the busy timeout, which is what concurrent
    writers need.
    """
    read_only = connection.get_execution_options().get("genesys_read_only", False)
    connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def _prepare_schema(engine: Engine, location: str) -> None:
    """Create the schema if new, migrate it if old, refuse it if newer than us."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_SCHEMA_LOCK})
        found = _stored_version(conn)
        if found is None:
            Base.metadata.create_all(conn)
            _stamp(conn, SCHEMA_VERSION)
            return
        if found > SCHEMA_VERSION:
            writer = conn.scalar(select(SchemaMeta.genesys_version))
            raise ArchiveError(
                f"{location} was written by schema v{found} (genesys {writer}); this Genesys "
                f"knows up to v{SCHEMA_VERSION} — upgrade genesys"
            )
        for version in range(found + 1, SCHEMA_VERSION + 1):
            if version not in MIGRATIONS:
                raise ArchiveError(f"no migration from schema v{version - 1} to v{version}")
            MIGRATIONS[version](conn)
        if found < SCHEMA_VERSION:
            _stamp(conn, SCHEMA_VERSION)


def _stored_version(conn: Connection) -> int | None:
    if not inspect(conn).has_table(SchemaMeta.__tablename__):
        return None
    return conn.scalar(select(SchemaMeta.schema_version))


def _stamp(conn: Connection, version: int) -> None:
    conn.execute(delete(SchemaMeta))
    conn.execute(
        insert(SchemaMeta).values(
            id=1, schema_version=version, genesys_version=_genesys_version(), written_at=_now()
        )
    )


def _genesys_version() -> str:
    try:
        return metadata.version("genesys")
    except metadata.PackageNotFoundError:
        return "unknown"
