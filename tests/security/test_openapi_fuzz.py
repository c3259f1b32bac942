"""Schemathesis against the app's own OpenAPI document: in-process, authenticated, with
path ids that name real rows. Every response must be documented (status, content type,
headers, body schema), no request may cause a 5xx, and schema-valid requests are accepted."""

from dataclasses import dataclass, field
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis import Case, HookContext
from schemathesis.config import SchemathesisConfig
from schemathesis.openapi.checks import RejectedPositiveData
from sqlmodel.ext.asyncio.session import AsyncSession

from fasttrack.auth.tokens import TokenService, new_token_id
from fasttrack.core.config import Environment, Settings
from fasttrack.main import create_app
from fasttrack.notifications.models import Notification, NotificationType
from tests.factories import bearer, make_admin, make_comment, make_project, make_task, make_user

CONFIG: dict[str, Any] = {
    # Fixed seed, derandomized and no example database: every run sends the same requests.
    "seed": 20261121,
    "generation": {
        "max-examples": 8,
        "deterministic": True,
        "database": "none",
        # U+0000 is refused in every text field (PostgreSQL cannot store it); JSON Schema
        # has no way to say so.
        "allow-x00": False,
    },
    # Boundary values of every parameter and body field, and the methods no route serves.
    "phases": {"coverage": {"generation": {"mode": "positive"}}},
    "checks": {
        # A precondition is about the resource's state, not the request's shape: a
        # well-formed If-Match that no longer matches is a 412, as a conflict is a 409.
        "positive_data_acceptance": {
            "expected-statuses": ["2xx", "401", "403", "404", "409", "412", "429"]
        },
    },
}
# Fields whose 422 depends on more than their JSON Schema can say: passwords are limited
# in UTF-8 bytes, e-mail domains must be deliverable, an assignee must exist, and `("body",)`
# is the rule that `password` and `current_password` come together.
SEMANTIC_FIELDS = {
    ("body",),
    ("body", "email"),
    ("body", "password"),
    ("body", "current_password"),
    ("body", "assignee_id"),
}


@dataclass
class Rows:
    """Who calls, and the rows a fuzzed path id may name besides arbitrary ids."""

    caller_id: int = 0
    ids: dict[str, list[int]] = field(default_factory=dict)


ROWS = Rows()


def _document() -> dict[str, Any]:
    # The same settings as the test session's app, so building it changes no logging.
    application = create_app(
        Settings(_env_file=None, environment=Environment.test, log_level="WARNING")
    )
    application.state.hasher.close()
    document: dict[str, Any] = application.openapi()
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


@schema.hook
def filter_failure(context: HookContext, failure: Any, case: Case[Any], response: Any) -> bool:
    """Keep every failure but a 422 for a well-formed value the contract refuses: a cursor
    the server did not sign, or one of SEMANTIC_FIELDS."""
    if not isinstance(failure, RejectedPositiveData):
        return True
    problem = response.json()
    if problem.get("code") == "invalid_cursor":
        return False
    fields = {tuple(error["loc"]) for error in problem.get("errors", [])}
    return not fields or not fields <= SEMANTIC_FIELDS


@pytest.fixture
async def rows(session: AsyncSession) -> Rows:
    caller = await make_admin(session)
    other_admin = await make_admin(session)
    owner, assignee = await make_user(session), await make_user(session)
    mine = await make_project(session, owner=caller)
    theirs = await make_project(session, owner=owner)
    task = await make_task(session, project=mine, assignee=assignee)
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
def fuzz_app(settings: Settings, restore_logging: None) -> FastAPI:
    # Its own application: Schemathesis runs it on an event loop of its own, and ends
    # its lifespan after each test.
    return create_app(settings)


@schema.parametrize()
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_the_api_honours_its_openapi_document(
    case: Case[Any], fuzz_app: FastAPI, rows: Rows
) -> None:
    # An administrator sees and may change the most. A new session per request: a fuzzed
    # logout ends only its own.
    tokens: TokenService = fuzz_app.state.tokens
    pair, _ = tokens.issue_pair(rows.caller_id, sid=new_token_id())
    case.call_and_validate(app=fuzz_app, headers=bearer(pair.access_token))
