"""Resume tokens: compared as bytes in constant time, and replaced by a new one at each resume."""

from __future__ import annotations

import asyncio

import websockets
from websockets.asyncio.client import ClientConnection

from rtm2 import ErrorCode
from rtm2.protocol.codec import decode_result, decode_server, encode
from rtm2.protocol.frames import Hello, Login, LoginResult, Reply, Resume, ResumeResult

from ..conftest import APP_OPEN, ServerProcess
from .util import unique


async def reply(ws: ClientConnection) -> Reply:
    """The next reply (pushes skipped)."""
    while True:
        data = await asyncio.wait_for(ws.recv(), 5)
        assert isinstance(data, bytes)
        frame = decode_server(data)
        if isinstance(frame, Reply):
            return frame


async def login(server: ServerProcess, user: str) -> tuple[ClientConnection, LoginResult]:
    ws = await websockets.connect(server.url)
    await ws.send(encode(Hello(1)))
    await ws.send(encode(Login(2, APP_OPEN, user, "", presence_timeout=30)))
    assert (await reply(ws)).code == 0
    answer = await reply(ws)
    assert answer.code == 0
    return ws, decode_result(answer.result, LoginResult)


async def resume(server: ServerProcess, user: str, session_id: str, token: str) -> Reply:
    """Try to resume on a new connection; the connection is closed again afterwards, which
    leaves a resumed session detached, ready for the next attempt."""
    async with websockets.connect(server.url) as ws:
        await ws.send(encode(Hello(1)))
        await ws.send(encode(Resume(2, APP_OPEN, user, session_id, token)))
        assert (await reply(ws)).code == 0
        return await reply(ws)


async def test_each_resume_hands_out_a_new_token_and_the_old_one_stops_working(
    server: ServerProcess,
) -> None:
    user = unique("roamer")
    ws, first = await login(server, user)
    await ws.close()  # connection lost, session kept for the presence timeout
    answered = await resume(server, user, first.session_id, first.resume_token)
    assert answered.code == 0
    second = decode_result(answered.result, ResumeResult)
    assert second.resume_token
    assert second.resume_token != first.resume_token
    # Whoever saw the first token (a log, a proxy) cannot take the session over with it.
    replayed = await resume(server, user, first.session_id, first.resume_token)
    assert replayed.code == ErrorCode.LOGIN_REJECTED
    # The session itself is still there, for the holder of the current token.
    again = await resume(server, user, first.session_id, second.resume_token)
    assert again.code == 0
    third = decode_result(again.result, ResumeResult)
    assert third.resume_token not in (first.resume_token, second.resume_token)


async def test_a_non_ascii_resume_token_is_refused_like_any_wrong_token(
    server: ServerProcess,
) -> None:
    user = unique("unicode")
    ws, first = await login(server, user)
    await ws.close()
    for token in ("é" * len(first.resume_token), first.resume_token + "\u0101", ""):
        refused = await resume(server, user, first.session_id, token)
        assert refused.code == ErrorCode.LOGIN_REJECTED, token
    assert (await resume(server, user, first.session_id, first.resume_token)).code == 0
