"""Which provider requests the environment's proxy settings send through a proxy (no I/O: the choice only)."""

import httpx
import pytest

from scrm_notify.adapters.channels.http import LeanTransport, ProxyRouter

PROXIES = {"https": "http://proxy.corp:3128", "http": "http://proxy.corp:3128"}


def test_a_proxy_applies_unless_no_proxy_exempts_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.setenv("NO_PROXY", ".internal.example,10.0.0.5")
    router = ProxyRouter(LeanTransport(2), PROXIES, 2)
    assert router.proxy_for(httpx.URL("https://api.weixin.qq.com/cgi-bin/stable_token")) == "http://proxy.corp:3128"
    assert router.proxy_for(httpx.URL("https://hooks.internal.example/scrm")) is None
    assert router.proxy_for(httpx.URL("http://10.0.0.5:8080/hook")) is None


def test_a_scheme_without_a_proxy_goes_direct(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    router = ProxyRouter(LeanTransport(2), {"https": "http://proxy.corp:3128"}, 2)
    assert router.proxy_for(httpx.URL("http://sink.example/hook")) is None
    assert router.proxy_for(httpx.URL("https://api.sendgrid.com/v3/mail/send")) == "http://proxy.corp:3128"
