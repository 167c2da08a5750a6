"""A throwaway PostgreSQL for tests, without touching the system's server.

`server()` yields a URL to a server: the one in $GENESYS_TEST_PG_URL if set,
else a private cluster that it initdb's in a temp dir, starts on 127.0.0.1 at a
free port, and deletes afterwards (Debian's binaries, /usr/lib/postgresql/*/bin;
.ci/postgres.sh installs them). `fresh_database(server_url)` yields a new
database and drops it afterwards; `fresh_schema(database_url)` gives a URL whose
tables land in a new, empty schema, which isolates one test cheaply.

Raises `Unavailable` (tests skip on it) when there is no way to get a server;
binaries that are there but fail raise RuntimeError, an error, not a skip.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

ENV_URL = "GENESYS_TEST_PG_URL"


class Unavailable(RuntimeError):
    """No PostgreSQL server can be had here."""


@contextmanager
def server() -> Iterator[str]:
    if os.environ.get(ENV_URL):
        yield _with_psycopg(os.environ[ENV_URL])
        return
    bindir = _debian_bindir()
    if bindir is None:
        raise Unavailable(
            f"no PostgreSQL: set {ENV_URL} or install the server binaries (.ci/postgres.sh)"
        )
    with _throwaway_cluster(bindir) as url:
        yield url


@contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    name = f"genesys_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def fresh_schema(database_url: str) -> str:
    """A URL like `database_url` whose unqualified tables live in a new schema."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    engine = create_engine(database_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    finally:
        engine.dispose()
    url = make_url(database_url).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False)


def _with_psycopg(url: str) -> str:
    """Accept postgresql:// URLs; the archive talks to PostgreSQL through psycopg 3."""
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def _debian_bindir() -> Path | None:
    found = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    if not found:
        return None
    newest = max(found, key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return Path(newest).parent


def _run_as() -> list[str]:
    """PostgreSQL refuses to run as root; as root, run it as user postgres."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise Unavailable("running as root, and no 'postgres' user to run a server") from None
    return ["runuser", "-u", "postgres", "--"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def _throwaway_cluster(bindir: Path) -> Iterator[str]:
    run_as = _run_as()
    tmp = Path(tempfile.mkdtemp(prefix="genesys-pg-"))
    try:
        if run_as:
            shutil.chown(tmp, "postgres", "postgres")
        data, port = tmp / "data", _free_port()
        _run([*run_as, bindir / "initdb", "-D", data, "--auth=trust", "-U", "postgres",
              "--no-sync", "--no-locale", "-E", "UTF8"])
        # Durability is pointless in a cluster that is deleted after the tests.
        options = (f"-k {tmp} -h 127.0.0.1 -p {port} "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
        pg_ctl = [*run_as, bindir / "pg_ctl", "-D", data, "-l", tmp / "server.log"]
        _run([*pg_ctl, "-w", "-o", options, "start"], log=tmp / "server.log")
        try:
            yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
        finally:
            _run([*pg_ctl, "-m", "immediate", "stop"])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _run(command: list[object], log: Path | None = None) -> None:
    done = subprocess.run([str(c) for c in command], capture_output=True, text=True)
    if done.returncode != 0:
        server_log = log.read_text() if log is not None and log.exists() else ""
        raise RuntimeError(
            f"{' '.join(map(str, command))} failed:\n{done.stdout}{done.stderr}{server_log}"
        )
