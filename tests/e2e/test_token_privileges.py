"""RTM 2 resource permissions in a token: rtm2 does not enforce them, so it refuses them."""

from __future__ import annotations

import pytest

import rtm2
from rtm2 import ErrorCode
from rtm2.tokens import RESOURCE_MESSAGE_CHANNELS, SERVICE_RTM2, Service, build_token

from ..conftest import APP_A, CERT_A, ServerProcess
from .util import client_for, unique


async def test_a_login_token_limited_to_some_channels_is_refused_with_a_reason(
    server: ServerProcess,
) -> None:
    user = unique("scoped")
    read_only_news = ((RESOURCE_MESSAGE_CHANNELS, 0, ("news",)),)
    service = Service(SERVICE_RTM2, {1: 3600}, user_id=user, resources=read_only_news)
    client = client_for(server, user, auto_reconnect=False)
    with pytest.raises(rtm2.RTMError) as info:
        await client.login(build_token(APP_A, CERT_A, [service]))
    assert info.value.code == ErrorCode.INVALID_TOKEN
    assert "resource permissions" in info.value.reason
    await client.logout()
    # The same service without resource permissions logs in.
    plain = Service(SERVICE_RTM2, {1: 3600}, user_id=user)
    await client.login(build_token(APP_A, CERT_A, [plain]))
    await client.logout()
