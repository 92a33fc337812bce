"""`python -m wechat_emulator` and the EmulatorProcess helper: flags, environment, shutdown."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import requests

from wechat_emulator import EmulatorConfig, create_app
from wechat_emulator.paycrypto import new_rsa_key, private_pem, public_pem
from wechat_emulator.testing import EmulatorError, EmulatorProcess


def test_flags_override_the_environment_which_overrides_the_defaults() -> None:
    env = {"WECHAT_APPID": "wxfromenvironment0", "WECHAT_SECRET": "env-secret"}
    with EmulatorProcess(appid="wxfromflag00000000", env=env) as emulator:
        login = emulator.control.new_login_code()
        url = f"{emulator.base_url}/sns/jscode2session"
        params = {"js_code": login.code, "grant_type": "authorization_code"}
        wrong = requests.get(
            url, params=params | {"appid": "wxfromenvironment0", "secret": "env-secret"}, timeout=5
        )
        assert wrong.json()["errcode"] == 40013
        right = requests.get(
            url, params=params | {"appid": "wxfromflag00000000", "secret": "env-secret"}, timeout=5
        )
        assert right.json()["openid"] == login.openid


def test_wecom_credentials_are_configurable() -> None:
    with EmulatorProcess(corpid="wwcustom", corpsecret="s3cret", agentid=42) as emulator:
        answer = requests.get(
            f"{emulator.base_url}/cgi-bin/gettoken",
            params={"corpid": "wwcustom", "corpsecret": "s3cret"},
            timeout=5,
        ).json()
        sent = requests.post(
            f"{emulator.base_url}/cgi-bin/message/send",
            params={"access_token": answer["access_token"]},
            json={"touser": "@all", "msgtype": "text", "agentid": 42, "text": {"content": "hi"}},
            timeout=5,
        ).json()
        assert sent["errcode"] == 0


def test_stop_ends_the_process_and_frees_the_port() -> None:
    emulator = EmulatorProcess().start()
    base_url = emulator.base_url
    emulator.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{base_url}/__emulator/health", timeout=2)
    with pytest.raises(EmulatorError, match="not running"):
        _ = emulator.base_url
    emulator.stop()  # twice is fine


def test_a_process_that_cannot_start_is_reported() -> None:
    with pytest.raises(EmulatorError, match="WECOM_AGENTID must be a positive integer"):
        EmulatorProcess(env={"WECOM_AGENTID": "abc"}).start()


def test_the_listening_line_and_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "wechat_emulator", "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    assert "--port" in result.stdout
    assert "/__emulator/" in result.stdout


def test_create_app_in_process() -> None:
    """The app factory also works without a server, e.g. with Flask's test client."""
    client = create_app(EmulatorConfig(appid="wxinprocess0000000")).test_client()
    code = client.post("/__emulator/codes", json={}).get_json()["code"]
    answer = client.get(
        "/sns/jscode2session",
        query_string={
            "appid": "wxinprocess0000000",
            "secret": EmulatorConfig().secret,
            "js_code": code,
            "grant_type": "authorization_code",
        },
    ).get_json()
    assert "session_key" in answer


def test_pay_keys_come_from_pem_files_and_the_mchid_from_the_flag(tmp_path: Path) -> None:
    """Given keys are used and nothing private is handed out; --mchid beats WECHATPAY_MCHID."""
    merchant_key, platform_key = new_rsa_key(), new_rsa_key()
    merchant_file, platform_file = tmp_path / "merchant.pub.pem", tmp_path / "platform.pem"
    merchant_file.write_text(public_pem(merchant_key.public_key()))
    platform_file.write_text(private_pem(platform_key))
    env = {
        "EMULATOR_PAY_MERCHANT_PUBLIC_KEY": str(merchant_file),
        "EMULATOR_PAY_PLATFORM_PRIVATE_KEY": str(platform_file),
        "WECHATPAY_MCHID": "1900000009",
        "WECHATPAY_APIV3_KEY": "0123456789abcdef0123456789abcdef",
    }
    with EmulatorProcess(mchid="1900000042", env=env) as emulator:
        keys = emulator.control.pay_keys()
    assert keys.mchid == "1900000042"
    assert keys.apiv3_key == "0123456789abcdef0123456789abcdef"
    assert keys.merchant_private_key is None
    assert keys.platform_public_key == public_pem(platform_key.public_key())


@pytest.mark.parametrize(
    "env",
    [
        {"WECHATPAY_APIV3_KEY": "too-short"},
        {"WECHATPAY_MCHID": "merchant"},
        {"WECHATPAY_MERCHANT_SERIAL": "abc"},
        {"EMULATOR_PAY_PUBLIC_KEY_ID": "KEY_1"},
        {"EMULATOR_PAY_RETRY_SCALE": "fast"},
    ],
)
def test_bad_pay_configuration_is_refused(env: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        EmulatorConfig.from_env(env)
