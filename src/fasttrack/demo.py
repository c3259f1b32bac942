"""Demo data for `fasttrack seed-demo`, created through the same services as the API."""

from dataclasses import dataclass
from typing import Final

from fasttrack.comments import service as comment_service
from fasttrack.comments.models import CommentCreate
from fasttrack.core.db import Database
from fasttrack.core.security import PasswordHasher
from fasttrack.notifications.email import EmailSender
from fasttrack.projects import members
from fasttrack.projects import service as project_service
from fasttrack.projects.models import MemberAdd, MemberRole, ProjectCreate, ProjectSummary
from fasttrack.tasks import service as task_service
from fasttrack.tasks.models import Priority, TaskCreate, TaskStatus, TaskUpdate
from fasttrack.users import service as user_service
from fasttrack.users.models import Role, User, UserCreate, UserRead

DEMO_PASSWORD: Final = "demo-password"  # noqa: S105  (printed for the demo on purpose)
DEMO_USERS: Final = (
    ("admin@demo.fasttrack.dev", "Ada Admin", Role.admin),
    ("alice@demo.fasttrack.dev", "Alice Owner", Role.user),
    ("bob@demo.fasttrack.dev", "Bob Builder", Role.user),
)
# (title, priority, assignee index into DEMO_USERS or None, final status)
DEMO_TASKS: Final = (
    ("Draft the launch checklist", Priority.high, 2, TaskStatus.done),
    ("Book the venue", Priority.medium, 2, TaskStatus.in_progress),
    ("Design the invitation", Priority.low, None, TaskStatus.todo),
    ("Order catering", Priority.medium, 1, TaskStatus.todo),
)
# How a task reaches each status through the allowed moves.
PATH_TO: Final = {
    TaskStatus.todo: (),
    TaskStatus.in_progress: (TaskStatus.in_progress,),
    TaskStatus.done: (TaskStatus.in_progress, TaskStatus.done),
}


class DemoAlreadySeeded(Exception):
    """The demo accounts exist already; seeding twice would duplicate the projects."""


@dataclass(frozen=True, slots=True)
class DemoLogin:
    email: str
    password: str
    role: Role


async def seed(database: Database, hasher: PasswordHasher, mailer: EmailSender) -> list[DemoLogin]:
    """Create demo users, two projects with tasks in every status, and comments."""
    async with database.unit_of_work(write=True) as work:
        session = await work.session()
        if await user_service.get_by_email(session, DEMO_USERS[0][0]) is not None:
            raise DemoAlreadySeeded()
        users: list[User] = []
        for email, name, role in DEMO_USERS:
            body = UserCreate(email=email, password=DEMO_PASSWORD, display_name=name)
            users.append(await user_service.create(session, body, hasher=hasher, role=role))
        owner = UserRead.model_validate(users[1], from_attributes=True)
        launch = await project_service.create(
            session,
            ProjectCreate(name="Product launch", description="Everything for launch day."),
            owner=owner,
        )
        await project_service.create(
            session, ProjectCreate(name="Team offsite", description=None), owner=owner
        )
        project = ProjectSummary.model_validate(launch, from_attributes=True)
        for index in sorted({task[2] for task in DEMO_TASKS if task[2] is not None}):
            user_id = users[index].id
            if user_id is not None and user_id != owner.id:
                member = MemberAdd(user_id=user_id, role=MemberRole.editor)
                await members.add(session, project.id, member, actor=owner)
        for title, priority, assignee, status in DEMO_TASKS:
            task_body = TaskCreate(
                title=title,
                priority=priority,
                assignee_id=None if assignee is None else users[assignee].id,
            )
            task = await task_service.create(work, project, task_body, actor=owner, mailer=mailer)
            for step in PATH_TO[status]:
                task = await task_service.update(
                    session,
                    task,
                    TaskUpdate(status=step),
                    actor=owner,
                    if_match=None,
                    mailer=mailer,
                )
            await comment_service.create(
                session, task, CommentCreate(body=f"Kick-off note for “{title}”."), author=owner
            )
    return [
        DemoLogin(email=email, password=DEMO_PASSWORD, role=role) for email, _, role in DEMO_USERS
    ]
