"""An unavailable engine raises one error; the server picks the RTM code by the request."""

from __future__ import annotations

from rtm2 import ErrorCode, RTMError
from rtm2.protocol.frames import GetChannelMetadata, Logout, Publish, WhoNow
from rtm2.server.engines.base import EngineUnavailable
from rtm2.server.unavailable import unavailable_code


def test_engine_unavailable_is_not_an_rtm_error() -> None:
    assert not issubclass(EngineUnavailable, RTMError)


def test_a_publish_the_engine_could_not_take_answers_publish_failed() -> None:
    assert unavailable_code(Publish(1, "c", b"x")) == ErrorCode.CHANNEL_PUBLISH_MESSAGE_FAILED


def test_a_presence_request_answers_presence_not_connected() -> None:
    assert unavailable_code(WhoNow(1, "c", 1)) == ErrorCode.PRESENCE_NOT_CONNECTED


def test_a_request_without_a_code_of_its_own_answers_init_service_failed() -> None:
    assert unavailable_code(GetChannelMetadata(1, "c", 1)) == ErrorCode.INIT_SERVICE_FAILED
    assert unavailable_code(Logout(1)) == ErrorCode.INIT_SERVICE_FAILED
