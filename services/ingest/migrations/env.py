"""Alembic environment of the ingest schema."""

from scrm_ingest.adapters.callback_store import metadata
from scrm_kit.migrate import run_env

run_env(metadata)
