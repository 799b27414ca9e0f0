"""A throw-away PostgreSQL cluster and an MLflow tracking server on it, for tests.

The cluster lives in a temporary folder, listens on 127.0.0.1 on a free port and trusts
local connections; it is owned by a non-root user because PostgreSQL refuses to run as
root (as root, the ``postgres`` account of Debian's package runs it). Importable from any
test folder (tests/ is on sys.path through tests/conftest.py).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
SERVER_SCRIPT = PROJECT / "scripts" / "mlflow_server.sh"


class PostgresUnavailable(RuntimeError):
    """PostgreSQL is not installed or cannot be started here (the reason says which)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def postgres_bin() -> Path:
    """The folder of ``initdb``/``pg_ctl``: on PATH, or Debian's /usr/lib/postgresql/N/bin."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[4])
    )
    if not candidates:
        raise PostgresUnavailable(
            "PostgreSQL is not installed (no initdb): apt-get install postgresql "
            "(.ci/run does this)."
        )
    return Path(candidates[-1]).parent


def _as_owner(command: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root; Debian's package creates the postgres account.
    if os.geteuid() != 0:
        return command
    if shutil.which("runuser") is None:
        raise PostgresUnavailable("running as root without runuser to switch to 'postgres'")
    return ["runuser", "-u", "postgres", "--", *command]


def _run(command: list[str], what: str) -> None:
    result = subprocess.run(_as_owner(command), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise PostgresUnavailable(f"{what} failed: {(result.stderr or result.stdout).strip()}")


@contextmanager
def postgres_database(name: str = "mlflow") -> Iterator[str]:
    """Start a fresh cluster with one database ``name``; yield its SQLAlchemy URI."""
    bindir = postgres_bin()
    root = Path(tempfile.mkdtemp(prefix="pg-test-"))
    data, log = root / "data", root / "server.log"
    if os.geteuid() == 0:
        try:
            shutil.chown(root, "postgres", "postgres")
        except (LookupError, PermissionError) as exc:
            shutil.rmtree(root, ignore_errors=True)
            raise PostgresUnavailable(f"no 'postgres' account to own the cluster: {exc}") from None
    port = free_port()
    try:
        _run(
            [str(bindir / "initdb"), "-D", str(data), "-U", "mlflow", "--auth=trust", "-E", "UTF8"],
            "initdb",
        )
        options = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off"
        _run(
            [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "start"],
            "pg_ctl start",
        )
        try:
            _run(
                [
                    str(bindir / "createdb"),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(port),
                    "-U",
                    "mlflow",
                    name,
                ],
                "createdb",
            )
            yield f"postgresql+psycopg://mlflow@127.0.0.1:{port}/{name}"
        finally:
            _run(
                [str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"], "pg_ctl stop"
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def mlflow_server(
    backend_store_uri: str, artifacts: Path, workers: int = 1, timeout: float = 180.0
) -> Iterator[str]:
    """Run scripts/mlflow_server.sh on ``backend_store_uri``; yield the server's http URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = artifacts.parent / "mlflow-server.log"
    env = {
        **os.environ,
        "MLFLOW_BACKEND_STORE_URI": backend_store_uri,
        "MLFLOW_ARTIFACTS_DESTINATION": str(artifacts),
        "MLFLOW_PORT": str(port),
        "MLFLOW_WORKERS": str(workers),
        # No job runner (GenAI scorers): two fewer processes on a small CI machine.
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }
    with log_path.open("w") as log:
        process = subprocess.Popen(
            ["bash", str(SERVER_SCRIPT)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its workers are stopped with it
        )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"mlflow server exited with {process.returncode}:\n{log_path.read_text()}"
                )
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"mlflow server not up after {timeout} s:\n{log_path.read_text()}"
                )
            time.sleep(0.5)
        yield url
    finally:
        if process.poll() is None:
            os.killpg(process.pid, 15)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)
                process.wait()
