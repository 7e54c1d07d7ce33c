"""Fixtures shared by the integration tests."""

from collections.abc import AsyncIterator

import pytest

from tests.fakes.notify_providers import FakeProviders, running


@pytest.fixture(scope="module")
async def fake() -> AsyncIterator[FakeProviders]:
    """The fake channel providers (WeCom, WeChat, SMS, SendGrid, webhooks) on loopback, one per test module."""
    async with running(FakeProviders()) as providers:
        yield providers
