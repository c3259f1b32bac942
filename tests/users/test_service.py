"""users.service rules reached without HTTP (the CLI and other services call them)."""

import pytest
from fastapi import FastAPI

from fasttrack.core.security import PasswordHasher
from fasttrack.users import service as user_service


async def test_ensure_admin_needs_a_password_for_a_new_account(app: FastAPI) -> None:
    hasher: PasswordHasher = app.state.hasher
    async with app.state.database.session(write=True) as session:
        with pytest.raises(ValueError, match="password is needed"):
            await user_service.ensure_admin(
                session,
                "new@example.com",
                password=None,
                display_name=None,
                hasher=hasher,
                tokens=app.state.tokens,
            )
        assert await user_service.get_by_email(session, "new@example.com") is None
