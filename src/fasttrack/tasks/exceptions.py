"""Errors of the tasks domain."""

from fasttrack.core.errors import Conflict, NotFound, UnprocessableEntity


class TaskNotFound(NotFound):
    default_detail = "Task not found"


class InvalidTransition(Conflict):
    code = "invalid_transition"
    default_detail = "This status change is not allowed"


class InvalidAssignee(UnprocessableEntity):
    default_detail = "assignee_id must be the id of an active member of the project"

    def __init__(self) -> None:
        super().__init__(
            errors=[
                {
                    "loc": ["body", "assignee_id"],
                    "msg": self.default_detail,
                    "type": "invalid_assignee",
                }
            ]
        )
