"""Which build a real ``rtm2 serve`` runs: pure Python under ``make test``, the mypyc build of
every hot module under ``make compile-test`` (RTM2_COMPILED=1), as its ``/v1/info`` says."""

from __future__ import annotations

import os
from pathlib import Path

import httpx

from rtm2._compiled import ENV, MODULES

from ..conftest import ServerProcess


async def test_the_node_reports_the_modules_it_runs_compiled(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, http=True).start()
    try:
        async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as api:
            response = await api.get("/v1/info", headers={"X-API-Key": server.admin_key})
        assert response.status_code == 200, response.text
        compiled = response.json()["node"]["compiled"]
        if os.environ[ENV] == "1":
            assert compiled == list(MODULES)  # the embedded engine's broker included
        else:
            assert compiled == []
    finally:
        server.stop()
