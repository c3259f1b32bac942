"""Errors of the projects domain."""

from fasttrack.core.errors import Conflict, NotFound, UnprocessableEntity


class ProjectNotFound(NotFound):
    default_detail = "Project not found"


class MemberNotFound(NotFound):
    default_detail = "Member not found"


class UnknownUser(UnprocessableEntity):
    code = "unknown_user"
    default_detail = "No active user has that id or e-mail"


class NotAMember(UnprocessableEntity):
    code = "not_a_member"
    default_detail = "The user is not a member of this project"


class AlreadyAMember(Conflict):
    default_detail = "The user is already a member of this project"


class OwnerRowProtected(Conflict):
    default_detail = "The owner's membership changes only by a transfer of the project"
