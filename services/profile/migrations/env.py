"""Alembic environment of the profile schema."""

from scrm_kit.migrate import run_env
from scrm_profile.adapters.orm import metadata

run_env(metadata)
