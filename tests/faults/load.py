"""Steady concurrent traffic against a running server, every answer recorded with its timing."""

import itertools
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import Self

import httpx

# (method, path, JSON body or None), chosen round-robin by each client.
Request = tuple[str, str, dict[str, object] | None]


@dataclass(frozen=True, slots=True)
class Sample:
    """One request: when it started (monotonic), how long it took and what came back."""

    request: Request
    started: float
    elapsed: float
    status: int  # 0: the connection failed, no HTTP answer at all
    content_type: str
    code: str | None
    retry_after: str | None

    @property
    def finished(self) -> float:
        return self.started + self.elapsed

    def __str__(self) -> str:
        method, path, _ = self.request
        return f"{method} {path} -> {self.status} {self.code} in {self.elapsed:.3f} s"


class Load:
    """`clients` threads sending `requests` in turn until the block ends."""

    def __init__(
        self,
        base_url: str,
        headers: dict[str, str],
        requests: Iterable[Request],
        *,
        clients: int = 4,
        timeout: float = 10,
    ) -> None:
        self.samples: list[Sample] = []
        self._base_url = base_url
        self._headers = headers
        self._requests = list(requests)
        self._clients = clients
        self._timeout = timeout
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=clients)
        self._running: list[Future[None]] = []

    def __enter__(self) -> Self:
        self._running = [self._pool.submit(self._client, n) for n in range(self._clients)]
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._pool.shutdown(wait=True)
        if exc is None:
            for future in self._running:
                future.result()

    def _client(self, number: int) -> None:
        requests = itertools.islice(itertools.cycle(self._requests), number, None)
        with httpx.Client(
            base_url=self._base_url, headers=self._headers, timeout=self._timeout
        ) as client:
            for request in requests:
                if self._stop.is_set():
                    return
                self._record(self._send(client, request))

    @staticmethod
    def _send(client: httpx.Client, request: Request) -> Sample:
        method, path, body = request
        started = time.monotonic()
        try:
            response = client.request(method, path, json=body)
        except httpx.TransportError:
            return Sample(request, started, time.monotonic() - started, 0, "", None, None)
        elapsed = time.monotonic() - started
        content_type = response.headers.get("content-type", "")
        body = response.json() if content_type.endswith("json") else None
        code = body.get("code") if isinstance(body, dict) else None
        return Sample(
            request,
            started,
            elapsed,
            response.status_code,
            content_type,
            code if isinstance(code, str) else None,
            response.headers.get("retry-after"),
        )

    def _record(self, sample: Sample) -> None:
        with self._lock:
            self.samples.append(sample)

    def since(self, moment: float, *, until: float = float("inf")) -> list[Sample]:
        """The samples started within [moment, until)."""
        with self._lock:
            return [s for s in self.samples if moment <= s.started < until]

    def count(self, moment: float, accept: Callable[[Sample], bool]) -> int:
        return sum(1 for sample in self.since(moment) if accept(sample))
