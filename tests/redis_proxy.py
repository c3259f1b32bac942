"""A TCP proxy in front of Redis that can be cut and restored, to play a Redis outage."""

import asyncio
from urllib.parse import urlsplit, urlunsplit


class RedisProxy:
    """Forwards 127.0.0.1:<port> to Redis; `cut` drops every connection and refuses new
    ones, `start` (again) accepts on the same port."""

    def __init__(self, redis_url: str) -> None:
        self._url = urlsplit(redis_url)
        self.target = (self._url.hostname or "127.0.0.1", self._url.port or 6379)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        """The Redis URL, through the proxy."""
        return urlunsplit(self._url._replace(netloc=f"127.0.0.1:{self.port}"))

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        self._writers |= {writer, upstream_writer}
        await asyncio.gather(
            self._pipe(reader, upstream_writer),
            self._pipe(upstream_reader, writer),
            return_exceptions=True,
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()
            self._writers.discard(writer)
