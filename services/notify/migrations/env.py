"""Alembic environment of the notify schema."""

from scrm_kit.migrate import run_env
from scrm_notify.adapters.orm import metadata

run_env(metadata)
