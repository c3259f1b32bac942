"""Apply Alembic migrations programmatically (used by `fasttrack migrate` and `serve`)."""

from alembic import command
from alembic.config import Config

from fasttrack.core.config import Settings
from fasttrack.core.freshness import announce_presence


def alembic_config(settings: Settings) -> Config:
    config = Config()
    config.set_main_option("script_location", "fasttrack:migrations")
    config.attributes["database_url"] = settings.database_url
    return config


def upgrade_to_head(settings: Settings) -> None:
    announce_presence(settings.database_url)
    command.upgrade(alembic_config(settings), "head")
