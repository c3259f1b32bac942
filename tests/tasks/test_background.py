"""Work after the response: the assignment e-mail, and failures that never break a request."""

import logging
import socket
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from fastapi import FastAPI
from httpx import AsyncClient
from pydantic import SecretStr
from sqlmodel.ext.asyncio.session import AsyncSession

from fasttrack.core.config import Settings
from fasttrack.notifications.email import SmtpEmailSender
from tests.factories import (
    TEST_SECRET,
    RecordingEmailSender,
    login,
    make_member,
    make_project,
    make_task,
    make_user,
    swapped_email_sender,
)


async def test_creating_a_task_with_an_assignee_sends_them_an_email(
    client: AsyncClient, session: AsyncSession, outbox: RecordingEmailSender
) -> None:
    owner = await make_user(session, display_name="Olivia Owner")
    assignee = await make_user(session, display_name="Ann Assignee")
    project = await make_project(session, owner=owner, name="Launch")
    await make_member(session, project=project, user=assignee)

    response = await client.post(
        f"/projects/{project.id}/tasks",
        json={"title": "Book the venue", "assignee_id": assignee.id},
        headers=await login(client, owner),
    )

    assert response.status_code == 201
    assert len(outbox.messages) == 1
    message = outbox.messages[0]
    assert message["To"] == assignee.email
    assert message["Subject"] == "[Launch] You were assigned: Book the venue"
    text = message.get_content()
    assert "Hi Ann Assignee" in text
    assert "Olivia Owner assigned you" in text


async def test_reassigning_emails_only_the_new_assignee(
    client: AsyncClient, session: AsyncSession, outbox: RecordingEmailSender
) -> None:
    owner, first, second = [await make_user(session) for _ in range(3)]
    project = await make_project(session, owner=owner, name="Launch")
    task = await make_task(session, project=project, title="Venue", assignee=first)
    await make_member(session, project=project, user=second)
    headers = await login(client, owner)

    reassigned = await client.patch(
        f"/tasks/{task.id}", json={"assignee_id": second.id}, headers=headers
    )
    same_again = await client.patch(
        f"/tasks/{task.id}", json={"assignee_id": second.id, "title": "Venue"}, headers=headers
    )
    unassigned = await client.patch(
        f"/tasks/{task.id}", json={"assignee_id": None}, headers=headers
    )

    assert reassigned.status_code == same_again.status_code == unassigned.status_code == 200
    assert [(m["To"], m["Subject"]) for m in outbox.messages] == [
        (second.email, "[Launch] You were assigned: Venue")
    ]


async def test_no_email_without_an_assignee(
    client: AsyncClient, session: AsyncSession, outbox: RecordingEmailSender
) -> None:
    owner = await make_user(session)
    project = await make_project(session, owner=owner)
    headers = await login(client, owner)

    created = await client.post(
        f"/projects/{project.id}/tasks", json={"title": "t"}, headers=headers
    )
    await client.patch(
        f"/tasks/{created.json()['id']}", json={"status": "in_progress"}, headers=headers
    )

    assert outbox.messages == []


class _Inbox:
    """An aiosmtpd handler that keeps every envelope it accepts."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []

    async def handle_DATA(  # noqa: N802  (aiosmtpd's hook name)
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def smtp_server() -> Iterator[tuple[Controller, _Inbox]]:
    inbox = _Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=_free_port())
    controller.start()
    try:
        yield controller, inbox
    finally:
        controller.stop()


async def test_the_assignment_email_reaches_a_real_smtp_server(
    app: FastAPI,
    client: AsyncClient,
    session: AsyncSession,
    smtp_server: tuple[Controller, _Inbox],
) -> None:
    controller, inbox = smtp_server
    sender = SmtpEmailSender(
        Settings(
            _env_file=None,
            secret_key=SecretStr(TEST_SECRET),
            smtp_host=controller.hostname,
            smtp_port=controller.port,
            smtp_starttls=False,
            smtp_from="tracker@example.com",
        )
    )
    owner, assignee = await make_user(session), await make_user(session)
    project = await make_project(session, owner=owner, name="Launch")
    await make_member(session, project=project, user=assignee)

    with swapped_email_sender(app, sender):
        response = await client.post(
            f"/projects/{project.id}/tasks",
            json={"title": "Venue", "assignee_id": assignee.id},
            headers=await login(client, owner),
        )

    assert response.status_code == 201
    # aiosmtpd runs handle_DATA before it answers 250, and the job ran before the response.
    assert len(inbox.envelopes) == 1
    envelope = inbox.envelopes[0]
    assert envelope.mail_from == "tracker@example.com"
    assert envelope.rcpt_tos == [assignee.email]
    content = envelope.content
    assert isinstance(content, bytes)
    assert b"Subject: [Launch] You were assigned: Venue" in content


class _BrokenEmailSender:
    async def send(self, message: EmailMessage) -> None:
        raise ConnectionRefusedError("the mail server is down")


@pytest.mark.parametrize("action", ["create", "reassign"])
async def test_a_failing_background_job_is_logged_and_never_breaks_the_request(
    app: FastAPI,
    client: AsyncClient,
    session: AsyncSession,
    caplog: pytest.LogCaptureFixture,
    action: str,
) -> None:
    caplog.set_level(logging.ERROR, logger="fasttrack.background")
    owner, assignee = await make_user(session), await make_user(session)
    project = await make_project(session, owner=owner)
    await make_member(session, project=project, user=assignee)
    task = await make_task(session, project=project)
    headers = {**await login(client, owner), "X-Request-ID": f"req-{action}-42"}
    body: dict[str, Any] = {"assignee_id": assignee.id, "status": "in_progress"}

    with swapped_email_sender(app, _BrokenEmailSender()):
        if action == "create":
            response = await client.post(
                f"/projects/{project.id}/tasks", json={"title": "t", **body}, headers=headers
            )
        else:
            response = await client.patch(f"/tasks/{task.id}", json=body, headers=headers)

    assert response.status_code == (201 if action == "create" else 200)
    assert response.headers["x-request-id"] == f"req-{action}-42"
    records = [r for r in caplog.records if r.name == "fasttrack.background"]
    assert len(records) == 1
    record = records[0]
    assert record.getMessage() == "background job assignment-email failed"
    assert getattr(record, "request_id", None) == response.headers["x-request-id"]
    assert getattr(record, "job", None) == "assignment-email"
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], ConnectionRefusedError)
    # The other job of the same request still ran: the counts include the change.
    counts = (await client.get(f"/projects/{project.id}", headers=headers)).json()["task_counts"]
    assert counts["in_progress"] == 1
