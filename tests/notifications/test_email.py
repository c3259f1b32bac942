"""The EmailSender backends and the assignment message."""

import logging

import pytest
from pydantic import SecretStr

from fasttrack.core.config import Settings
from fasttrack.notifications.email import (
    LoggingEmailSender,
    SmtpEmailSender,
    assignment_email,
    create_email_sender,
)
from tests.factories import TEST_SECRET


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
