"""The HTTP API's routes declare each parameter's source (path, query, body, dependency) the
way Litestar 3 requires: building the app warns of no inferred declaration. pyproject.toml
makes such a warning an error in every test that builds the app, so none comes back."""

from __future__ import annotations

import asyncio
import time
import warnings
from pathlib import Path

from litestar.exceptions import LitestarDeprecationWarning

from rtm2.server.config import AppConfig, ServerConfig
from rtm2.server.engines.memory import MemoryEngine
from rtm2.server.http import make_app
from rtm2.server.http.console import Console
from rtm2.server.http.keys import Keyring
from rtm2.server.hub import Hub
from rtm2.server.livefeed import NodeLive
from rtm2.server.node import _NodeApi
from rtm2.server.nodeinfo import NodeDescriber

APP = AppConfig("ab" * 16)


async def test_the_http_app_is_built_without_a_litestar_deprecation_warning(
    tmp_path: Path,
) -> None:
    hub = Hub(
        ServerConfig(data_dir=tmp_path, apps=(APP,)),
        asyncio.get_running_loop(),
        MemoryEngine(tmp_path),
    )
    api = _NodeApi(hub, NodeDescriber(hub, "ws://127.0.0.1:1", "", time.time()))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        app = make_app(hub.apps, Keyring((APP,), "admin"), api, Console(NodeLive(hub)))
    assert [str(w.message) for w in caught if w.category is LitestarDeprecationWarning] == []
    paths = {route.path for route in app.routes}
    assert "/v1/apps/{app_id:str}/channels/{channel:str}/messages" in paths  # routes are built
