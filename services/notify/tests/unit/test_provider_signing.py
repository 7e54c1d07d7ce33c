from datetime import UTC, datetime

from scrm_kit.clock import FixedClock
from scrm_notify.adapters.channels.sms import SmsAdapter, aliyun_signature, tc3_authorization


def test_aliyun_signature_matches_the_documented_example() -> None:
    # The worked example of Aliyun's SMS signature documentation (AccessKeySecret "testSecret", GET).
    params = {
        "AccessKeyId": "testId",
        "Action": "SendSms",
        "Format": "XML",
        "OutId": "123",
        "PhoneNumbers": "15300000001",
        "RegionId": "cn-hangzhou",
        "SignName": "阿里云短信测试专用",
        "SignatureMethod": "HMAC-SHA1",
        "SignatureNonce": "45e25e9b-0a6f-4070-8c85-2956eda1b466",
        "SignatureVersion": "1.0",
        "TemplateCode": "SMS_71390007",
        "TemplateParam": '{"customer":"test"}',
        "Timestamp": "2017-07-12T02:42:19Z",
        "Version": "2017-05-25",
    }
    assert aliyun_signature(params, "testSecret", "GET") == "zJDF+Lrzhj/ThnlvIToysFRq6t4="


def test_tc3_authorization_names_the_credential_scope_and_changes_with_the_body() -> None:
    header = tc3_authorization("AKID1", "key", "sms.tencentcloudapi.com", b"{}", 1_551_113_065)
    assert header.startswith(
        "TC3-HMAC-SHA256 Credential=AKID1/2019-02-25/sms/tc3_request, SignedHeaders=content-type;host"
    )
    assert header != tc3_authorization("AKID1", "key", "sms.tencentcloudapi.com", b'{"a":1}', 1_551_113_065)


def test_sms_codes_map_into_the_outcome_tree() -> None:
    now = datetime(2031, 3, 4, 13, 0, tzinfo=UTC)  # 21:00 Beijing
    adapter = SmsAdapter(None, FixedClock(now), "", "")  # type: ignore[arg-type]
    assert adapter._aliyun_outcome("isp.SYSTEM_ERROR", "", None).kind == "retryable"
    assert adapter._aliyun_outcome("isv.MOBILE_NUMBER_ILLEGAL", "", None).kind == "permanent"
    assert adapter._aliyun_outcome("isv.AMOUNT_NOT_ENOUGH", "", None).kind == "config"
    marketing_window = adapter._tencent_outcome("FailedOperation.MarketingSendTimeConstraint", "", None)
    assert marketing_window.kind == "deferred"
    assert marketing_window.retry_at == datetime(2031, 3, 5, 0, 0, tzinfo=UTC)  # 08:00 Beijing
    blacklisted = adapter._tencent_outcome("FailedOperation.PhoneNumberInBlacklist", "", None)
    assert (blacklisted.kind, blacklisted.revoke) == ("permanent", "unsubscribed")
