import pytest

from scrm_ingest.domain.callbacks_config import ConfigError, Provider, callback_urls, configure, secret_digest
from scrm_ingest.domain.callbacks_wecom_crypto import decode_aes_key


def test_url_secret_providers_get_a_fresh_secret_stored_only_as_a_digest() -> None:
    first = configure("t1", Provider.ALIYUN_SMS)
    second = configure("t1", Provider.ALIYUN_SMS)
    assert first.url_secret and second.url_secret and first.url_secret != second.url_secret
    assert first.config.url_secret_sha256 == secret_digest(first.url_secret)
    assert first.url_secret not in str(first.config)
    assert first.config.url_secret_matches(first.url_secret)
    assert not first.config.url_secret_matches(second.url_secret)
    urls = callback_urls("https://in.example/", "t1", Provider.ALIYUN_SMS, first.url_secret)
    assert urls == {
        "report": f"https://in.example/v1/callbacks/aliyun-sms/t1/{first.url_secret}/report",
        "reply": f"https://in.example/v1/callbacks/aliyun-sms/t1/{first.url_secret}/reply",
    }
    assert first.url_secret not in str(callback_urls("https://in.example", "t1", Provider.ALIYUN_SMS, None))


def test_wecom_generates_a_valid_token_and_key_when_omitted() -> None:
    configured = configure("t1", Provider.WECOM, corp_id="ww1")
    assert configured.config.receive_id == "ww1"
    assert len(decode_aes_key(configured.shown["encoding_aes_key"])) == 32
    assert len(configured.shown["token"]) == 32


@pytest.mark.parametrize(
    ("provider", "values", "field"),
    [
        (Provider.WECOM, {}, "corp_id"),
        (Provider.WECHAT_OA, {"corp_id": "ww1"}, "appid"),
        (Provider.WECOM, {"corp_id": "ww1", "encoding_aes_key": "short"}, "encoding_aes_key"),
        (Provider.WECOM, {"corp_id": "ww1", "token": "has space"}, "token"),
        (Provider.GENERIC, {"secret": "short"}, "secret"),
        (Provider.SENDGRID, {"verification_key": "not a key"}, "verification_key"),
        (Provider.ALIYUN_SMS, {"verification_key": "MFkw"}, "verification_key"),
    ],
)
def test_bad_configuration_names_the_field(provider: Provider, values: dict[str, str], field: str) -> None:
    with pytest.raises(ConfigError) as error:
        configure("t1", provider, **values)
    assert error.value.field == field
