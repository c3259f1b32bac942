"""The EmailSender backends and the assignment message."""

import logging

import pytest
from httpx import AsyncClient
from pydantic import SecretStr
from sqlmodel.ext.asyncio.session import AsyncSession

from fasttrack.core.config import Settings
from fasttrack.notifications.email import (
    LoggingEmailSender,
    SmtpEmailSender,
    assignment_email,
    create_email_sender,
    header_text,
)
from tests.factories import (
    TEST_SECRET,
    RecordingEmailSender,
    login,
    make_member,
    make_project,
    make_user,
)


@pytest.mark.parametrize(
    ("smtp_host", "backend"), [(None, LoggingEmailSender), ("mail.example.com", SmtpEmailSender)]
)
def test_smtp_is_used_only_when_a_host_is_set(smtp_host: str | None, backend: type) -> None:
    settings = Settings(_env_file=None, secret_key=SecretStr(TEST_SECRET), smtp_host=smtp_host)

    assert isinstance(create_email_sender(settings), backend)


async def test_the_logging_sender_logs_recipient_and_subject(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="fasttrack.email")
    message = assignment_email(
        to="ann@example.com",
        assignee_name="Ann",
        task_title="Venue",
        project_name="Launch",
        assigned_by="Olivia",
    )

    await LoggingEmailSender("tracker@example.com").send(message)

    assert message["From"] == "tracker@example.com"
    assert [r.getMessage() for r in caplog.records if r.name == "fasttrack.email"] == [
        "e-mail to ann@example.com: [Launch] You were assigned: Venue"
    ]


# Every character `str.splitlines()` breaks at, which the email package refuses in a header.
LINE_BREAKS = ["\n", "\x0b", "\x0c", "\r", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]


def test_the_line_breaks_are_every_boundary_of_splitlines() -> None:
    boundaries = [c for c in map(chr, range(0x110000)) if len(f"a{c}b".splitlines()) == 2]
    assert boundaries == LINE_BREAKS


@pytest.mark.parametrize("character", LINE_BREAKS, ids=[f"U+{ord(c):04X}" for c in LINE_BREAKS])
def test_line_breaks_in_the_title_and_project_name_cannot_break_the_email(character: str) -> None:
    message = assignment_email(
        to="ann@example.com",
        assignee_name="Ann",
        task_title=f"Book {character} the{character}{character}venue",
        project_name=f"Big{character}launch",
        assigned_by="Olivia",
    )

    message.as_string()
    message.as_bytes()
    assert message["Subject"] == "[Big launch] You were assigned: Book the venue"
    # The body keeps the title as written (bar line endings, which e-mail normalises).
    body = message.get_content()
    assert "Book" in body
    assert "venue" in body
    assert "launch" in body


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("plain words", "plain words"),
        ("tab\there", "tab here"),
        ("nul\x00bell\x07escape\x1bdelete\x7fcsi\x9bend", "nul bell escape delete csi end"),
        ("  surrounding\r\n\r\n space  ", "surrounding space"),
        ("unicode spaces\u00a0\u3000stay words", "unicode spaces stay words"),
        ("“quotes” and ünïcödé", "“quotes” and ünïcödé"),
        ("\x0b\x1c", ""),
    ],
)
def test_header_text_keeps_the_words_and_nothing_that_breaks_a_line(
    value: str, expected: str
) -> None:
    assert header_text(value) == expected


async def test_a_task_titled_with_a_vertical_tab_is_created_and_its_assignee_emailed(
    client: AsyncClient, session: AsyncSession, outbox: RecordingEmailSender
) -> None:
    owner = await make_user(session)
    assignee = await make_user(session)
    project = await make_project(session, owner=owner, name="Launch")
    await make_member(session, project=project, user=assignee)

    response = await client.post(
        f"/projects/{project.id}/tasks",
        json={"title": "a \u000b b", "assignee_id": assignee.id},
        headers=await login(client, owner),
    )

    assert response.status_code == 201, response.text
    assert response.json()["title"] == "a \u000b b"
    [message] = outbox.messages
    assert message["Subject"] == "[Launch] You were assigned: a b"
    assert "“a \u000b b”" in message.get_content()
