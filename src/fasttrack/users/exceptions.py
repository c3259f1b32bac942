"""Errors of the users domain."""

from fasttrack.core.errors import Conflict, Forbidden, NotFound


class UserNotFound(NotFound):
    default_detail = "User not found"


class EmailTaken(Conflict):
    default_detail = "An account with this e-mail already exists"


class LastAdmin(Conflict):
    code = "last_admin"
    default_detail = "The last active admin cannot be demoted or deactivated"


class WrongCurrentPassword(Forbidden):
    code = "invalid_current_password"
    default_detail = "current_password is not the account's password"
