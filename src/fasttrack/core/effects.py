"""What a change tells the rest of the deployment once it has committed.

A service registers effects on the unit of work as it changes the database: the cache
scopes it touched, the events every process must hear (pushes to sockets, revoked
sessions), and work to run after the answer (e-mail). They travel with the transaction:
a commit makes them due, a rollback drops them, and whoever ends the unit of work (the
route class of the API, `Database.session` for jobs and the CLI) publishes what is due
before the answer leaves.
"""

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from fasttrack.core.background import Job
from fasttrack.core.cache import user_scope

Event = dict[str, Any]


def revocation_event(user_id: int, sids: Iterable[str] | None) -> Event:
    return {"kind": "revocation", "user_id": user_id, "sids": None if sids is None else list(sids)}


@dataclass(slots=True)
class Effects:
    scopes: set[str] = field(default_factory=set)
    events: list[Event] = field(default_factory=list)
    jobs: list[tuple[str, Job]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.scopes or self.events or self.jobs)

    def invalidate(self, *scopes: str) -> None:
        """What was read from `scopes` is stale once this commits."""
        self.scopes.update(scopes)

    def revoke(self, user_id: int, sids: Iterable[str] | None) -> None:
        """The user's sessions `sids` (all for None) end once this commits: their
        cached credentials go stale, and their sockets close wherever they are open."""
        self.invalidate(user_scope(user_id))
        self.announce(revocation_event(user_id, sids))

    def announce(self, event: Event) -> None:
        """Every process of the deployment hears `event` once this commits."""
        self.events.append(event)

    def run_after(self, name: str, job: Job) -> None:
        """Run `job` once this committed and the answer left; a failure is logged."""
        self.jobs.append((name, job))

    def take(self, other: "Effects") -> None:
        self.scopes |= other.scopes
        self.events += other.events
        self.jobs += other.jobs


class Publisher(Protocol):
    """Makes effects known: the hub of a server, or of a command."""

    async def prepare(self, scopes: Collection[str]) -> None:
        """Before the change commits; raises if its effects could not be made known."""

    async def publish(self, effects: Effects) -> None:
        """After the commit; never raises."""
