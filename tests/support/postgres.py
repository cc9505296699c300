"""A throwaway PostgreSQL server for tests: a private cluster in a temp dir, removed afterwards."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

INSTALL_HINT = "run scripts/ensure-postgres.sh to install PostgreSQL"
_PREFIX = "sync-daemon-pg-"
_OWNER_FILE = "owner.pid"
_STOP_NOW = ["-m", "immediate", "-w", "stop"]  # a throwaway cluster needs no clean shutdown
_INITDB_OPTIONS = ["-U", "postgres", "--auth=trust", "--no-sync", "--encoding=UTF8", "--no-locale"]


def find_bin_dir() -> Path | None:
    """The directory with `initdb` and `pg_ctl`: from PATH, else Debian's newest version."""
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).resolve().parent
    # Debian keeps server binaries out of PATH, one directory per major version.
    installed = [p.parent for p in Path("/usr/lib/postgresql").glob("*/bin/initdb")]
    return max(installed, key=_major_version, default=None)


@contextmanager
def postgres_server() -> Iterator[str]:
    """Start a cluster on 127.0.0.1 (trust auth, no fsync) and yield a URL to a new database.

    Skips the test when PostgreSQL is not installed; fails instead when `$CI` is set,
    because CI must test PostgreSQL.
    """
    bin_dir = find_bin_dir()
    if bin_dir is None:
        message = f"PostgreSQL server binaries (initdb, pg_ctl) not found; {INSTALL_HINT}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    _stop_orphans(bin_dir)
    # Not pytest's tmp_path: its parents are private to the current user, and as root the
    # server runs as `postgres`, which must reach the data directory.
    root = Path(tempfile.mkdtemp(prefix=_PREFIX))
    (root / _OWNER_FILE).write_text(str(os.getpid()))
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        shutil.chown(root, user="postgres")
    data, port = root / "data", _free_port()
    try:
        _pg(bin_dir, root, "initdb", "-D", str(data), *_INITDB_OPTIONS)
        with (data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"listen_addresses = '127.0.0.1'\nport = {port}\n"
                f"unix_socket_directories = '{root}'\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
            )
        _pg(bin_dir, root, "pg_ctl", "-D", str(data), "-l", str(root / "server.log"), "-w", "start")
        try:
            with psycopg.connect(
                host="127.0.0.1", port=port, user="postgres", dbname="postgres", autocommit=True
            ) as admin:
                admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier("sync_daemon")))
            yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/sync_daemon"
        finally:
            _pg(bin_dir, root, "pg_ctl", "-D", str(data), *_STOP_NOW)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _pg(bin_dir: Path, root: Path, program: str, *args: str, check: bool = True) -> None:
    """Run a PostgreSQL program, as the `postgres` user when we are root."""
    runuser = shutil.which("runuser") or "/usr/sbin/runuser"  # sbin is not always on PATH
    as_server_user = [runuser, "-u", "postgres", "--"] if os.geteuid() == 0 else []
    command = [*as_server_user, str(bin_dir / program), *args]
    done = subprocess.run(command, cwd=root, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        log = root / "server.log"
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}{tail}")


def _stop_orphans(bin_dir: Path) -> None:
    """Stop clusters whose test process was killed before it could clean up (SIGKILL, timeouts)."""
    for root in Path(tempfile.gettempdir()).glob(f"{_PREFIX}*"):
        try:
            owner = int((root / _OWNER_FILE).read_text())
            os.kill(owner, 0)
        except ProcessLookupError:
            _pg(bin_dir, root, "pg_ctl", "-D", str(root / "data"), *_STOP_NOW, check=False)
            shutil.rmtree(root, ignore_errors=True)
        except (OSError, ValueError):
            continue  # not ours to judge: no owner file yet, or an owner we may not signal


def _major_version(bin_dir: Path) -> tuple[int, ...]:
    """(15,) for /usr/lib/postgresql/15/bin."""
    return tuple(int(part) for part in re.findall(r"\d+", bin_dir.parent.name))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
