"""One emulator process for the whole session, reset before every test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from emulator_helpers import WeChatApi
from pay_helpers import Merchant

from wechat_emulator.testing import EmulatorControl, EmulatorProcess


@pytest.fixture(scope="session")
def emulator() -> Iterator[EmulatorProcess]:
    with EmulatorProcess() as process:
        yield process


@pytest.fixture()
def control(emulator: EmulatorProcess) -> EmulatorControl:
    control = emulator.control
    control.reset()
    return control


@pytest.fixture()
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.trust_env = False  # never through a proxy: the emulator is on loopback
        yield session


@pytest.fixture()
def wx(emulator: EmulatorProcess, control: EmulatorControl, http: requests.Session) -> WeChatApi:
    return WeChatApi(emulator.base_url, http)


@pytest.fixture()
def merchant(
    emulator: EmulatorProcess, control: EmulatorControl, http: requests.Session
) -> Merchant:
    return Merchant(emulator.base_url, http, control.pay_keys())
