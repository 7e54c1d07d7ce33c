from datetime import UTC, datetime

import pytest

from scrm_ingest.domain.callbacks_common import CallbackContext
from scrm_ingest.domain.callbacks_wecom import envelope_ciphertext, map_wecom_message
from scrm_ingest.domain.callbacks_wecom_crypto import CryptoError, WeComCrypto, decode_aes_key, signature

AES_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
CTX = CallbackContext(tenant_id="t1", provider="wecom", received_at=NOW)


def contact_xml(change: str, **extra: str) -> str:
    fields = {
        "ToUserName": "wwcorp",
        "FromUserName": "sys",
        "CreateTime": "1764576000",
        "MsgType": "event",
        "Event": "change_external_contact",
        "ChangeType": change,
        "UserID": "staff-7",
        "ExternalUserID": "wmEXT123",
        **extra,
    }
    return "<xml>" + "".join(f"<{k}><![CDATA[{v}]]></{k}>" for k, v in fields.items()) + "</xml>"


def test_a_message_encrypted_as_wecom_does_decrypts_to_the_same_xml() -> None:
    crypto = WeComCrypto("tok", AES_KEY, "wwcorp")
    message = contact_xml("add_external_contact", WelcomeCode="WC1") + "中文"
    ciphertext = crypto.encrypt(message)
    assert crypto.decrypt(ciphertext) == message
    # Padding is to 32-byte blocks, as WeCom's reference implementation does.
    import base64

    assert len(base64.b64decode(ciphertext)) % 32 == 0


def test_signature_is_sha1_over_the_sorted_values() -> None:
    import hashlib

    expected = hashlib.sha1("".join(sorted(["tok", "1700000000", "n0nce", "CIPHER"])).encode()).hexdigest()
    assert signature("tok", "1700000000", "n0nce", "CIPHER") == expected
    crypto = WeComCrypto("tok", AES_KEY, "wwcorp")
    crypto.verify(expected, "1700000000", "n0nce", "CIPHER")
    with pytest.raises(CryptoError):
        crypto.verify(expected, "1700000001", "n0nce", "CIPHER")


def test_a_message_for_another_corp_or_key_is_refused() -> None:
    ciphertext = WeComCrypto("tok", AES_KEY, "other-corp").encrypt("<xml/>")
    with pytest.raises(CryptoError, match="corp id"):
        WeComCrypto("tok", AES_KEY, "wwcorp").decrypt(ciphertext)
    other_key = "A" * 43
    with pytest.raises(CryptoError):
        WeComCrypto("tok", other_key, "wwcorp").decrypt(WeComCrypto("tok", AES_KEY, "wwcorp").encrypt("<xml/>" * 3))
    with pytest.raises(CryptoError):
        WeComCrypto("tok", AES_KEY, "wwcorp").decrypt("not base64!")


def test_encoding_aes_key_must_be_43_base64_characters() -> None:
    assert len(decode_aes_key(AES_KEY)) == 32
    with pytest.raises(ValueError, match="43"):
        decode_aes_key("short")
    with pytest.raises(ValueError, match="base64"):
        decode_aes_key("!" * 43)


def test_contact_added_carries_staff_welcome_code_and_state() -> None:
    mapped = map_wecom_message(contact_xml("add_external_contact", WelcomeCode="WC1", State="store-9"), CTX)
    [event] = mapped.events
    assert event.event == "WeCom Contact Added"
    assert event.anonymous_id == "wecom:wmEXT123"
    assert event.context["traits"] == {"wecom_external_userid": "wmEXT123"}
    assert event.properties == {
        "staff_id": "staff-7",
        "external_userid": "wmEXT123",
        "welcome_code": "WC1",
        "state": "store-9",
    }
    assert event.occurred_at == datetime.fromtimestamp(1764576000, UTC)


@pytest.mark.parametrize(("change", "removed_by"), [("del_external_contact", "staff"), ("del_follow_user", "customer")])
def test_contact_removed_says_who_removed_whom(change: str, removed_by: str) -> None:
    [event] = map_wecom_message(contact_xml(change), CTX).events
    assert event.event == "WeCom Contact Removed"
    assert event.properties["removed_by"] == removed_by


def test_the_same_callback_gets_the_same_event_id_and_a_different_one_does_not() -> None:
    first = map_wecom_message(contact_xml("add_external_contact"), CTX).events[0]
    again = map_wecom_message(contact_xml("add_external_contact"), CTX).events[0]
    removed = map_wecom_message(contact_xml("del_follow_user"), CTX).events[0]
    assert first.event_id == again.event_id
    assert removed.event_id != first.event_id


def test_other_events_are_ignored_and_bad_ones_name_the_field() -> None:
    assert map_wecom_message(contact_xml("edit_external_contact"), CTX).ignored == 1
    bad = map_wecom_message(contact_xml("add_external_contact", UserID=""), CTX)
    assert [e.field for e in bad.errors] == ["UserID"]
    with pytest.raises(Exception, match="Encrypt"):
        envelope_ciphertext(b"<xml><ToUserName>x</ToUserName></xml>")
    with pytest.raises(Exception, match="not well-formed"):
        envelope_ciphertext(b"<xml><Encrypt>")
    with pytest.raises(Exception, match="not well-formed"):  # entities are refused (no billion laughs)
        envelope_ciphertext(b'<!DOCTYPE x [<!ENTITY a "b">]><xml><Encrypt>&a;</Encrypt></xml>')
