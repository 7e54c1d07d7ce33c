"""Alembic environment of the tenancy schema."""

from scrm_kit.migrate import run_env
from scrm_kit.tenancy import metadata

run_env(metadata)
