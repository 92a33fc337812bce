from __future__ import annotations

from typing import Any

import pytest

from minishop import extensions
from minishop.wechat.legacy_crypto import EncryptedDataError, decrypt_encrypted_data
from minishop.wechat.miniprogram import SubscribeOutcome
from wechat_emulator.testing import EmulatorControl

# WeChat's own public sample for encryptedData (also in wechatpy's tests): see wechat-api.md.
SAMPLE_APPID = "wx4f4bc4dec97d474b"
SAMPLE_SESSION_KEY = "tiihtNczf5v6AKRyjwEUhQ=="
SAMPLE_IV = "r7BXXKkLb8qrSNn05n0qiA=="
SAMPLE_ENCRYPTED_DATA = (
    "CiyLU1Aw2KjvrjMdj8YKliAjtP4gsMZMQmRzooG2xrDcvSnxIMXFufNstNGTyaGS9uT5geRa0W4oTOb1WT7fJlAC+oNP"
    "dbB+3hVbJSRgv+4lGOETKUQz6OYStslQ142dNCuabNPGBzlooOmB231qMM85d2/fV6ChevvXvQP8Hkue1poOFtnEtpyx"
    "VLW1zAo6/1Xx1COxFvrc2d7UL/lmHInNlxuacJXwu0fjpXfz/YqYzBIBzD6WUfTIF9GRHpOn/Hz7saL8xz+W//FRAUid"
    "1OksQaQx4CMs8LOddcQhULW4ucetDf96JcR3g0gfRK4PC7E/r7Z6xNrXd2UIeorGj5Ef7b1pJAYB6Y5anaHqZ9J6nKEB"
    "vB4DnNLIVWSgARns/8wR2SiRS7MNACwTyrGvt9ts8p12PKFdlqYTopNHR1Vf7XjfhQlVsAJdNiKdYmYVoKlaRv85IfVu"
    "nYzO0IKXsyl7JCUjCpoG20f0a04COwfneQAGGwd5oa+T8yO5hzuyDb/XcxxmK01EpqOyuxINew=="
)


def test_legacy_encrypted_data_sample_decrypts() -> None:
    data = decrypt_encrypted_data(
        SAMPLE_ENCRYPTED_DATA, SAMPLE_IV, SAMPLE_SESSION_KEY, SAMPLE_APPID
    )
    assert data["openId"] == "oGZUI0egBJY1zhBYw2KhdUfwVJJE"
    assert data["watermark"]["appid"] == SAMPLE_APPID


@pytest.mark.parametrize(
    ("encrypted", "iv", "key", "appid"),
    [
        (SAMPLE_ENCRYPTED_DATA, SAMPLE_IV, SAMPLE_SESSION_KEY, "wx-someone-else"),
        (SAMPLE_ENCRYPTED_DATA, SAMPLE_IV, "AAAAAAAAAAAAAAAAAAAAAA==", SAMPLE_APPID),
        (SAMPLE_ENCRYPTED_DATA, "AAAAAAAAAAAAAAAAAAAAAA==", SAMPLE_SESSION_KEY, SAMPLE_APPID),
        ("abc", SAMPLE_IV, SAMPLE_SESSION_KEY, SAMPLE_APPID),
        (SAMPLE_ENCRYPTED_DATA, "abc", SAMPLE_SESSION_KEY, SAMPLE_APPID),
    ],
    ids=["other-appid", "wrong-key", "wrong-iv", "bad-data", "bad-iv"],
)
def test_legacy_encrypted_data_refuses_what_is_not_ours(
    encrypted: str, iv: str, key: str, appid: str
) -> None:
    with pytest.raises(EncryptedDataError):
        decrypt_encrypted_data(encrypted, iv, key, appid)


def test_subscribe_message_is_sent_when_the_user_subscribed(
    app: Any, emulator: EmulatorControl
) -> None:
    openid = emulator.new_login_code().openid
    emulator.register_template("order-paid", ["thing1", "amount2"])
    emulator.grant_subscription(openid, "order-paid", count=1)

    data = {"thing1": "龙井茶", "amount2": "168.00"}
    assert (
        extensions.wechat.get().send_subscribe_message(openid, "order-paid", data)
        == SubscribeOutcome.SENT
    )
    (message,) = emulator.messages("subscribe")
    assert message["touser"] == openid
    assert message["data"]["thing1"] == {"value": "龙井茶"}

    # the one subscription is spent: WeChat says 43101, which is a normal outcome for us
    outcome = extensions.wechat.get().send_subscribe_message(openid, "order-paid", data)
    assert outcome == SubscribeOutcome.NO_SUBSCRIPTION
    assert len(emulator.messages("subscribe")) == 1
