"""Load benchmark: fasttrack against a bare FastAPI app, measured with wrk in one run.

Starts the bare app and then fasttrack (one uvicorn worker each, same flags), seeds a
user, a project and 50 tasks over HTTP, and drives every endpoint with wrk for the same
duration and connection count. Absolute numbers drift on shared machines; the ratio to
the bare app measured minutes earlier is what to compare.

    python bench/run.py                      # SQLite, 64 connections, 10 s per endpoint
    python bench/run.py --db postgres        # PostgreSQL (DATABASE_URL or local default)
    python bench/run.py --login-burst        # /health latency while 20 logins hash
    python bench/run.py --memory             # RSS after 20 000 and 200 000 requests
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PASSWORD = "bench-password-123"
DEFAULT_POSTGRES = "postgresql+asyncpg://postgres@127.0.0.1:5432/fasttrack_bench"
TASK_BODY = '{"title": "wrk task", "priority": "high"}'
# Ratios to the bare app that each endpoint should reach, per database.
TARGETS = {
    "sqlite": {
        "health": 0.60,
        "me": 0.24,
        "task_get": 0.17,
        "task_list": 0.09,
        "task_create": 0.08,
    },
    "postgres": {"me": 0.20, "task_get": 0.15, "task_list": 0.09, "task_create": 0.08},
}

LUA = r"""
wrk.method = "{method}"
wrk.headers["Authorization"] = "Bearer {token}"
wrk.headers["Content-Type"] = "application/json"
{body}
done = function(summary, latency, requests)
  io.write(string.format(
    "RESULT {{\"requests\":%d,\"duration_us\":%d,\"non2xx\":%d,\"socket_errors\":%d," ..
    "\"p50_us\":%d,\"p90_us\":%d,\"p99_us\":%d,\"max_us\":%d}}\n",
    summary.requests, summary.duration, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


@dataclass
class Result:
    name: str
    requests_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int
    ratio: float = 1.0
    server_cpu_us: float = 0.0

    @property
    def tail_ok(self) -> bool:
        return self.p99_ms <= 3 * self.p50_ms


@dataclass
class Server:
    name: str
    command: list[str]
    port: int
    env: dict[str, str]
    log: Path
    ready_path: str = "/health"
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        if _port_busy(self.port):
            raise SystemExit(f"port {self.port} is in use; pick another with --port")
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                self.command,
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"{self.name} exited:\n{self.log.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + self.ready_path).is_success:
                    return
            time.sleep(0.1)
        raise SystemExit(f"{self.name} did not become ready:\n{self.log.read_text()[-2000:]}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cpu_seconds(self) -> float:
        assert self.process is not None
        ticks = os.sysconf("SC_CLK_TCK")
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / ticks

    def rss_mib(self) -> float:
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def _port_busy(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("installing wrk (apt-get)…", file=sys.stderr)
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=False, capture_output=True)
        if not shutil.which("wrk"):
            subprocess.run(["apt-get", "update", "-q"], check=True, capture_output=True)
            subprocess.run(
                ["apt-get", "install", "-y", "-q", "wrk"], check=True, capture_output=True
            )
        found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk is required: install it (Debian/Ubuntu: apt-get install wrk)")
    return found


def wrk(
    wrk_bin: str,
    url: str,
    *,
    token: str,
    args: argparse.Namespace,
    workdir: Path,
    method: str = "GET",
    body: str | None = None,
    duration: float | None = None,
) -> dict[str, Any]:
    script = workdir / f"{uuid.uuid4().hex}.lua"
    body_line = f"wrk.body = [==[{body}]==]" if body else ""
    script.write_text(LUA.format(method=method, token=token, body=body_line))
    command = [
        wrk_bin,
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{round(duration or args.duration)}s",
        "--timeout",
        "5s",
        "-s",
        str(script),
        url,
    ]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    line = next(line for line in output.splitlines() if line.startswith("RESULT "))
    stats: dict[str, Any] = json.loads(line.removeprefix("RESULT "))
    return stats


def to_result(name: str, stats: dict[str, Any], cpu_s: float) -> Result:
    requests = max(stats["requests"], 1)
    return Result(
        name=name,
        requests_per_s=round(stats["requests"] / (stats["duration_us"] / 1e6), 1),
        p50_ms=stats["p50_us"] / 1000,
        p90_ms=stats["p90_us"] / 1000,
        p99_ms=stats["p99_us"] / 1000,
        non_2xx=stats["non2xx"],
        socket_errors=stats["socket_errors"],
        server_cpu_us=round(cpu_s * 1e6 / requests),
    )


def seed(base: str) -> tuple[str, int, int]:
    email = f"bench-{uuid.uuid4().hex[:8]}@example.com"
    with httpx.Client(base_url=f"{base}/api/v1", timeout=30) as client:
        client.post(
            "/auth/register", json={"email": email, "password": PASSWORD}
        ).raise_for_status()
        login = client.post("/auth/login", json={"email": email, "password": PASSWORD})
        token = login.raise_for_status().json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        project = client.post("/projects", json={"name": "Bench"}, headers=headers)
        project_id = project.raise_for_status().json()["id"]
        first_task = 0
        for number in range(50):
            task = client.post(
                f"/projects/{project_id}/tasks", json={"title": f"Task {number}"}, headers=headers
            )
            first_task = first_task or task.raise_for_status().json()["id"]
    return token, project_id, first_task


@contextlib.contextmanager
def database(kind: str, workdir: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite+aiosqlite:///{workdir}/bench.db"
        return
    url = os.environ.get("DATABASE_URL", DEFAULT_POSTGRES)
    name = url.rsplit("/", 1)[1]
    admin = ["psql", "-q", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-c"]
    subprocess.run([*admin, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"], check=True)
    subprocess.run([*admin, f"CREATE DATABASE {name}"], check=True)
    yield url


def login_burst(
    app: Server, wrk_bin: str, token: str, args: argparse.Namespace, workdir: Path
) -> dict[str, Any]:
    """`/health` latency while 20 logins (bcrypt) run at once, every 0.5 s."""
    email = f"burst-{uuid.uuid4().hex[:8]}@example.com"
    httpx.post(
        f"{app.url}/api/v1/auth/register", json={"email": email, "password": PASSWORD}
    ).raise_for_status()
    stop = threading.Event()
    statuses: list[int] = []

    def burst() -> None:
        with httpx.Client(timeout=60, limits=httpx.Limits(max_connections=20)) as client:
            while not stop.is_set():
                threads = [
                    threading.Thread(
                        target=lambda: statuses.append(
                            client.post(
                                f"{app.url}/api/v1/auth/login",
                                json={"email": email, "password": PASSWORD},
                            ).status_code
                        )
                    )
                    for _ in range(20)
                ]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                stop.wait(0.5)

    runner = threading.Thread(target=burst)
    runner.start()
    try:
        light = argparse.Namespace(**{**vars(args), "connections": 8})
        stats = wrk(wrk_bin, f"{app.url}/health", token=token, args=light, workdir=workdir)
    finally:
        stop.set()
        runner.join()
    return {
        "health_p50_ms": stats["p50_us"] / 1000,
        "health_p99_ms": stats["p99_us"] / 1000,
        "logins": len(statuses),
        "login_failures": sum(status != 200 for status in statuses),
        "ok": stats["p99_us"] < 50_000 and all(status == 200 for status in statuses),
    }


def memory_check(
    app: Server, wrk_bin: str, token: str, *, task_id: int, args: argparse.Namespace, workdir: Path
) -> dict[str, Any]:
    """RSS after ~20 000 and after ~200 000 requests of a mixed read load."""
    url = f"{app.url}/api/v1/tasks/{task_id}"
    done = 0
    marks: dict[str, float] = {}
    for mark in (20_000, 200_000):
        while done < mark:
            stats = wrk(wrk_bin, url, token=token, args=args, workdir=workdir, duration=5)
            done += stats["requests"]
        marks[f"rss_mib_after_{mark}"] = round(app.rss_mib(), 1)
    growth = marks["rss_mib_after_200000"] / marks["rss_mib_after_20000"] - 1
    return {**marks, "requests": done, "growth": round(growth, 3), "ok": growth <= 0.20}


def print_table(results: list[Result], *, title: str, targets: dict[str, float]) -> None:
    print(f"\n== {title} ==")
    columns = ("req/s", "p50 ms", "p99 ms", "non2xx", "ratio", "target", "tail", "µs/req")
    print(f"{'endpoint':<12}" + "".join(f"{column:>9}" for column in columns))
    for result in results:
        target = targets.get(result.name)
        cells = (
            f"{result.requests_per_s:.1f}",
            f"{result.p50_ms:.2f}",
            f"{result.p99_ms:.2f}",
            str(result.non_2xx + result.socket_errors),
            f"{result.ratio:.3f}",
            "" if target is None else f"{target:.2f}",
            "ok" if result.tail_ok else "LONG",
            f"{result.server_cpu_us:.0f}",
        )
        print(f"{result.name:<12}" + "".join(f"{cell:>9}" for cell in cells))


def measure_hello(
    wrk_bin: str, args: argparse.Namespace, workdir: Path, env: dict[str, str]
) -> Result:
    command = [
        str(BIN / "uvicorn"),
        "hello_app:app",
        "--app-dir",
        str(ROOT / "bench"),
        "--host",
        "127.0.0.1",
        "--port",
        str(args.hello_port),
        "--workers",
        str(args.workers),
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    hello = Server("hello", command, args.hello_port, env, workdir / "hello.log", "/hello")
    hello.start()
    try:
        cpu = hello.cpu_seconds()
        stats = wrk(wrk_bin, f"{hello.url}/hello", token="-", args=args, workdir=workdir)
        return to_result("hello", stats, hello.cpu_seconds() - cpu)
    finally:
        hello.stop()


def measure_app(
    wrk_bin: str,
    args: argparse.Namespace,
    workdir: Path,
    env: dict[str, str],
    report: dict[str, Any],
) -> list[Result]:
    command = [str(BIN / "fasttrack"), "serve", "--no-migrate", "--host", "127.0.0.1"]
    command += ["--workers", str(args.workers)]
    subprocess.run(
        [str(BIN / "fasttrack"), "migrate"], check=True, env=env, cwd=ROOT, capture_output=True
    )
    app = Server(
        "fasttrack", [*command, "--port", str(args.port)], args.port, env, workdir / "app.log"
    )
    app.start()
    results: list[Result] = []
    try:
        token, project_id, task_id = seed(app.url)
        endpoints = {
            "health": ("GET", "/health", None),
            "me": ("GET", "/api/v1/users/me", None),
            "task_get": ("GET", f"/api/v1/tasks/{task_id}", None),
            "task_list": ("GET", f"/api/v1/projects/{project_id}/tasks?limit=20", None),
            "task_create": ("POST", f"/api/v1/projects/{project_id}/tasks", TASK_BODY),
        }
        for name in args.endpoints.split(","):
            method, path, body = endpoints[name]
            cpu = app.cpu_seconds()
            stats = wrk(
                wrk_bin,
                app.url + path,
                token=token,
                args=args,
                workdir=workdir,
                method=method,
                body=body,
            )
            results.append(to_result(name, stats, app.cpu_seconds() - cpu))
            time.sleep(1)
        if args.login_burst:
            report["login_burst"] = login_burst(app, wrk_bin, token, args, workdir)
        if args.memory:
            report["memory"] = memory_check(
                app, wrk_bin, token, task_id=task_id, args=args, workdir=workdir
            )
    finally:
        app.stop()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes of the app and of the bare app (REDIS_URL from the environment)",
    )
    parser.add_argument("--port", type=int, default=8011)
    parser.add_argument("--hello-port", type=int, default=8099)
    parser.add_argument("--endpoints", default="health,me,task_get,task_list,task_create")
    parser.add_argument("--login-burst", action="store_true")
    parser.add_argument("--memory", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results" / "latest.json")
    args = parser.parse_args()

    wrk_bin = ensure_wrk()
    workdir = Path(tempfile.mkdtemp(prefix="fasttrack-bench-"))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    report: dict[str, Any] = {
        "db": args.db,
        "workers": args.workers,
        "redis": bool(os.environ.get("REDIS_URL")),
        "connections": args.connections,
        "duration_s": args.duration,
    }
    results = [measure_hello(wrk_bin, args, workdir, env)]
    with database(args.db, workdir) as url:
        app_env = {
            **env,
            "DATABASE_URL": url,
            "RATE_LIMIT_ENABLED": "false",
            "LOG_LEVEL": "WARNING",
        }
        results += measure_app(wrk_bin, args, workdir, app_env, report)

    for result in results:
        result.ratio = round(result.requests_per_s / results[0].requests_per_s, 3)
    title = (
        f"fasttrack vs bare FastAPI: {args.db}{' + Redis' if report['redis'] else ''},"
        f" {args.workers} worker(s), {args.connections} connections, {args.duration:g} s each"
    )
    print_table(results, title=title, targets=TARGETS[args.db])
    for extra in ("login_burst", "memory"):
        if extra in report:
            print(f"{extra}: {json.dumps(report[extra])}")
    report["results"] = [asdict(result) | {"tail_ok": result.tail_ok} for result in results]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
