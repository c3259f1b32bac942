"""Outgoing e-mail: a small sender interface with a logging default and an SMTP backend."""

import logging
import re
from email.message import EmailMessage
from typing import Final, Protocol

import aiosmtplib

from fasttrack.core.config import Settings

logger = logging.getLogger("fasttrack.email")

# The control characters (Unicode category Cc) and the line and paragraph separators: every
# character `str.splitlines()` breaks at is among them.
_NOT_IN_HEADERS: Final = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


class EmailSender(Protocol):
    async def send(self, message: EmailMessage) -> None: ...


class LoggingEmailSender:
    """Writes each message to the log instead of sending it (the default)."""

    def __init__(self, sender: str) -> None:
        self.sender = sender

    async def send(self, message: EmailMessage) -> None:
        message["From"] = self.sender
        logger.info(
            "e-mail to %s: %s",
            message["To"],
            message["Subject"],
            extra={"to": message["To"], "subject": message["Subject"]},
        )


class SmtpEmailSender:
    """Sends through an SMTP server with aiosmtplib (when `SMTP_HOST` is set)."""

    def __init__(self, settings: Settings) -> None:
        assert settings.smtp_host is not None
        self.sender = settings.smtp_from
        self._host = settings.smtp_host
        self._port = settings.smtp_port
        self._username = settings.smtp_username
        self._password = (
            settings.smtp_password.get_secret_value() if settings.smtp_password else None
        )
        self._starttls = settings.smtp_starttls

    async def send(self, message: EmailMessage) -> None:
        message["From"] = self.sender
        await aiosmtplib.send(
            message,
            hostname=self._host,
            port=self._port,
            username=self._username,
            password=self._password,
            start_tls=self._starttls,
            timeout=10,
        )


def create_email_sender(settings: Settings) -> EmailSender:
    if settings.smtp_host:
        return SmtpEmailSender(settings)
    return LoggingEmailSender(settings.smtp_from)


def header_text(value: str) -> str:
    """`value` made fit for a header: no line break or other control character, one space
    between words.

    The email package refuses a header value with any character `str.splitlines()` breaks
    at (its guard against header injection), and the e-mail is built after the change is
    committed, so user text in a header must never be able to make it fail.
    """
    return " ".join(_NOT_IN_HEADERS.sub(" ", value).split())


def assignment_email(
    *, to: str, assignee_name: str, task_title: str, project_name: str, assigned_by: str
) -> EmailMessage:
    message = EmailMessage()
    message["To"] = header_text(to)
    message["Subject"] = header_text(f"[{project_name}] You were assigned: {task_title}")
    message.set_content(
        f"Hi {assignee_name},\n\n"
        f"{assigned_by} assigned you the task “{task_title}” in the project “{project_name}”.\n"
    )
    return message
