"""Channel provider callbacks posted to the running ingest service, as each provider posts them; what ingest
published is read back from ``events.v1`` with a real Kafka consumer (and, for an unsubscribe, from the profile)."""

import json
import subprocess
import sys
import time
import uuid
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from scrm_ingest.domain.callbacks_generic import sign
from scrm_ingest.domain.callbacks_wecom_crypto import WeComCrypto, plain_signature
from scrm_stack.launcher import Stack
from tests.conftest import TenantCredentials
from tests.e2e.helpers import eventually

pytestmark = pytest.mark.e2e


async def published(stack: Stack, tenant: TenantCredentials) -> list[dict[str, Any]]:
    """Every record on events.v1 for this tenant, in order per customer (ingest answers only after Kafka acked)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=stack.kafka.bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic("events.v1")
        if not partitions:
            await consumer._client.force_metadata_update()  # noqa: SLF001 - first metadata load
            partitions = consumer.partitions_for_topic("events.v1") or set()
        assigned = [TopicPartition("events.v1", p) for p in partitions]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        ends = await consumer.end_offsets(assigned)
        found: list[bytes] = []

        async def behind() -> bool:
            return any([await consumer.position(tp) < ends[tp] for tp in assigned])

        while await behind():
            for records in (await consumer.getmany(timeout_ms=500)).values():
                found += [r.value for r in records if tenant.tenant_id.encode() in (r.value or b"")]
    finally:
        await consumer.stop()
    # Other tests put poison records on the topic; this tenant's records are all JSON.
    return [record for record in map(orjson.loads, found) if record["tenant_id"] == tenant.tenant_id]


async def configure(stack: Stack, tenant: TenantCredentials, provider: str, **body: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=stack.url("ingest")) as ingest:
        answer = await ingest.put(f"/v1/callbacks/{provider}", headers=tenant.bearer, json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()


async def test_an_sms_td_reply_unsubscribes_the_customer_who_has_that_phone(
    stack: Stack, tenant: TenantCredentials
) -> None:
    async with httpx.AsyncClient(base_url=stack.url("ingest")) as ingest:
        identify = {"userId": "u-sms", "messageId": f"id-{uuid.uuid4()}", "traits": {"phone": "13800138000"}}
        assert (await ingest.post("/v1/identify", auth=(tenant.write_key, ""), json=identify)).status_code == 200
    config = await configure(stack, tenant, "aliyun-sms")
    assert config["secrets"]["url_secret"] in config["urls"]["reply"]
    reply = [{"phone_number": "13800138000", "send_time": "2026-12-01 16:00:00", "content": "TD", "sequence_id": 1}]
    async with httpx.AsyncClient() as aliyun:
        answer = await aliyun.post(config["urls"]["reply"], json=reply)
    assert answer.status_code == 200
    assert answer.json() == {"code": 0, "msg": "成功"}

    # The identify call is keyed by the user id, the reply by the phone: they may sit on different partitions.
    [event] = [e for e in await published(stack, tenant) if e["type"] == "track"]
    assert event["event"] == "SMS Unsubscribed"
    assert event["properties"] == {"phone": "+8613800138000", "keyword": "TD"}
    assert event["context"]["traits"] == {"phone": "+8613800138000"}

    async def unsubscribed() -> dict[str, Any] | None:
        async with httpx.AsyncClient(base_url=stack.url("profile")) as profile:
            found = await profile.get("/v1/customers/user_id:u-sms", headers=tenant.bearer)
        body = found.json() if found.status_code == 200 else None
        return body if body and body["reachability"]["sms"] == "unsubscribed" else None

    customer = await eventually(unsubscribed, what="the customer with that phone unsubscribed from SMS")
    assert customer["user_id"] == "u-sms"


async def test_aliyun_reports_need_the_url_secret_and_bad_items_lose_nothing_else(
    stack: Stack, tenant: TenantCredentials
) -> None:
    config = await configure(stack, tenant, "aliyun-sms")
    good = {"phone_number": "13800138001", "success": True, "biz_id": "b-1", "out_id": "touch-1"}
    failed = {**good, "phone_number": "13800138002", "success": False, "err_code": "MK:0001", "err_msg": "空号"}
    async with httpx.AsyncClient() as aliyun:
        forged = await aliyun.post(
            config["urls"]["report"].replace(config["secrets"]["url_secret"], "guess"), json=[good]
        )
        answer = await aliyun.post(config["urls"]["report"], json=[good, {"phone_number": "x"}, failed])
        malformed = await aliyun.post(config["urls"]["report"], content=b"[{not json")
    assert forged.status_code == 401
    assert forged.json()["error"]["code"] == "unauthorized"
    assert answer.status_code == 200
    assert answer.json()["code"] == 0
    assert answer.json()["errors"] == [{"field": "[1].phone_number", "message": "is not a phone number"}]
    assert malformed.status_code == 400
    assert malformed.json()["error"]["field"] == "body"
    events = await published(stack, tenant)
    assert sorted((e["event"], e["properties"]["touch_key"]) for e in events) == [
        ("Message Delivered", "touch-1"),
        ("Message Failed", "touch-1"),
    ]


async def test_rotating_the_url_secret_shuts_the_old_url_and_reads_mask_secrets(
    stack: Stack, tenant: TenantCredentials
) -> None:
    first = await configure(stack, tenant, "tencent-sms")
    second = await configure(stack, tenant, "tencent-sms")
    report = [
        {"nationcode": "86", "mobile": "13800138003", "report_status": "SUCCESS", "sid": "s-1", "errmsg": "DELIVRD"}
    ]
    async with httpx.AsyncClient() as tencent:
        old = await tencent.post(first["urls"]["report"], json=report)
        new = await tencent.post(second["urls"]["report"], json=report)
    assert old.status_code == 401
    assert new.json() == {"result": 0, "errmsg": "OK"}
    async with httpx.AsyncClient(base_url=stack.url("ingest")) as ingest:
        view = (await ingest.get("/v1/callbacks/tencent-sms", headers=tenant.bearer)).json()
        unknown = await ingest.put("/v1/callbacks/carrier-pigeon", headers=tenant.bearer, json={})
        anonymous = await ingest.put("/v1/callbacks/tencent-sms", json={})
    assert second["secrets"]["url_secret"] not in str(view)
    assert view["secrets"]["url_secret"] == "cbs_…"
    assert unknown.status_code == 400 and unknown.json()["error"]["field"] == "provider"
    assert anonymous.status_code == 401
    assert [e["event"] for e in await published(stack, tenant)] == ["Message Delivered"]


def wecom_contact(change: str, create_time: int) -> str:
    return (
        "<xml><ToUserName><![CDATA[wwcorp01]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName>"
        f"<CreateTime>{create_time}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        "<Event><![CDATA[change_external_contact]]></Event>"
        f"<ChangeType><![CDATA[{change}]]></ChangeType><UserID><![CDATA[staff-7]]></UserID>"
        "<ExternalUserID><![CDATA[wmEXT-42]]></ExternalUserID><State><![CDATA[store-9]]></State>"
        "<WelcomeCode><![CDATA[WELCOME-1]]></WelcomeCode></xml>"
    )


async def test_wecom_url_check_and_encrypted_contact_events(stack: Stack, tenant: TenantCredentials) -> None:
    config = await configure(stack, tenant, "wecom", corp_id="wwcorp01")
    crypto = WeComCrypto(config["secrets"]["token"], config["secrets"]["encoding_aes_key"], "wwcorp01")
    url = config["urls"]["callback"]
    ts, nonce = str(int(time.time())), "n0nce"
    echostr = crypto.encrypt("echo-1234")
    envelope = "<xml><ToUserName><![CDATA[wwcorp01]]></ToUserName><Encrypt><![CDATA[{}]]></Encrypt></xml>"
    added = crypto.encrypt(wecom_contact("add_external_contact", 1764576000))
    removed = crypto.encrypt(wecom_contact("del_follow_user", 1764579600))
    async with httpx.AsyncClient() as wecom:
        check = await wecom.get(
            url,
            params={
                "msg_signature": crypto.sign(ts, nonce, echostr),
                "timestamp": ts,
                "nonce": nonce,
                "echostr": echostr,
            },
        )
        params = {"msg_signature": crypto.sign(ts, nonce, added), "timestamp": ts, "nonce": nonce}
        answers = [await wecom.post(url, params=params, content=envelope.format(added)) for _ in range(2)]
        forged = await wecom.post(url, params={**params, "timestamp": "1"}, content=envelope.format(added))
        removed_params = {"msg_signature": crypto.sign(ts, nonce, removed), "timestamp": ts, "nonce": nonce}
        gone = await wecom.post(url, params=removed_params, content=envelope.format(removed))
    assert check.status_code == 200 and check.text == "echo-1234"
    assert [a.text for a in answers] == ["success", "success"]
    assert forged.status_code == 401
    assert gone.text == "success"

    events = await published(stack, tenant)
    assert [e["event"] for e in events] == ["WeCom Contact Added", "WeCom Contact Added", "WeCom Contact Removed"]
    assert events[0]["event_id"] == events[1]["event_id"], "WeCom's retry is the same event (deduplicated downstream)"
    assert events[0]["anonymous_id"] == "wecom:wmEXT-42"
    assert events[0]["properties"]["welcome_code"] == "WELCOME-1"
    assert events[2]["properties"]["removed_by"] == "customer"


async def test_sendgrid_events_and_a_retried_delivery(stack: Stack, tenant: TenantCredentials) -> None:
    config = await configure(stack, tenant, "sendgrid")
    body = [
        {
            "email": "ann@example.com",
            "timestamp": 1764576000,
            "event": "delivered",
            "sg_event_id": "e1",
            "sg_message_id": "m1.filter",
            "touch_key": "touch-3",
        },
        {
            "email": "ann@example.com",
            "timestamp": 1764576100,
            "event": "click",
            "sg_event_id": "e2",
            "sg_message_id": "m1.filter",
            "url": "https://shop.example/p/1",
            "touch_key": "touch-3",
        },
    ]
    async with httpx.AsyncClient() as sendgrid:
        first = await sendgrid.post(config["urls"]["events"], json=body)
        retried = await sendgrid.post(config["urls"]["events"], json=body[:1])
    assert first.json() == {"success": True, "accepted": 2}
    assert retried.status_code == 200
    events = await published(stack, tenant)
    assert [e["event_id"] for e in events] == ["sendgrid:e1", "sendgrid:e2", "sendgrid:e1"]
    assert events[1]["properties"]["url"] == "https://shop.example/p/1"
    assert events[0]["context"]["traits"] == {"email": "ann@example.com"}


async def test_generic_receipts_must_be_signed_and_fresh(stack: Stack, tenant: TenantCredentials) -> None:
    config = await configure(stack, tenant, "generic")
    secret, url = config["secrets"]["secret"], config["urls"]["callback"]
    receipts = orjson.dumps(
        [
            {"id": "r-1", "event": "Official Account Subscribed", "wechat_openid": "oOPEN1"},
            {"id": "r-2", "event": "Message Opened", "user_id": "u-7", "properties": {"channel": "carrier"}},
        ]
    )
    now = int(time.time())
    async with httpx.AsyncClient() as tenant_system:
        unsigned = await tenant_system.post(url, content=receipts)
        stale = await tenant_system.post(
            url, content=receipts, headers={"X-SCRM-Signature": sign(secret, now - 600, receipts)}
        )
        forged = await tenant_system.post(
            url, content=receipts, headers={"X-SCRM-Signature": sign("x" * 20, now, receipts)}
        )
        signed = await tenant_system.post(
            url, content=receipts, headers={"X-SCRM-Signature": sign(secret, now, receipts)}
        )
    assert [unsigned.status_code, stale.status_code, forged.status_code] == [401, 401, 401]
    assert signed.status_code == 207
    assert [e["field"] for e in signed.json()["errors"]] == ["[1].properties.channel"]
    [event] = await published(stack, tenant)
    assert event["event_id"] == "generic:r-1"
    assert event["event"] == "Official Account Subscribed"
    assert event["context"]["traits"] == {"wechat_openid": "oOPEN1"}


def official_account(event: str, openid: str, **extra: str) -> str:
    fields = {"ToUserName": "gh_shop", "FromUserName": openid, "CreateTime": "1764576000", "MsgType": "event"}
    fields |= {"Event": event, **extra}
    return "<xml>" + "".join(f"<{k}><![CDATA[{v}]]></{k}>" for k, v in fields.items()) + "</xml>"


async def test_official_account_follow_in_safe_mode_reaches_the_profile(
    stack: Stack, tenant: TenantCredentials
) -> None:
    config = await configure(stack, tenant, "wechat-oa", appid="wxshop01")
    token, aes_key = config["secrets"]["token"], config["secrets"]["encoding_aes_key"]
    crypto = WeComCrypto(token, aes_key, "wxshop01")
    url = config["urls"]["callback"]
    ts, nonce = str(int(time.time())), "n1"
    plain_check = {"signature": plain_signature(token, ts, nonce), "timestamp": ts, "nonce": nonce, "echostr": "e42"}
    followed = crypto.encrypt(official_account("subscribe", "oFOLLOW1", EventKey="qrscene_store9"))
    envelope = f"<xml><ToUserName><![CDATA[gh_shop]]></ToUserName><Encrypt><![CDATA[{followed}]]></Encrypt></xml>"
    params = {"msg_signature": crypto.sign(ts, nonce, followed), "timestamp": ts, "nonce": nonce, "encrypt_type": "aes"}
    async with httpx.AsyncClient() as wechat:
        check = await wechat.get(url, params=plain_check)
        bad_check = await wechat.get(url, params={**plain_check, "nonce": "other"})
        plaintext_mode = await wechat.post(url, params=plain_check, content=official_account("subscribe", "oX"))
        answer = await wechat.post(url, params=params, content=envelope)
    assert check.text == "e42"
    assert bad_check.status_code == 401
    assert plaintext_mode.status_code == 400 and plaintext_mode.json()["error"]["field"] == "msg_signature"
    assert answer.text == "success"
    [event] = await published(stack, tenant)
    assert event["event"] == "Official Account Subscribed"
    assert event["properties"] == {"openid": "oFOLLOW1", "appid": "wxshop01", "scene": "store9"}

    async def follower() -> dict[str, Any] | None:
        async with httpx.AsyncClient(base_url=stack.url("profile")) as profile:
            found = await profile.get("/v1/customers/openid:oFOLLOW1", headers=tenant.bearer)
        body = found.json() if found.status_code == 200 else None
        return body if body and body["reachability"]["official_account_follower"] else None

    await eventually(follower, what="the follower on the customer's profile")


async def test_an_operator_configures_callbacks_with_the_cli(stack: Stack, tenant: TenantCredentials) -> None:
    command = [sys.executable, "-m", "scrm_cli.main", "callbacks", "set", "sendgrid", "--tenant-id", tenant.tenant_id]
    env = {**stack.service_env(), "SCRM_CALLBACK_PUBLIC_URL": stack.url("ingest")}
    done = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
    config = json.loads(done.stdout)
    event = {"email": "bo@example.com", "timestamp": 1764576000, "event": "unsubscribe", "sg_event_id": "u1"}
    async with httpx.AsyncClient() as sendgrid:
        answer = await sendgrid.post(config["urls"]["events"], json=[event])
    assert answer.json() == {"success": True, "accepted": 1}
    [published_event] = await published(stack, tenant)
    assert published_event["event"] == "Email Unsubscribed"
    assert published_event["properties"]["email"] == "bo@example.com"
    refused = subprocess.run(
        [*command[:5], "fax", "--tenant-id", tenant.tenant_id], env=env, capture_output=True, text=True
    )
    assert refused.returncode == 2 and "provider" in refused.stderr


async def test_sendgrid_signed_webhook_needs_a_valid_signature_once_a_key_is_set(
    stack: Stack, tenant: TenantCredentials
) -> None:
    import base64

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    private = ec.generate_private_key(ec.SECP256R1())
    public = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    config = await configure(stack, tenant, "sendgrid", verification_key=base64.b64encode(public).decode())
    body = orjson.dumps([{"email": "cy@example.com", "timestamp": 1764576000, "event": "open", "sg_event_id": "o1"}])
    timestamp = str(int(time.time()))
    signature = base64.b64encode(private.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))).decode()
    signed = {
        "X-Twilio-Email-Event-Webhook-Signature": signature,
        "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
        "Content-Type": "application/json",
    }
    async with httpx.AsyncClient() as sendgrid:
        unsigned = await sendgrid.post(config["urls"]["events"], content=body)
        tampered = await sendgrid.post(
            config["urls"]["events"], content=body.replace(b"open", b"click"), headers=signed
        )
        accepted = await sendgrid.post(config["urls"]["events"], content=body, headers=signed)
    assert unsigned.status_code == 401 and tampered.status_code == 401
    assert accepted.json() == {"success": True, "accepted": 1}
    assert [e["event"] for e in await published(stack, tenant)] == ["Message Opened"]


async def test_a_subscribe_prompt_accepted_in_the_official_account_becomes_a_grant_in_notify(
    stack: Stack, tenant: TenantCredentials
) -> None:
    config = await configure(stack, tenant, "wechat-oa", appid="wxshop02")
    crypto = WeComCrypto(config["secrets"]["token"], config["secrets"]["encoding_aes_key"], "wxshop02")
    follow = official_account("subscribe", "oSUB1")
    answer = official_account("subscribe_msg_popup_event", "oSUB1").removesuffix("</xml>") + (
        "<SubscribeMsgPopupEvent><List><TemplateId><![CDATA[TPL-RESTOCK]]></TemplateId>"
        "<SubscribeStatusString><![CDATA[accept]]></SubscribeStatusString><PopupScene>2</PopupScene></List>"
        "</SubscribeMsgPopupEvent></xml>"
    )
    async with httpx.AsyncClient() as wechat:
        for n, message in enumerate((follow, answer)):
            encrypted = crypto.encrypt(message)
            ts, nonce = str(int(time.time())), f"n{n}"
            envelope = (
                f"<xml><ToUserName><![CDATA[gh_shop]]></ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
            )
            params = {
                "msg_signature": crypto.sign(ts, nonce, encrypted),
                "timestamp": ts,
                "nonce": nonce,
                "encrypt_type": "aes",
            }
            posted = await wechat.post(config["urls"]["callback"], params=params, content=envelope)
            assert posted.text == "success"
    events = await published(stack, tenant)
    [authorized] = [e for e in events if e["event"] == "Subscribe Message Authorized"]
    assert authorized["properties"] == {
        "openid": "oSUB1",
        "template_id": "TPL-RESTOCK",
        "status": "accept",
        "appid": "wxshop02",
        "scene": "2",
    }

    async def grants() -> list[dict[str, Any]] | None:
        async with httpx.AsyncClient() as client:
            found = await client.get(f"{stack.url('profile')}/v1/customers/openid:oSUB1", headers=tenant.bearer)
            if found.status_code != 200:
                return None
            customer_id = found.json()["customer_id"]
            consents = await client.get(
                f"{stack.url('notify')}/v1/customers/{customer_id}/consents", headers=tenant.bearer
            )
        if consents.status_code != 200:
            return None
        [oa] = [c for c in consents.json()["items"] if c["channel"] == "wechat_oa"]
        return oa["subscribe_grants"] or None

    [grant] = await eventually(grants, what="the one-time subscribe consent on notify's consents")
    assert (grant["wechat_template_id"], grant["unspent"], grant["held"], grant["last_status"]) == (
        "TPL-RESTOCK",
        1,
        0,
        "accept",
    )
