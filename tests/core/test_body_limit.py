"""Request bodies over 1 MiB answer 413 before they are read further (SPEC §3)."""

import asyncio
import json
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Self

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.types import Message, Receive, Scope, Send

from fasttrack.core.body_limit import MAX_BODY_BYTES, BodyLimitMiddleware, BodyTooLarge
from fasttrack.core.errors import PROBLEM_MEDIA_TYPE
from tests.factories import DEFAULT_PASSWORD, make_user
from tests.servers import free_port, server

CHUNK: Final = 64 * 1024
# An upload that never ends unless someone stops reading it: 4 MiB before the test gives up.
ENDLESS: Final = 64
JSON: Final = {"content-type": "application/json"}
SECURITY_HEADERS: Final = ("x-content-type-options", "x-frame-options", "content-security-policy")


@dataclass
class Upload:
    """A request body handed over chunk by chunk, as a server would, counting what was pulled."""

    chunks: list[bytes]
    pulled: int = 0
    receives: int = 0

    @classmethod
    def endless(cls) -> Self:
        return cls([b" " * CHUNK] * ENDLESS)

    async def receive(self) -> Message:
        self.receives += 1
        if self.receives > len(self.chunks):
            return {"type": "http.request", "body": b"", "more_body": False}
        chunk = self.chunks[self.receives - 1]
        self.pulled += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": True}


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def problem(self) -> Any:
        assert self.headers["content-type"] == PROBLEM_MEDIA_TYPE
        return json.loads(self.body)


async def call(
    app: Any,
    upload: Upload,
    *,
    method: str = "POST",
    path: str = "/api/v1/auth/login",
    headers: Iterable[tuple[str, str]] = (("content-type", "application/json"),),
) -> Answer:
    """Drive the ASGI `app` with one request whose body comes from `upload`."""
    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(name.lower().encode(), value.encode()) for name, value in headers],
        "client": ("127.0.0.1", 50000),
        "server": ("test", 80),
    }
    messages: list[Message] = []

    async def send(message: Message) -> None:
        messages.append(message)

    await app(scope, upload.receive, send)
    start = next(m for m in messages if m["type"] == "http.response.start")
    return Answer(
        status=start["status"],
        headers={name.decode(): value.decode() for name, value in start["headers"]},
        body=b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body"),
    )


def assert_refused(answer: Answer, *, path: str = "/api/v1/auth/login") -> None:
    assert answer.status == 413
    problem = answer.problem()
    assert problem["code"] == "payload_too_large"
    assert problem["status"] == 413
    assert problem["instance"] == path
    assert problem["request_id"] == answer.headers["x-request-id"]
    assert answer.headers["connection"] == "close"
    assert all(name in answer.headers for name in SECURITY_HEADERS)


async def test_a_declared_body_over_the_limit_is_refused_without_reading_it(
    app: FastAPI,
) -> None:
    upload = Upload.endless()

    answer = await call(app, upload, headers=[*JSON.items(), ("content-length", "2097152")])

    assert_refused(answer)
    assert upload.receives == 0


async def test_a_413_is_a_problem_with_the_request_id_and_security_headers(
    client: AsyncClient,
) -> None:
    request_id = str(uuid.uuid4())

    response = await client.post(
        "/auth/login",
        content=b" " * (MAX_BODY_BYTES + 1),
        headers={**JSON, "X-Request-ID": request_id},
    )

    assert response.status_code == 413
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
    assert response.headers["x-request-id"] == request_id
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.json() == {
        "type": "about:blank",
        "title": "Request Entity Too Large",
        "status": 413,
        "detail": f"The request body is larger than {MAX_BODY_BYTES} bytes",
        "instance": "/api/v1/auth/login",
        "code": "payload_too_large",
        "request_id": request_id,
    }


async def test_a_body_of_exactly_the_limit_is_read(
    client: AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    credentials = json.dumps({"email": user.email, "password": DEFAULT_PASSWORD}).encode()
    body = credentials.ljust(MAX_BODY_BYTES)  # JSON allows trailing whitespace
    assert len(body) == MAX_BODY_BYTES

    response = await client.post("/auth/login", content=body, headers=JSON)

    assert response.status_code == 200, response.text
    assert "access_token" in response.json()


async def test_a_streamed_body_is_cut_off_just_past_the_limit(app: FastAPI) -> None:
    upload = Upload.endless()

    answer = await call(app, upload, headers=JSON.items())

    assert_refused(answer)
    # The chunk that crossed the limit was the last one pulled.
    assert upload.pulled == MAX_BODY_BYTES + CHUNK


async def test_a_content_length_that_lies_does_not_lift_the_limit(app: FastAPI) -> None:
    upload = Upload.endless()

    answer = await call(app, upload, headers=[*JSON.items(), ("content-length", "10")])

    assert_refused(answer)
    assert upload.pulled == MAX_BODY_BYTES + CHUNK


async def test_a_streamed_body_over_the_limit_gets_a_413_from_the_client_side(
    client: AsyncClient,
) -> None:
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(ENDLESS):
            sent += CHUNK
            yield b" " * CHUNK

    response = await client.post("/auth/login", content=chunks(), headers=JSON)

    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"
    assert sent == MAX_BODY_BYTES + CHUNK


@pytest.mark.parametrize("declared", [True, False], ids=["declared", "streamed"])
@pytest.mark.parametrize(
    "path", ["/api/v1/auth/login", "/api/v1/projects"], ids=["login", "authenticated route"]
)
async def test_413_answers_before_401_and_422(app: FastAPI, declared: bool, path: str) -> None:
    size = 2 * MAX_BODY_BYTES
    headers = [*JSON.items(), ("content-length", str(size))] if declared else JSON.items()

    answer = await call(app, Upload([b"x" * CHUNK] * (size // CHUNK)), path=path, headers=headers)

    assert_refused(answer, path=path)


async def test_requests_without_a_body_are_unaffected(client: AsyncClient) -> None:
    assert (await client.get("/users/me")).status_code == 401
    assert (await client.get("http://test/health")).status_code == 200


@pytest.mark.parametrize(
    "content_length",
    [["abc"], ["-1"], [""], ["1, 2"], ["1", "2"], ["+5"], ["0x10"], ["½"]],
    ids=["letters", "negative", "empty", "list", "two headers", "sign", "hex", "non-ASCII"],
)
async def test_a_malformed_content_length_is_a_400(app: FastAPI, content_length: list[str]) -> None:
    headers = [*JSON.items(), *(("content-length", value) for value in content_length)]
    upload = Upload([b"{}"])

    answer = await call(app, upload, headers=headers)

    assert answer.status == 400
    assert answer.problem()["code"] == "bad_request"
    assert upload.receives == 0


async def test_repeats_of_one_length_count_as_that_length(app: FastAPI) -> None:
    body = b'{"email": "nobody@example.com", "password": "not the password"}'
    length = str(len(body))
    headers = [*JSON.items(), ("content-length", f"{length}, {length}"), ("content-length", length)]

    answer = await call(app, Upload([body]), headers=headers)

    assert answer.status == 401


async def test_a_length_of_thousands_of_digits_is_too_large_not_an_error(app: FastAPI) -> None:
    headers = [*JSON.items(), ("content-length", "9" * 5000)]

    assert_refused(await call(app, Upload([]), headers=headers))


@dataclass
class Reader:
    """An ASGI app that reads its whole body, then answers how much it got."""

    start_first: bool = False
    got: int = 0
    scopes: list[Scope] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scopes.append(scope)
        if self.start_first:
            await send({"type": "http.response.start", "status": 200, "headers": []})
        more = True
        while more:
            message = await receive()
            self.got += len(message.get("body", b""))
            more = message.get("more_body", False)
        if not self.start_first:
            await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(self.got).encode()})


@pytest.mark.parametrize(
    ("size", "status"), [(MAX_BODY_BYTES, 200), (MAX_BODY_BYTES + 1, 413)], ids=["at", "over"]
)
async def test_the_limit_is_inclusive(size: int, status: int) -> None:
    reader = Reader()
    chunks = [b"x" * CHUNK] * (MAX_BODY_BYTES // CHUNK) + [b"x" * (size - MAX_BODY_BYTES)]

    answer = await call(BodyLimitMiddleware(reader), Upload(chunks))

    assert answer.status == status
    assert reader.got == MAX_BODY_BYTES


async def test_a_response_already_started_ends_with_the_connection() -> None:
    reader = Reader(start_first=True)
    upload = Upload.endless()

    with pytest.raises(BodyTooLarge):
        await call(BodyLimitMiddleware(reader), upload)

    assert reader.got == MAX_BODY_BYTES
    assert upload.pulled == MAX_BODY_BYTES + CHUNK


@pytest.mark.parametrize("kind", ["websocket", "lifespan"])
async def test_other_scopes_pass_untouched(kind: str) -> None:
    seen: list[tuple[Scope, Receive, Send]] = []

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append((scope, receive, send))

    async def receive() -> Message:
        raise AssertionError("not called")

    async def send(message: Message) -> None:
        raise AssertionError("not called")

    scope: Scope = {"type": kind, "headers": [(b"content-length", b"99999999")]}
    await BodyLimitMiddleware(inner)(scope, receive, send)

    assert seen == [(scope, receive, send)]


async def test_a_real_server_refuses_a_declared_64_mib_body_at_once(tmp_path: Path) -> None:
    port = free_port()
    env = {
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/body-limit.db",
        "SECRET_KEY": "a-secret-for-the-body-limit-test-of-48-characters",
        "LOG_LEVEL": "WARNING",
        "RATE_LIMIT_ENABLED": "false",
    }
    argv = [str(Path(sys.executable).parent / "fasttrack"), "serve", "--port", str(port)]
    with server(argv, port=port, env=env):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            started = time.monotonic()
            writer.write(
                b"POST /api/v1/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b'Content-Type: application/json\r\nContent-Length: 67108864\r\n\r\n{"em'
            )
            await writer.drain()
            # The server closes the connection after the 413: the rest is never read.
            raw = await asyncio.wait_for(reader.read(), timeout=5)
            elapsed = time.monotonic() - started
        finally:
            writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 "), raw
    assert json.loads(body)["code"] == "payload_too_large"
    assert elapsed < 5
