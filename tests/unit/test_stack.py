"""Unit tests of the local stack's pure parts."""

import base64
import uuid

import pytest

from scrm_stack import kafka
from scrm_stack.kafka import new_cluster_id


def test_a_cluster_id_never_starts_with_a_dash_the_storage_tool_would_read_as_an_option(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 0xF8 encodes to "-" first in URL-safe base64: the id that made `kafka-storage format -t -ec7...` fail in CI.
    drawn = iter([uuid.UUID(bytes=b"\xf8" + bytes(15)), uuid.UUID(bytes=b"\x01" * 16)])
    monkeypatch.setattr(kafka.uuid, "uuid4", lambda: next(drawn))
    cluster_id = new_cluster_id()
    assert not cluster_id.startswith("-")
    assert base64.urlsafe_b64decode(cluster_id + "==") == b"\x01" * 16


def test_cluster_ids_are_22_url_safe_characters_and_differ() -> None:
    ids = {new_cluster_id() for _ in range(2000)}
    assert len(ids) == 2000
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)
    assert all(set(i) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") for i in ids)
