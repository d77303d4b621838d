"""A real PostgreSQL server for the tests: Debian's binaries, a throw-away cluster, a fresh database per test.

`server()` starts one cluster per test process on first use (initdb and pg_ctl in a temporary directory, as
the `postgres` user when the tests run as root, since PostgreSQL refuses to run as root) and stops it at exit.
`fresh_database()` creates an empty database and returns its URL. `stop()` and `start()` take the server away
and bring it back on the same port, for tests of a database that goes down mid-call.
"""

from __future__ import annotations

import atexit
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import uuid
from pathlib import Path

import psycopg

_lock = threading.Lock()
_server: PostgresServer | None = None


def _bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    raise RuntimeError("PostgreSQL is not installed: install Debian's `postgresql` package (see README)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PostgresServer:
    """One PostgreSQL cluster on a free localhost port (trust authentication, loopback only)."""

    def __init__(self) -> None:
        self.bin = _bindir()
        self.port = _free_port()
        self.root = Path(tempfile.mkdtemp(prefix="voicebot-pg-"))
        self.data = self.root / "data"
        self._as_root = os.geteuid() == 0
        if self._as_root:
            shutil.chown(self.root, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync")
        self.start()

    def _run(self, program: str, *args: str) -> None:
        command = [str(self.bin / program), *args]
        if self._as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-o", options, "-w", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def close(self) -> None:
        try:
            self.stop()
        except subprocess.CalledProcessError:
            pass  # already stopped
        shutil.rmtree(self.root, ignore_errors=True)


def server() -> PostgresServer:
    """The test process's PostgreSQL server, started on first use."""
    global _server
    with _lock:
        if _server is None:
            _server = PostgresServer()
            atexit.register(_server.close)
        return _server


def fresh_database() -> str:
    """The URL of a new, empty database on the test server."""
    return server().create_database()
