"""Alembic environment of the journey schema."""

from scrm_journey.adapters.orm import metadata
from scrm_kit.migrate import run_env

run_env(metadata)
