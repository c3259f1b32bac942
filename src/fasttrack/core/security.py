"""Password hashing with bcrypt, off the event loop in a bounded thread pool."""

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Final, TypeVar

import bcrypt

# bcrypt hashes only the first 72 bytes; longer passwords are refused by the input models.
MAX_PASSWORD_BYTES: Final = 72
MIN_PASSWORD_BYTES: Final = 8

T = TypeVar("T")


class PasswordHasher:
    """Hashes and verifies passwords in a small dedicated thread pool.

    The pool is bounded so a burst of logins queues here instead of occupying every
    thread of the default executor, and the event loop keeps serving other requests.
    """

    def __init__(self, *, rounds: int, workers: int) -> None:
        self._rounds = rounds
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bcrypt")
        self._dummy_hash: bytes | None = None

    async def hash(self, password: str) -> str:
        salt = bcrypt.gensalt(rounds=self._rounds)
        hashed = await self._run(bcrypt.hashpw, password.encode(), salt)
        return hashed.decode()

    async def verify(self, password: str, hashed: str) -> bool:
        return await self._run(bcrypt.checkpw, password.encode(), hashed.encode())

    async def verify_against_dummy(self, password: str) -> None:
        """Spend the same time as a real verification, for an e-mail that has no account.

        Without it, "unknown e-mail" would answer measurably faster than "wrong password"
        and let anyone enumerate accounts by timing.
        """
        if self._dummy_hash is None:
            self._dummy_hash = (await self.hash("not-a-real-password")).encode()
        await self._run(bcrypt.checkpw, password.encode(), self._dummy_hash)

    async def _run(self, function: Callable[..., T], *args: bytes) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, partial(function, *args))

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
