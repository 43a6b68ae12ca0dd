"""The console in headless Chromium: sign-in, quarantine, releases, roles, silences, AI model
switches, CSRF, a11y."""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, expect

from common.security.roles import Role
from common.security.tokens import TokenService
from eventguard.console import COOKIE
from eventguard.console.reads import Quarantine
from schemas.envelope import new_event
from schemas.marketplace import StrategyRevoked
from tests.browser.conftest import AXE, BULK_USER, MODEL, OUTPUT, POISON_TYPE, BrowserFleet
from workers.ai_fallback import AiFallbackService
from workers.ai_fallback import keys as ai_keys
from workers.health_monitor.evaluator import AlertState
from workers.health_monitor.service import HealthMonitorService
from workers.health_monitor.silences import silence_id_of

pytestmark = pytest.mark.asyncio(loop_scope="module")

PAGES = ("/fleet", "/quarantine", "/alerts", "/models", "/scans", "/live", "/audit")


async def _poison(fleet: BrowserFleet, user: str = "u1") -> str:
    event = new_event(POISON_TYPE, StrategyRevoked(user_id=user, strategy="s"), source="browser")
    await fleet.publisher.publish(event)
    return event.id


async def _record_of(fleet: BrowserFleet, event_id: str, within: float = 5.0) -> str:
    """The quarantine record id of a dead event (read from Redis)."""
    quarantine = Quarantine(fleet.store)
    async with asyncio.timeout(within):
        while True:
            _, rows = await quarantine.repo.search(kind="message", limit=200)
            for row in rows:
                if row["entity_id"] == event_id:
                    return row["id"]
            await asyncio.sleep(0.05)


async def _csrf(page: Page) -> str:
    return str(await page.locator("form.who input[name=csrf]").get_attribute("value"))


async def test_sign_in_with_an_api_key_sets_a_strict_http_only_cookie(
    fleet: BrowserFleet, shots: list[Page]
) -> None:
    """An operator key signs in; the session cookie is HttpOnly and SameSite=Strict."""
    page = await fleet.signed_in(fleet.operator_key)
    shots.append(page)
    await expect(page.locator("h1")).to_have_text("Fleet")
    await expect(page.locator("table").first).to_contain_text("quarantine")
    cookies = {c["name"]: c for c in await page.context.cookies()}
    assert cookies[COOKIE]["httpOnly"] is True
    assert cookies[COOKIE]["sameSite"] == "Strict"
    assert fleet.operator_key not in cookies[COOKIE]["value"]


async def test_a_wrong_key_is_refused_and_a_token_or_one_time_link_signs_in(
    fleet: BrowserFleet, shots: list[Page]
) -> None:
    """A bad key gets the form again (401); a token signs in; a one-time link works once."""
    context = await fleet.new_context()
    page = await context.new_page()
    shots.append(page)
    await page.goto("/signin")
    await page.fill("#credential", "egk_not-a-real-key")
    await page.click("button[type=submit]")
    await expect(page.locator(".error")).to_contain_text("not valid")
    token = TokenService(fleet.settings.security, store=fleet.store).issue("tess", "user")
    await page.fill("#credential", token)
    await page.click("button[type=submit]")
    await page.wait_for_url("**/fleet")
    await expect(page.locator(".who")).to_contain_text("tess (user)")
    code = await fleet.console.console.auth.mint_link("linda", Role.ADMIN)
    other = await (await fleet.new_context()).new_page()
    shots.append(other)
    await other.goto(f"/signin/link?code={code}")
    await expect(other.locator(".who")).to_contain_text("linda (admin)")
    again = await (await fleet.new_context()).new_page()
    shots.append(again)
    response = await again.goto(f"/signin/link?code={code}")
    assert response is not None
    assert response.status == 401


async def test_a_poison_message_appears_in_the_quarantine_within_two_seconds(
    fleet: BrowserFleet, shots: list[Page]
) -> None:
    """Published, rejected, dead-lettered, recorded: the quarantine page lists it within 2 s."""
    page = await fleet.signed_in(fleet.operator_key)
    shots.append(page)
    fleet.poison.accept = False
    started = time.monotonic()
    event_id = await _poison(fleet)
    url = "/quarantine?reason=handler_rejected"
    while True:
        await page.goto(url)
        if await page.locator("#records").get_by_text(event_id).count():
            break
        elapsed = time.monotonic() - started
        assert elapsed < 2.0, f"the poison message did not appear within 2 s ({elapsed:.2f} s)"
        await asyncio.sleep(0.1)
    assert time.monotonic() - started < 2.0


async def test_release_publishes_the_message_once_on_the_broker(
    fleet: BrowserFleet, shots: list[Page]
) -> None:
    """Release from the record page: one copy on the broker, handled once, record released."""
    fleet.poison.accept = False
    event_id = await _poison(fleet, "u-release")
    record_id = await _record_of(fleet, event_id)
    fleet.poison.accept = True
    page = await fleet.signed_in(fleet.operator_key)
    shots.append(page)
    await page.goto(f"/quarantine/records/{record_id}")
    await expect(page.locator("pre")).to_contain_text(event_id)
    await page.click("#release")
    await expect(page.locator(".notice")).to_contain_text("Release requested")
    async with asyncio.timeout(10):
        while not fleet.released_copies(event_id) or event_id not in fleet.poison.handled:
            await asyncio.sleep(0.05)
    await page.reload()
    await expect(page.locator("#status")).to_have_text("released")
    await asyncio.sleep(0.5)  # a second copy, if there were one, would have arrived by now
    assert len(fleet.released_copies(event_id)) == 1
    assert fleet.poison.handled.count(event_id) == 1
    released = [
        m for m in fleet.spy
        if m.type == "quarantine.entry.released" and record_id.encode() in m.body
    ]  # fmt: skip
    assert len(released) == 1


async def test_discard_ends_a_record_without_republishing_it(
    fleet: BrowserFleet, shots: list[Page]
) -> None:
    """Discard from the record page: one entry.discarded on the broker, no released copy."""
    fleet.poison.accept = False
    event_id = await _poison(fleet, "u-discard")
    record_id = await _record_of(fleet, event_id)
    page = await fleet.signed_in(fleet.operator_key)
    shots.append(page)
    await page.goto(f"/quarantine/records/{record_id}")
    await page.click("#discard")
    await expect(page.locator(".notice")).to_contain_text("Discard requested")
    async with asyncio.timeout(10):
        while not [m for m in fleet.spy if m.type == "quarantine.entry.discarded"
                   and record_id.encode() in m.body]:  # fmt: skip
            await asyncio.sleep(0.05)
    await page.reload()
    await expect(page.locator("#status")).to_have_text("discarded")
    assert await page.locator("#release").count() == 0
    assert fleet.released_copies(event_id) == []


@pytest.mark.timeout(300)  # 1,000 dead letters and 2,000 requests on a shared 2-core machine
async def test_two_operators_group_release_a_thousand_records_each_once(
    fleet: BrowserFleet, shots: list[Page]
) -> None:
    """1,000 records, two operators press at once: the bar reaches 1,000, each record is
    released once (one release id, one entry.released) and each event is handled once."""
    fleet.poison.accept = False
    ids = []
    for _ in range(10):
        ids += await asyncio.gather(*(_poison(fleet, BULK_USER) for _ in range(100)))
    quarantine = Quarantine(fleet.store)
    group = ("schema_violation", POISON_TYPE, fleet.poison_worker)
    async with asyncio.timeout(60):
        while len(record_ids := await quarantine.members(*group)) < 1_000:
            await asyncio.sleep(0.2)
    fleet.poison.accept = True
    first = await fleet.signed_in(fleet.operator_key)
    second = await fleet.signed_in(fleet.operator_key)
    shots += [first, second]
    for page in (first, second):
        async with asyncio.timeout(15):  # the groups are recomputed at most every 5 s
            while True:
                await page.goto("/quarantine")
                await expect(page.locator("#group-table")).to_be_visible()
                if await page.locator("#group-table").get_by_text("schema_violation").count():
                    break
                await asyncio.sleep(0.5)
    button = "#group-table tr:has-text('schema_violation') button.release"
    # Both jobs are made from the whole group: quarantine takes no release until both exist
    # (else the first job's releases can leave the group before the second click reads it).
    await fleet.runtime.pause("quarantine", "test: both operators' jobs first")
    try:
        await asyncio.gather(first.click(button), second.click(button))
        for page in (first, second):
            await page.wait_for_url("**/quarantine/jobs/*")
    finally:
        await fleet.runtime.resume("quarantine")
    for page in (first, second):
        await expect(page.locator("#count")).to_contain_text("1000 of 1000 done", timeout=180_000)
        assert await page.locator("#bar").get_attribute("value") == "1000"
    async with asyncio.timeout(30):
        while not all(i in fleet.poison.handled for i in ids):
            await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)  # a duplicate, if there were one, would have arrived by now
    released = Counter(fleet.released_records())
    assert [released[r] for r in record_ids] == [1] * 1_000
    assert [fleet.poison.handled.count(i) for i in ids] == [1] * 1_000
    for i in ids:  # a re-publish after a timed-out handler reuses its release id: one release
        assert len({m.headers["x-eventguard-release-id"] for m in fleet.released_copies(i)}) == 1
    await expect(first.locator("#count")).to_contain_text("(1000 released)")


async def test_a_viewer_sees_no_release_button_and_its_post_is_refused(
    fleet: BrowserFleet, shots: list[Page]
) -> None:
    """A user-role viewer reads the record but has no Release button; the POST is 403."""
    fleet.poison.accept = False
    record_id = await _record_of(fleet, await _poison(fleet, "u-viewer"))
    page = await fleet.signed_in(fleet.viewer_key)
    shots.append(page)
    await page.goto(f"/quarantine/records/{record_id}")
    await expect(page.locator("#status")).to_have_text("quarantined")
    assert await page.locator("#release").count() == 0
    assert await page.locator("#discard").count() == 0
    response = await page.request.post(
        f"/quarantine/records/{record_id}/release", form={"csrf": await _csrf(page)}
    )
    assert response.status == 403
    await page.reload()
    await expect(page.locator("#status")).to_have_text("quarantined")


async def test_a_silence_hides_a_firing_alert(fleet: BrowserFleet, shots: list[Page]) -> None:
    """Firing alert listed; a silence on its rule moves it to Silenced; expiring brings it back."""
    now = time.time()
    rule = f"BrowserRule{int(now)}"
    alert = AlertState(
        fingerprint="fp-browser", rule=rule, labels={"worker": "checkout"}, phase="firing",
        since=now, severity="critical", wanted="critical", wanted_since=now, value=0.4,
    )  # fmt: skip
    key = fleet.store.key("health", "alerts")  # where the health_monitor leader commits alerts
    await fleet.store.execute(lambda r: r.hset(key, alert.fingerprint, alert.to_json()))
    page = await fleet.signed_in(fleet.operator_key)
    shots.append(page)
    await page.goto("/alerts")
    await expect(page.locator("#alerts")).to_contain_text(rule)
    await page.fill("#matchers", f"alertname={rule}")
    await page.fill("#minutes", "10")
    await page.click("form.act button[type=submit]")
    await expect(page.locator("#alerts")).not_to_contain_text(rule)
    await expect(page.locator("#silenced")).to_contain_text(rule)
    await page.click("#silences button")
    await expect(page.locator("#alerts")).to_contain_text(rule)


async def _carried(fleet: BrowserFleet, event_type: str, count: int) -> list[dict[str, Any]]:
    """The first ``count`` ``event_type`` events on the broker (waits up to 5 s for them)."""
    async with asyncio.timeout(5):
        while len(fleet.carried(event_type)) < count:
            await asyncio.sleep(0.02)
    return fleet.carried(event_type)[:count]


async def test_an_operator_disables_and_enables_a_model_from_the_ai_page(
    fleet: BrowserFleet, shots: list[Page]
) -> None:
    """Disable: the request and ai_fallback's answer are on the broker, the model is off in
    Redis and in the worker; Enable puts it back the same way."""
    service = fleet.runtime.workers["ai_fallback"].service
    assert isinstance(service, AiFallbackService)
    before = len(fleet.carried("ai.model.disable.requested"))
    page = await fleet.signed_in(fleet.operator_key)
    shots.append(page)
    await page.goto("/models")
    row = page.locator(f"#models tr[data-model='{MODEL}']")
    await expect(row.locator(".state")).to_have_text("on")
    await row.locator("input[name=note]").fill("browser incident")
    await row.locator("button.disable").click()
    await expect(page.locator(".notice")).to_contain_text(f"{MODEL} disabled: ai_fallback answered")
    await expect(row.locator(".state")).to_contain_text("off by apikey:")
    await expect(row.locator(".state")).to_contain_text("browser incident")
    [request] = (await _carried(fleet, "ai.model.disable.requested", before + 1))[before:]
    assert request["data"] == {"model": MODEL, "note": "browser incident"}
    assert request["actor"]["role"] == "operator"
    [answer] = [e for e in fleet.carried("ai.model.disabled") if e["causation_id"] == request["id"]]
    assert answer["data"]["changed"] is True
    assert service.health.health[MODEL].off
    off_key = ai_keys.off(fleet.store, MODEL)
    assert await fleet.store.execute(lambda r: r.exists(off_key)) == 1
    await row.locator("button.enable").click()
    await expect(page.locator(".notice")).to_contain_text(f"{MODEL} enabled: ai_fallback answered")
    await expect(row.locator(".state")).to_have_text("on")
    enabled = await _carried(fleet, "ai.model.enabled", 1)
    assert enabled[-1]["data"]["lifted"] is True
    assert not service.health.health[MODEL].off
    assert await fleet.store.execute(lambda r: r.exists(off_key)) == 0


async def test_a_silence_created_in_the_console_is_applied_by_health_monitor(
    fleet: BrowserFleet, shots: list[Page]
) -> None:
    """The console publishes health.silence.requested; health_monitor answers
    health.silence.created, stores the silence under the request's id and mutes the alert."""
    now = time.time()
    rule = f"AppliedRule{int(now)}"
    alert = AlertState(
        fingerprint="fp-applied", rule=rule, labels={"worker": "billing"}, phase="firing",
        since=now, severity="warning", wanted="warning", wanted_since=now, value=0.2,
    )  # fmt: skip
    key = fleet.store.key("health", "alerts")
    await fleet.store.execute(lambda r: r.hset(key, alert.fingerprint, alert.to_json()))
    before = len(fleet.carried("health.silence.requested"))
    page = await fleet.signed_in(fleet.operator_key)
    shots.append(page)
    await page.goto("/alerts")
    await page.fill("#matchers", f"alertname={rule}, worker=billing")
    await page.fill("#minutes", "15")
    await page.fill("#comment", "browser maintenance")
    await page.click("form.act button[type=submit]")
    await expect(page.locator(".notice")).to_contain_text("Silence created by health_monitor")
    await expect(page.locator("#silenced")).to_contain_text(rule)
    [request] = (await _carried(fleet, "health.silence.requested", before + 1))[before:]
    assert request["data"]["matchers"] == {"alertname": rule, "worker": "billing"}
    created = [
        e for e in fleet.carried("health.silence.created") if e["causation_id"] == request["id"]
    ]
    assert [e["data"]["silence_id"] for e in created] == [silence_id_of(request["id"])]
    monitor = fleet.runtime.workers["health_monitor"].service
    assert isinstance(monitor, HealthMonitorService)
    await monitor.book.refresh(time.time())  # what the leader does at every evaluation
    assert monitor.book.silenced(alert, time.time())
    row = page.locator("#silences tr", has_text="browser maintenance")
    await row.locator("button").click()
    await expect(page.locator(".notice")).to_contain_text("Silence expired by health_monitor")
    await expect(page.locator("#alerts")).to_contain_text(rule)
    await monitor.book.refresh(time.time())
    assert not monitor.book.silenced(alert, time.time())


async def test_a_viewer_can_neither_switch_models_nor_silence(
    fleet: BrowserFleet, shots: list[Page]
) -> None:
    """No Disable/Enable button nor silence form for a viewer; the POSTs are 403 and publish
    nothing."""
    page = await fleet.signed_in(fleet.viewer_key)
    shots.append(page)
    await page.goto("/models")
    await expect(page.locator(f"#models tr[data-model='{MODEL}']")).to_be_visible()
    assert await page.locator("#models button").count() == 0
    await page.goto("/alerts")
    assert await page.locator("#matchers").count() == 0
    requested = ("ai.model.disable.requested", "health.silence.requested")
    before = {t: len(fleet.carried(t)) for t in requested}
    csrf = await _csrf(page)
    for path, form in (
        ("/models/disable", {"model": MODEL}),
        ("/alerts/silences", {"matchers": "alertname=x", "minutes": "5"}),
    ):
        fields: dict[str, str | float | bool] = {"csrf": csrf, **form}
        response = await page.request.post(path, form=fields)
        assert response.status == 403, path
    await asyncio.sleep(0.3)  # long enough for a publish to reach the spy, had there been one
    assert {t: len(fleet.carried(t)) for t in requested} == before


async def test_sign_out_ends_the_session_on_the_server(
    fleet: BrowserFleet, shots: list[Page]
) -> None:
    """After sign-out the page asks to sign in, and the old cookie no longer works anywhere."""
    page = await fleet.signed_in(fleet.viewer_key)
    shots.append(page)
    old = [c for c in await page.context.cookies() if c["name"] == COOKIE]
    await page.click("form.who button")
    await page.wait_for_url("**/signin")
    await page.goto("/fleet")
    await expect(page).to_have_url(re.compile(r"/signin\?next=(%2F|/)fleet$"))
    replay = await fleet.new_context()
    await replay.add_cookies(old)  # type: ignore[arg-type]
    other = await replay.new_page()
    shots.append(other)
    await other.goto("/quarantine")
    await expect(other).to_have_url(re.compile(r"/signin\?next=(%2F|/)quarantine$"))


async def test_every_post_needs_the_sessions_csrf_token(
    fleet: BrowserFleet, shots: list[Page]
) -> None:
    """No token or a wrong one is 403 and changes nothing; the session's own token passes."""
    page = await fleet.signed_in(fleet.operator_key)
    shots.append(page)
    for form in ({}, {"csrf": "wrong"}):
        for path in ("/alerts/silences", "/signout"):
            fields: dict[str, str | float | bool] = {"matchers": "a=b", "minutes": "5", **form}
            response = await page.request.post(path, form=fields)
            assert response.status == 403, (path, form)
    await page.goto("/fleet")
    await expect(page.locator(".who")).to_be_visible()  # still signed in
    response = await page.request.post("/signout", form={"csrf": await _csrf(page)})
    assert response.ok


async def test_no_page_has_a_serious_or_critical_accessibility_violation(
    fleet: BrowserFleet, shots: list[Page]
) -> None:
    """axe-core over every page (and a record, a job and the sign-in form): nothing serious."""
    if not AXE.exists():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("axe-core missing: run scripts/browser.sh", pytrace=False)
        pytest.skip("axe-core missing: run scripts/browser.sh")
    fleet.poison.accept = False
    record_id = await _record_of(fleet, await _poison(fleet, "u-axe"))
    page = await fleet.signed_in(fleet.operator_key, bypass_csp=True)
    shots.append(page)
    await page.goto("/fleet")
    empty_group: dict[str, str | float | bool] = {
        "csrf": await _csrf(page),
        "reason": "unknown",
        "event_type": "x",
        "worker": "y",
    }
    job = await page.request.post("/quarantine/groups/release", form=empty_group)
    assert "/quarantine/jobs/" in job.url
    found: dict[str, list[Any]] = {}
    for path in (*PAGES, f"/quarantine/records/{record_id}", job.url, "/signin"):
        await page.goto(path)
        await page.wait_for_load_state("networkidle")
        await page.add_script_tag(path=str(AXE))
        result = await page.evaluate("async () => (await axe.run(document)).violations")
        bad = [v["id"] for v in result if v["impact"] in {"serious", "critical"}]
        if bad:
            found[path] = bad
    assert found == {}


async def test_screenshots_of_the_fleet_and_quarantine_pages(
    fleet: BrowserFleet, shots: list[Page]
) -> None:
    """The README's screenshots (into EVENTGUARD_CONSOLE_SCREENSHOTS, else the output folder)."""
    folder = Path(os.environ.get("EVENTGUARD_CONSOLE_SCREENSHOTS", OUTPUT))
    page = await fleet.signed_in(fleet.operator_key)
    shots.append(page)
    for name, path in (("fleet", "/fleet"), ("quarantine", "/quarantine")):
        await page.goto(path)
        await page.wait_for_load_state("networkidle")
        target = folder / f"console-{name}.png"
        await page.screenshot(path=target, full_page=True)
        assert target.stat().st_size > 10_000
