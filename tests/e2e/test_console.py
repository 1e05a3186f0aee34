"""The web console (issue 18) in a real browser: Playwright drives Debian's Chromium
(/usr/bin/chromium; never a downloaded build) against a real `rtm2 serve`, with SDK clients on
the other side. Screenshots of each page go to a pytest temp dir (printed), not to the repo."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Dialog, Page, async_playwright, expect

import rtm2
from rtm2 import ChannelType

from ..conftest import API_KEY_A, APP_A, APP_B, APP_SMALL, CERT_SMALL, ServerProcess
from .nodes import redis_nodes
from .util import Users, client_for, next_event, uid, unique

# One browser for the module (starting Playwright's driver and Chromium takes seconds), so
# the tests, and the fixtures they share with it, run in the module's event loop.
pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]

CHROMIUM = "/usr/bin/chromium"
XSS = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("console"), http=True).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("console-screenshots")
    print(f"console screenshots in {path}")
    return path


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        # Root (CI) cannot use Chromium's sandbox; the pages are the test's own.
        b = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        await b.close()


class Console:
    """One browser tab on the console, with every dialog it opens recorded."""

    def __init__(self, page: Page, server: ServerProcess) -> None:
        self.page = page
        self.server = server
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        page.on("dialog", self._dialog)
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))

    async def _dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(dialog.message)
        await dialog.dismiss()

    async def login(self, key: str) -> None:
        await self.page.goto(f"{self.server.http_url}/console/")
        await self.page.get_by_label("Admin key or an app's API key").fill(key)
        await self.page.get_by_role("button", name="Log in").click()

    async def go(self, fragment: str) -> None:
        await self.page.goto(f"{self.server.http_url}/console/#/{fragment}")


@pytest_asyncio.fixture(loop_scope="module")
async def users(server: ServerProcess) -> AsyncIterator[Users]:
    """As tests/e2e/conftest.py's, in the module's loop."""
    logged = Users(server)
    yield logged
    await logged.logout_all()


@pytest_asyncio.fixture(loop_scope="module")
async def console(browser: Browser, server: ServerProcess) -> AsyncIterator[Console]:
    context = await browser.new_context(viewport={"width": 1100, "height": 800})
    c = Console(await context.new_page(), server)
    yield c
    await context.close()
    assert c.errors == []  # no script error on any page


async def logged_in(console: Console) -> Page:
    await console.login(console.server.admin_key)
    await expect(console.page.get_by_role("heading", name="Overview")).to_be_visible()
    return console.page


async def test_a_wrong_key_cannot_log_in(console: Console) -> None:
    await console.login("not-a-key")
    await expect(console.page.get_by_role("alert")).to_contain_text("Wrong key")
    await expect(console.page.locator("#nav")).to_be_hidden()
    cookies = await console.page.context.cookies()
    assert [c for c in cookies if c["name"] == "rtm2_console"] == []


async def test_a_session_ended_elsewhere_brings_the_login_back(console: Console) -> None:
    page = await logged_in(console)
    csrf = await page.evaluate("fetch('/console/session').then(r => r.json()).then(me => me.csrf)")
    # Log out outside the page (as another tab would): the page's next call gets a 401.
    status = await page.evaluate(
        "csrf => fetch('/console/logout', {method: 'POST', headers: {'X-CSRF-Token': csrf}})"
        ".then(r => r.status)",
        csrf,
    )
    assert status == 200
    await console.go("channels")  # its list refreshes every second
    await expect(page.get_by_label("Admin key or an app's API key")).to_be_visible()
    await expect(page.locator("#status")).to_contain_text("log in again")


async def test_the_overview_shows_the_node_its_apps_and_a_live_chart(
    console: Console, users: Users, shots: Path
) -> None:
    await users.login("watched")
    page = await logged_in(console)
    nodes = page.get_by_role("region", name="Nodes")
    row = nodes.locator("tbody tr").first
    await expect(row).to_contain_text(console.server.url)
    await expect(row.get_by_role("cell", name=rtm2.__version__, exact=True)).to_be_visible()
    await expect(row).to_contain_text("(this node)")
    apps = page.get_by_role("region", name="Apps")
    await expect(apps.get_by_role("cell", name=APP_A)).to_be_visible()
    await expect(apps.get_by_role("columnheader", name="Users online (all nodes)")).to_be_visible()
    await expect(
        apps.get_by_role("columnheader", name="Messages/s out (all nodes)")
    ).to_be_visible()
    # The live feed fills the charts: two samples make a line of each series.
    await expect(page.locator("svg polyline.in")).to_have_count(1, timeout=5000)
    await expect(page.locator("svg polyline.c1")).to_have_count(1)
    label = await page.locator("svg").first.get_attribute("aria-label")
    assert label is not None
    assert re.search(r"connections [1-9]", label)
    await page.screenshot(path=shots / "overview.png", full_page=True)


async def test_a_new_channel_appears_within_two_seconds_and_its_page_shows_member_state_and_tail(
    console: Console, users: Users, shots: Path
) -> None:
    page = await logged_in(console)
    await console.go("channels")
    channel = unique("console-room-")
    await page.get_by_label("Name starts with").fill(channel)
    alice = await users.login("alice")
    await alice.subscribe(channel)
    await alice.presence.set_state(channel, ChannelType.MESSAGE, {"mood": "calm"})
    created = time.monotonic()
    link = page.get_by_role("link", name=channel)
    await expect(link).to_be_visible(timeout=2000)
    assert time.monotonic() - created < 2.0
    await page.screenshot(path=shots / "channels.png", full_page=True)

    await link.click()
    members = page.get_by_role("region", name="Members")
    await expect(members.get_by_role("cell", name=uid(alice))).to_be_visible()
    await expect(members).to_contain_text("mood")
    await expect(members).to_contain_text("calm")
    await expect(page.get_by_text("tailing")).to_be_visible()
    await alice.publish(channel, "hello from the sdk", custom_type="greeting")
    tail = page.locator("ol.tail")
    await expect(tail.locator("li").first).to_contain_text("hello from the sdk")
    await expect(tail.locator("li").first).to_contain_text(uid(alice))
    await expect(tail.locator("li").first).to_contain_text("greeting")

    # Hex, and pause: messages that come while paused show on resume.
    await page.get_by_label("Payload as").select_option("hex")
    await expect(tail.locator("li").first).to_contain_text("68 65 6c 6c 6f")  # "hello"
    await page.get_by_label("Payload as").select_option("text")
    await page.get_by_role("button", name="Pause").click()
    await alice.publish(channel, "sent while paused")
    await page.wait_for_timeout(300)
    await expect(tail).not_to_contain_text("sent while paused")
    await page.get_by_role("button", name="Resume").click()
    await expect(tail.locator("li").first).to_contain_text("sent while paused")
    await page.screenshot(path=shots / "channel.png", full_page=True)


async def test_a_thousand_channels_are_paged_and_the_page_stays_responsive(
    console: Console, users: Users
) -> None:
    prefix = unique("many-") + "-"
    clients = await users.login_many(20, "many")
    names = [f"{prefix}{i:04d}" for i in range(1000)]
    await asyncio.gather(
        *(clients[i // 50].subscribe(name) for i, name in enumerate(names))  # 50 a client
    )
    page = await logged_in(console)
    await console.go("channels")
    await page.get_by_label("Name starts with").fill(prefix)
    await expect(page.get_by_role("link", name=names[0], exact=True)).to_be_visible()
    rows = page.locator("main tbody tr")
    await expect(rows).to_have_count(50)  # one page, not 1,000 rows
    await page.get_by_role("button", name="Next page").click()
    await expect(page.get_by_role("link", name=names[50], exact=True)).to_be_visible()
    await expect(rows).to_have_count(50)
    # The page answers while the list refreshes every second: a click is handled at once.
    started = time.monotonic()
    await page.get_by_role("button", name="Previous page").click()
    await expect(page.get_by_role("link", name=names[0], exact=True)).to_be_visible()
    assert time.monotonic() - started < 1.5
    longest = await page.evaluate(
        "Math.max(0, ...performance.getEntriesByType('resource')"
        ".filter(e => e.name.includes('/channels?')).map(e => e.duration))"
    )
    assert longest < 1000  # ms for one page of the listing, 1,000 channels live


async def test_a_message_published_from_the_console_reaches_the_sdk_client(
    console: Console, users: Users, shots: Path
) -> None:
    bob = await users.login("bob")
    channel = unique("console-pub-")
    stream = await bob.subscribe(channel)
    page = await logged_in(console)
    await console.go(f"actions/message/{channel}")
    publish = page.get_by_role("region", name="Publish")
    await publish.get_by_label("Message", exact=True).fill("from the console")
    await publish.get_by_label("Custom type").fill("ops")
    await publish.get_by_role("button", name="Publish").click()
    got = await stream.get(timeout=5)
    assert (got.message, got.user_id, got.custom_type) == ("from the console", "server", "ops")
    await page.screenshot(path=shots / "actions.png", full_page=True)


async def test_metadata_writes_check_revisions_and_a_lock_is_revoked_from_the_console(
    console: Console, users: Users
) -> None:
    erin = await users.login("erin")
    channel = unique("console-edit-")
    await erin.subscribe(channel)
    page = await logged_in(console)
    await console.go(f"actions/message/{channel}")
    meta = page.get_by_role("region", name="Metadata")
    await meta.get_by_label("Key").fill("topic")
    await meta.get_by_label("Value").fill("launch")
    await meta.get_by_label("Item revision").fill("0")  # only if new
    await meta.get_by_role("button", name="Write").click()
    await expect(meta.get_by_role("cell", name="launch")).to_be_visible()
    got = await erin.storage.get_channel_metadata(channel, ChannelType.MESSAGE)
    assert [(i.key, i.value, i.author) for i in got.items.values()] == [
        ("topic", "launch", "server")
    ]
    await meta.get_by_label("Value").fill("again")
    await meta.get_by_role("button", name="Write").click()  # revision 0: it exists now
    await expect(page.locator("#status")).to_contain_text("12014")
    got = await erin.storage.get_channel_metadata(channel, ChannelType.MESSAGE)
    assert [i.value for i in got.items.values()] == ["launch"]

    await erin.lock.set(channel, ChannelType.MESSAGE, "editor", ttl=30)
    await erin.lock.acquire(channel, ChannelType.MESSAGE, "editor")
    locks = page.get_by_role("region", name="Locks")
    await locks.get_by_label("Lock", exact=True).fill("editor")
    await locks.get_by_label("Owner (revoke)").fill(uid(erin))
    await locks.get_by_role("button", name="Apply").click()
    await expect(page.locator("#status")).to_contain_text("revoke done")
    assert (await erin.lock.get(channel, ChannelType.MESSAGE))["editor"].owner == ""


async def test_a_stream_channel_page_shows_its_topics_and_their_publishers(
    console: Console, users: Users
) -> None:
    channel = unique("console-stage-")
    singer = await users.login("singer", app_id=APP_SMALL)
    stream = singer.stream_channel(channel)
    await stream.join()
    await stream.join_topic("song")
    page = await logged_in(console)
    await page.get_by_label("App", exact=True).select_option(APP_SMALL)
    await console.go(f"channel/stream/{channel}")
    await expect(page.get_by_text("tailing")).to_be_visible()
    await stream.publish_topic("song", "la la")
    topics = page.get_by_role("region", name="Topics")
    await expect(topics.get_by_role("cell", name="song", exact=True)).to_be_visible()
    await expect(topics.get_by_role("cell", name=uid(singer))).to_be_visible()
    await expect(page.locator("ol.tail li").first).to_contain_text("[song]")


async def test_kicking_a_user_from_the_console_fails_its_client_with_banned_by_server(
    console: Console, users: Users, shots: Path
) -> None:
    carol = await users.login("carol")
    events = users.conn_events(carol)
    channel = unique("console-kick-")
    await carol.subscribe(channel)
    page = await logged_in(console)
    await console.go("users")
    await page.get_by_label("User id").fill(uid(carol))
    await page.get_by_role("button", name="Find").click()
    await expect(page.get_by_role("cell", name="online", exact=True)).to_be_visible()
    await expect(page.get_by_role("link", name=channel)).to_be_visible()
    await page.get_by_label("Ban (seconds)").fill("60")
    await page.get_by_role("button", name="Kick…").click()
    await page.screenshot(path=shots / "users.png", full_page=True)
    await page.get_by_role("button", name=f"Kick {uid(carol)}").click()
    state, reason = await next_event(events)
    while state is not rtm2.ConnectionState.FAILED:
        state, reason = await next_event(events)
    assert reason is rtm2.ConnectionChangeReason.BANNED_BY_SERVER
    await expect(page.get_by_role("cell", name="offline", exact=True)).to_be_visible()


async def test_a_markup_payload_and_metadata_value_render_as_text_and_open_no_dialog(
    console: Console, users: Users
) -> None:
    dave = await users.login("dave")
    channel = unique("console-xss-")
    await dave.subscribe(channel)
    page = await logged_in(console)
    await console.go(f"channel/message/{channel}")
    await expect(page.get_by_text("tailing")).to_be_visible()
    await dave.publish(channel, XSS)
    await dave.storage.set_channel_metadata(
        channel, ChannelType.MESSAGE, [rtm2.MetadataItem("note", XSS)]
    )
    tail = page.locator("ol.tail")
    await expect(tail.locator("li").first.locator("code")).to_have_text(XSS)
    metadata = page.get_by_role("region", name="Metadata")
    await expect(metadata.get_by_text(XSS)).to_be_visible()
    assert await page.locator("main img").count() == 0
    await page.wait_for_timeout(300)  # a broken image's onerror would have fired by now
    assert console.dialogs == []


async def test_an_app_key_limits_the_console_to_its_app(console: Console, shots: Path) -> None:
    await console.login(API_KEY_A)
    page = console.page
    await expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    options = await page.get_by_label("App", exact=True).locator("option").all_text_contents()
    assert options == [APP_A]
    # No /v1/info for an app's key: the overview shows this node and its app, from the feed.
    apps = page.get_by_role("region", name="Apps")
    await expect(apps.get_by_role("columnheader", name="Users online (this node)")).to_be_visible()
    await expect(apps.get_by_role("cell", name=APP_B)).to_have_count(0)
    await console.go("apps")
    await expect(page.get_by_role("heading", name=APP_A)).to_be_visible()
    await expect(page.get_by_role("cell", name="message_size", exact=True)).to_be_visible()
    await expect(page.get_by_role("heading", name=APP_B)).to_have_count(0)
    content = await page.content()
    assert API_KEY_A not in content
    await page.screenshot(path=shots / "apps.png", full_page=True)


async def test_the_console_fits_a_narrow_window_and_works_by_keyboard(
    browser: Browser, server: ServerProcess, shots: Path
) -> None:
    context = await browser.new_context(viewport={"width": 380, "height": 700})
    page = await context.new_page()
    try:
        await page.goto(f"{server.http_url}/console/")
        await expect(page.get_by_label("Admin key or an app's API key")).to_be_focused()
        await page.keyboard.type(server.admin_key)
        await page.keyboard.press("Enter")
        await expect(page.get_by_role("heading", name="Overview")).to_be_visible()
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= 380
        await page.get_by_role("link", name="Channels").focus()
        await page.keyboard.press("Enter")
        await expect(page.get_by_role("heading", name="Channels")).to_be_visible()
        await page.screenshot(path=shots / "narrow.png", full_page=True)
    finally:
        await context.close()


@pytest.mark.redis
async def test_the_overview_on_one_node_lists_the_other_node_with_its_address_and_version(
    browser: Browser, tmp_path: Path
) -> None:
    with redis_nodes(tmp_path) as started:
        a = started.start("a", http=True)
        b = started.start("b")
        on_b = client_for(b, "far", app_id=APP_SMALL)
        await on_b.login(rtm2.build_rtm_token(APP_SMALL, CERT_SMALL, on_b.config.user_id))
        context = await browser.new_context(viewport={"width": 1100, "height": 800})
        try:
            console = Console(await context.new_page(), a)
            page = await logged_in(console)
            nodes = page.get_by_role("region", name="Nodes")
            other = nodes.locator("tbody tr", has_text=b.url)
            version = other.get_by_role("cell", name=rtm2.__version__, exact=True)
            await expect(version).to_be_visible()
            await expect(other.get_by_role("cell", name="1", exact=True)).to_be_visible()
            await expect(nodes.locator("tbody tr", has_text=a.url)).to_contain_text("(this node)")
            apps = page.get_by_role("region", name="Apps")
            small = apps.locator("tbody tr", has_text=APP_SMALL)
            await expect(small.get_by_role("cell").nth(1)).to_have_text("1")  # on b, not on a
            assert console.errors == []
        finally:
            await context.close()
            await on_b.logout()
