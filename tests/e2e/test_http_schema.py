"""The HTTP API against its own OpenAPI document, with schemathesis: generated requests to every
endpoint, valid and not, must never get a 5xx, and every response must match the document.

Driven through hypothesis directly (one ``@given`` per operation) rather than schemathesis'
pytest plugin, which does not run under pytest 9."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from ..conftest import API_KEY_A, ServerProcess

STREAMING = ("/live", "/tail")  # text/event-stream endpoints (docs/CONSOLE.md)
EXAMPLES = 20  # per operation: a small budget, seeded, so make test stays quick


@pytest.fixture(scope="module")
def http_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server of this module's own: the generated kicks ban random users of app A."""
    srv = ServerProcess(tmp_path_factory.mktemp("schema"), http=True).start()
    yield srv
    srv.stop()


def test_no_generated_request_gets_a_server_error_and_every_answer_matches_the_schema(
    http_server: ServerProcess,
) -> None:
    schema = schemathesis.openapi.from_url(f"{http_server.http_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    # Server-Sent Event streams (the console's live feed and tail) never end by themselves: a
    # generated call would wait for its timeout. tests/e2e/test_console_http.py tests them.
    streams = [op for op in operations if op.path.endswith(STREAMING)]
    assert len(streams) == 3
    operations = [op for op in operations if op not in streams]
    assert len(operations) >= 8  # every other endpoint the document lists is exercised
    for operation in operations:

        @settings(
            max_examples=EXAMPLES,
            derandomize=True,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(headers={"X-API-Key": API_KEY_A}, timeout=10)

        check()
