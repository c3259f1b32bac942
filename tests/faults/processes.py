"""Processes the fault tests start, break and bring back: the server, PostgreSQL and Redis."""

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from glob import glob
from pathlib import Path
from typing import Final

from tests.factories import TEST_SECRET
from tests.servers import free_port, wait_until_healthy

FASTTRACK: Final = str(Path(sys.executable).parent / "fasttrack")
# Settings a developer's shell could carry into the server and change what is tested.
_INHERITED_SETTINGS: Final = (
    "DATABASE_URL",
    "REDIS_URL",
    "ENVIRONMENT",
    "SECRET_KEY",
    "RATE_LIMIT_ENABLED",
    "LOG_LEVEL",
    "LOG_FORMAT",
    "SMTP_HOST",
)


def wait_for(
    condition: Callable[[], bool], *, timeout: float, interval: float = 0.05, what: str
) -> float:
    """Poll `condition` until it holds; return how long that took, or fail after `timeout`."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{what}: not within {timeout} s")
        time.sleep(interval)
    return time.monotonic() - started


def _stop_group(process: subprocess.Popen[bytes], *, grace: float) -> None:
    """SIGTERM the process group, then SIGKILL whatever is left after `grace` seconds."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace)
    # Children (uvicorn workers) may outlive the leader: always sweep the group.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


class Server:
    """`fasttrack serve` in its own process group, which a test may kill -9 and restart.

    It runs in `workdir` (so no developer `.env` is read) and logs to `log_path`, which
    each start appends to.
    """

    def __init__(self, *, env: dict[str, str], workdir: Path, migrate: bool = True) -> None:
        self.workdir = workdir
        self.log_path = workdir / "server.log"
        self._env = {
            **{k: v for k, v in os.environ.items() if k not in _INHERITED_SETTINGS},
            "SECRET_KEY": TEST_SECRET,
            "BCRYPT_ROUNDS": "4",
            "LOG_FORMAT": "json",
            **env,
        }
        self._migrate = migrate
        self._process: subprocess.Popen[bytes] | None = None
        self.base_url = ""

    def start(self) -> str:
        assert self._process is None, "already running"
        port = free_port()
        argv = [FASTTRACK, "serve", "--port", str(port)]
        if not self._migrate:
            argv.append("--no-migrate")
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(  # noqa: S603  (the test's own command line)
                argv,
                cwd=self.workdir,
                env=self._env,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        self.base_url = f"http://127.0.0.1:{port}"
        try:
            wait_until_healthy(self.base_url, self._process, timeout=60)
        except BaseException:
            self.stop()
            raise
        return self.base_url

    def kill(self) -> None:
        """kill -9 the whole process group: no shutdown, no flush, no goodbye."""
        assert self._process is not None
        os.killpg(self._process.pid, signal.SIGKILL)
        self._process.wait()
        self._process = None

    def stop(self) -> None:
        if self._process is not None:
            _stop_group(self._process, grace=15)
            self._process = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def postgres_bin() -> Path | None:
    """The newest installed PostgreSQL's binary directory, if there is one to use.

    As root, the cluster must belong to the `postgres` OS user, so it must exist too.
    """
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return None
    found = sorted(
        glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda path: int(Path(path).parts[-3]) if Path(path).parts[-3].isdigit() else 0,
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class PostgresCluster:
    """A throw-away PostgreSQL cluster: trust auth, TCP on 127.0.0.1, sockets in its dir.

    `initdb` refuses to run as root, so as root the cluster belongs to (and every
    command runs as) the `postgres` OS user.
    """

    def __init__(self, bindir: Path) -> None:
        self._bindir = bindir
        self._root = Path(tempfile.mkdtemp(prefix="fasttrack-pg-"))
        self._data = self._root / "data"
        self._as_postgres: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self._root, user="postgres", group="postgres")
            self._as_postgres = ["runuser", "-u", "postgres", "--"]
        self.port = 0

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *argv: str, timeout: float = 60) -> None:
        command = [*self._as_postgres, str(self._bindir / argv[0]), *argv[1:]]
        result = subprocess.run(  # noqa: S603  (fixed binaries and arguments)
            command, capture_output=True, timeout=timeout, check=False
        )
        if result.returncode != 0:
            output = (result.stdout + result.stderr).decode(errors="replace")
            raise RuntimeError(f"{' '.join(argv[:2])} failed ({result.returncode}):\n{output}")

    def init(self) -> None:
        self._run("initdb", "-D", str(self._data), "-U", "postgres", "--auth=trust", "--no-sync")

    def start(self) -> None:
        if not self.port:
            self.port = free_port()
        # No durability needed from a cluster that lives for one test.
        options = f"-p {self.port} -h 127.0.0.1 -k {self._root} -c fsync=off"
        log = str(self._root / "postgres.log")
        self._run(
            "pg_ctl", "start", "-w", "-t", "30", "-D", str(self._data), "-l", log, "-o", options
        )

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "stop", "-w", "-t", "30", "-D", str(self._data), "-m", mode)

    def destroy(self) -> None:
        if (self._data / "postmaster.pid").exists():
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self.stop("immediate")
        shutil.rmtree(self._root, ignore_errors=True)


class RedisServer:
    """A private `redis-server` without persistence, on a port of our own."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self._binary = binary
        self._workdir = workdir
        self._process: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert self._process is None, "already running"
        if not self.port:
            self.port = free_port()
        argv = [self._binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        argv += ["--save", "", "--appendonly", "no", "--dir", str(self._workdir)]
        with (self._workdir / "redis.log").open("ab") as log:
            self._process = subprocess.Popen(  # noqa: S603  (the installed redis-server)
                argv, stdout=log, stderr=log, start_new_session=True
            )
        wait_for(self._accepts_connections, timeout=10, what="redis-server accepting")

    def _accepts_connections(self) -> bool:
        assert self._process is not None
        if self._process.poll() is not None:
            raise RuntimeError(f"redis-server exited with {self._process.returncode}")
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", self.port)) == 0

    def kill(self) -> None:
        assert self._process is not None
        self._process.kill()
        self._process.wait()
        self._process = None

    def stop(self) -> None:
        if self._process is not None:
            _stop_group(self._process, grace=5)
            self._process = None
