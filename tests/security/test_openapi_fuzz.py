"""Schemathesis against the app's own OpenAPI document: in-process, authenticated, with
path ids that name real rows, one operation at a time and in chains of calls linked by the
data they pass on. Every check runs: every response must be documented (status, content
type, headers, body schema), no request may cause a 5xx, every schema-valid request is
accepted and every schema-invalid one refused, a created resource can be read and a
deleted one cannot, and no operation ignores its authentication."""

import asyncio
import re
from dataclasses import dataclass, field
from typing import Any, Final

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis import Case, HookContext
from schemathesis.config import SchemathesisConfig
from schemathesis.openapi.checks import RejectedPositiveData
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from fasttrack.auth.tokens import TokenService, new_token_id
from fasttrack.core.config import Environment, Settings
from fasttrack.core.db import execute
from fasttrack.core.pagination import CURSOR_PATTERN
from fasttrack.main import create_app
from fasttrack.notifications.models import Notification, NotificationType
from fasttrack.projects.models import MemberRole
from tests.factories import (
    bearer,
    make_admin,
    make_comment,
    make_member,
    make_project,
    make_task,
    make_user,
)

CONFIG: dict[str, Any] = {
    # Fixed seed, derandomized and no example database: every run sends the same requests.
    "seed": 20261121,
    "generation": {"max-examples": 8, "deterministic": True, "database": "none"},
    "checks": {
        # A precondition is about the resource's state, not the request's shape: a
        # well-formed If-Match that no longer matches is a 412, as a conflict is a 409.
        "positive_data_acceptance": {
            "expected-statuses": ["2xx", "401", "403", "404", "409", "412", "429"]
        },
    },
}
# Chains of calls: how many, and how long at most.
SCENARIOS: Final = 80
STEPS: Final = 8
WELL_FORMED_CURSOR: Final = re.compile(CURSOR_PATTERN)


@dataclass
class Rows:
    """Who calls, and the rows a fuzzed path id may name besides arbitrary ids."""

    caller_id: int = 0
    ids: dict[str, list[int]] = field(default_factory=dict)


ROWS = Rows()


def _utf8_text(minimum: int, maximum: int) -> st.SearchStrategy[str]:
    """Strings of `minimum` to `maximum` bytes in UTF-8."""

    def fits(text: str) -> bool:
        return minimum <= len(text.encode()) <= maximum

    fewest = -(-minimum // 4)
    ascii_character = st.characters(codec="ascii")
    astral_character = st.characters(min_codepoint=0x10000, codec="utf-8")
    # One byte a character and four span the byte range without a filter; the fewest and
    # the most characters the bounds admit, which the coverage phase asks for, are drawn
    # on their own so that it finds them at once.
    return st.one_of(
        st.text(ascii_character, min_size=minimum, max_size=maximum),
        st.text(ascii_character, min_size=maximum, max_size=maximum),
        st.text(astral_character, min_size=fewest, max_size=maximum // 4),
        st.text(astral_character, min_size=fewest, max_size=fewest + 1),
        st.text(st.characters(codec="utf-8"), max_size=maximum).filter(fits),
    )


def _with_utf8_formats(node: Any) -> Any:
    """The document, its `x-utf8-bytes` byte bounds made a `format` Schemathesis can draw.

    JSON Schema has no byte length; the extension states it (see core.inputs.Utf8Bytes) and
    a format strategy per pair of bounds lets the fuzzer honour it exactly.
    """
    if isinstance(node, list):
        return [_with_utf8_formats(item) for item in node]
    if not isinstance(node, dict):
        return node
    copied = {key: _with_utf8_formats(value) for key, value in node.items()}
    bounds = node.get("x-utf8-bytes")
    if isinstance(bounds, dict):
        name = f"utf8-bytes-{bounds['minimum']}-{bounds['maximum']}"
        schemathesis.openapi.format(name, _utf8_text(bounds["minimum"], bounds["maximum"]))
        copied["format"] = name
    return copied


def _document() -> dict[str, Any]:
    # The same settings as the test session's app, so building it changes no logging.
    application = create_app(
        Settings(_env_file=None, environment=Environment.test, log_level="WARNING")
    )
    application.state.hasher.close()
    document: dict[str, Any] = _with_utf8_formats(application.openapi())
    return document


schema = schemathesis.openapi.from_dict(_document(), config=SchemathesisConfig.from_dict(CONFIG))


@schema.hook
def before_generate_path_parameters(context: HookContext, strategy: Any) -> Any:
    def with_real_ids(generated: dict[str, Any] | None) -> Any:
        if not isinstance(generated, dict):
            return st.just(generated)
        return st.fixed_dictionaries(
            {
                name: st.sampled_from(ROWS.ids[name]) | st.just(value)
                if name in ROWS.ids
                else st.just(value)
                for name, value in generated.items()
            }
        )

    return strategy.flatmap(with_real_ids)


def _is_unsigned_cursor(case: Case[Any], problem: dict[str, Any]) -> bool:
    # The document gives the cursor's shape; that the server signed it for this list, no
    # schema can say.
    cursor = (case.query or {}).get("cursor")
    return (
        problem.get("code") == "invalid_cursor"
        and isinstance(cursor, str)
        and WELL_FORMED_CURSOR.fullmatch(cursor) is not None
    )


def _is_unknown_assignee(problem: dict[str, Any]) -> bool:
    # An assignee must be an active member of the task's project: a fact about the database.
    errors = problem.get("errors") or []
    return bool(errors) and all(
        error["loc"] == ["body", "assignee_id"] and error["type"] == "invalid_assignee"
        for error in errors
    )


@schema.hook
def filter_failure(context: HookContext, failure: Any, case: Case[Any], response: Any) -> bool:
    """Keep every failure but the 422s for well-formed values that only the database or the
    server's key can refuse."""
    if not isinstance(failure, RejectedPositiveData) or response.status_code != 422:
        return True
    problem = response.json()
    return not (
        _is_unsigned_cursor(case, problem)
        or _is_unknown_assignee(problem)
        # Who is an active user, and who a member of the project, only the database knows.
        or problem.get("code") in {"unknown_user", "not_a_member"}
    )


async def _make_rows(session: AsyncSession) -> Rows:
    caller = await make_admin(session)
    other_admin = await make_admin(session)
    owner, assignee = await make_user(session), await make_user(session)
    mine = await make_project(session, owner=caller)
    theirs = await make_project(session, owner=owner)
    # The assignee is a viewer of `mine` by being assigned there, and an editor of `theirs`.
    task = await make_task(session, project=mine, assignee=assignee)
    await make_member(session, project=theirs, user=assignee, role=MemberRole.editor)
    other_task = await make_task(session, project=theirs)
    comment = await make_comment(session, task=task, author=caller)
    other_comment = await make_comment(session, task=task, author=owner)
    assert caller.id is not None
    notification = Notification(user_id=caller.id, type=NotificationType.task_assigned, data={})
    session.add(notification)
    await session.commit()
    ROWS.caller_id = caller.id
    named = {
        "project_id": [mine.id, theirs.id],
        "task_id": [task.id, other_task.id],
        "comment_id": [comment.id, other_comment.id],
        "user_id": [other_admin.id, owner.id, assignee.id],
        "notification_id": [notification.id],
    }
    ROWS.ids = {name: [row for row in ids if row is not None] for name, ids in named.items()}
    return ROWS


@pytest.fixture
async def rows(session: AsyncSession) -> Rows:
    return await _make_rows(session)


@pytest.fixture
def fuzz_app(settings: Settings, restore_logging: None) -> FastAPI:
    # Its own application: Schemathesis runs it on an event loop of its own, and ends
    # its lifespan after each test.
    return create_app(settings)


def _caller_headers(app: FastAPI, rows: Rows) -> dict[str, str]:
    # An administrator sees and may change the most. A new session per request: a fuzzed
    # logout ends only its own.
    tokens: TokenService = app.state.tokens
    pair, _ = tokens.issue_pair(rows.caller_id, sid=new_token_id())
    return bearer(pair.access_token)


@schema.parametrize()
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_the_api_honours_its_openapi_document(
    case: Case[Any], fuzz_app: FastAPI, rows: Rows
) -> None:
    case.call_and_validate(app=fuzz_app, headers=_caller_headers(fuzz_app, rows))


Calls = schema.as_state_machine()


async def test_chained_calls_honour_the_openapi_document(
    app: FastAPI, fuzz_app: FastAPI, session: AsyncSession
) -> None:
    loop = asyncio.get_running_loop()

    async def fresh_rows() -> None:
        # Every chain starts from the same rows, so that Hypothesis sees the same responses
        # whenever it draws the same calls (and can replay and shrink a failing chain).
        async with app.state.database.session(write=True) as writer:
            for table in reversed(SQLModel.metadata.sorted_tables):
                await execute(writer, table.delete())
            await writer.commit()
        # Deleted behind the fuzzed app's back: what it cached is stale now.
        fuzz_app.state.caches.clear()
        await _make_rows(session)

    class CallerCalls(Calls):  # type: ignore[misc, valid-type]
        def setup(self) -> None:
            asyncio.run_coroutine_threadsafe(fresh_rows(), loop).result()

        def get_call_kwargs(self, case: Case[Any]) -> dict[str, Any]:
            return {"app": fuzz_app, "headers": _caller_headers(fuzz_app, ROWS)}

    # The chains run on a thread of their own: this loop serves `fresh_rows`.
    await asyncio.to_thread(
        CallerCalls.run,
        settings=settings(
            max_examples=SCENARIOS,
            stateful_step_count=STEPS,
            derandomize=True,
            database=None,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        ),
    )
