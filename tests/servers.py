"""Run `fasttrack` as a real server process for the tests that need one."""

import contextlib
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
# Developers' and CI's servers here use ports 8200-8299.
PORTS = range(8200, 8300)


def free_port() -> int:
    # A random order: two test runs side by side rarely race for the same port.
    for port in random.sample(PORTS, len(PORTS)):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {PORTS}")


def wait_until_healthy(base_url: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        try:
            if httpx.get(f"{base_url}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{base_url} did not become healthy in {timeout} s")


@contextmanager
def server(argv: Sequence[str], *, port: int, env: dict[str, str]) -> Iterator[str]:
    """Start `argv` (which listens on `port`) in its own process group; yield its URL."""
    with server_process(argv, port=port, env=env) as (base_url, _):
        yield base_url


@contextmanager
def server_process(
    argv: Sequence[str], *, port: int, env: dict[str, str]
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`server`, also yielding the process (to signal it while it runs)."""
    log = _log_path(port)
    log.parent.mkdir(exist_ok=True)
    with log.open("wb") as output:
        process = subprocess.Popen(  # noqa: S603  (the test's own command line)
            argv, env={**os.environ, **env}, stdout=output, stderr=output, start_new_session=True
        )
        try:
            base_url = f"http://127.0.0.1:{port}"
            wait_until_healthy(base_url, process, timeout=60)
            yield base_url, process
        finally:
            # The test may have stopped it already.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _log_path(port: int) -> Path:
    return (ROOT / ".pytest_cache" / f"server-{port}.log").resolve()


def server_log(port: int) -> str:
    """What the server last started on `port` wrote to stdout and stderr."""
    return _log_path(port).read_text(errors="replace")
