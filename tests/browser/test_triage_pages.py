"""The triage pages in headless Chromium against a live service with the demo model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.browser.browser_thread import BrowserThread, Tab
from tests.browser.conftest import LiveService

# The timeout is the last safety net of a run (pytest-timeout): the first test also starts
# the service and Chromium, which on a loaded machine takes minutes, not hours.
pytestmark = [pytest.mark.browser, pytest.mark.timeout(420)]


async def _visit(tab: Tab, url: str, screenshots: Path, name: str) -> Any:
    """Open `url`, save a full-page screenshot, and check it loaded cleanly."""
    response = await tab.page.goto(url, wait_until="load")
    assert response is not None and response.status == 200, url
    png = await tab.page.screenshot(path=str(screenshots / f"{name}.png"), full_page=True)
    assert png.startswith(b"\x89PNG"), name
    assert tab.log.errors == [], f"console errors on {url}: {tab.log.errors}"
    # Usable at 1280 px: nothing forces a horizontal scroll bar.
    assert await tab.page.evaluate("document.documentElement.scrollWidth") <= 1280
    return tab.page


def _api(live: LiveService, path: str) -> Any:
    answer = httpx.get(live.base_url + path, timeout=60)
    answer.raise_for_status()
    return answer.json()


async def _texts(locator: Any) -> list[str]:
    """Text of every match, shown or not (inside a closed <details> too)."""
    return [text or "" for text in await locator.all_text_contents()]


def _percents(texts: list[str]) -> list[float]:
    return [float(text.rstrip("%")) for text in texts]


def _score_shares(live: LiveService, edges: np.ndarray, *, segment: str | None) -> list[float]:
    """Percent of version 1's logged scores per bin of the manifest's score edges, computed
    here from the records as posted (tails join the end bins)."""
    logged = [r["prediction"]["score"] for r in live.records if r.get("version") != "canary"
              and (segment is None or (r.get("context") or {}).get("segment") == segment)]
    counts, _ = np.histogram(np.clip(logged, edges[0], edges[-1]), bins=edges)
    return [100 * c / len(logged) for c in counts]


def test_fleet_page_lists_the_model_with_its_drift_status(
        live_service: LiveService, browser: BrowserThread, screenshots: Path) -> None:
    async def check(tab: Tab) -> None:
        page = await _visit(tab, live_service.base_url + "/ui/", screenshots, "fleet")
        row = page.locator("#fleet tr[data-model='credit']")
        assert await row.count() == 1
        text = await row.inner_text()
        assert "production → 1" in text and "canary → 2" in text
        # The status is spelled out, not only coloured.
        assert any(word in text for word in ("drift", "warn", "ok", "too few records"))
        assert live_service.incident_id in text

    browser.check(check)


def test_waterfall_has_one_bar_per_feature_matching_the_api_trace(
        live_service: LiveService, browser: BrowserThread, screenshots: Path) -> None:
    request_id = live_service.explained[0]
    trace = _api(live_service, f"/v1/traces/{request_id}")
    attributions = trace["explanation"]["attributions"]

    async def check(tab: Tab) -> tuple[list[tuple[str, float]], dict[str, float], str, str]:
        page = await _visit(tab, f"{live_service.base_url}/ui/traces/{request_id}",
                            screenshots, "trace")
        bars = await page.locator("svg.waterfall rect.wf-bar").all()
        shown = [(await bar.get_attribute("data-feature") or "",
                  float(await bar.get_attribute("data-attribution") or "nan"))
                 for bar in bars]
        printed = {}
        for row in await page.locator("#waterfall-table tbody tr[data-feature]").all():
            name = await row.get_attribute("data-feature") or ""
            printed[name] = float(await row.locator("td.attribution").inner_text())
        return (shown, printed, await page.locator("#model-version").inner_text(),
                await page.locator("#sampling-reason").inner_text())

    shown, printed, version, reason = browser.check(check)
    assert len(shown) == len(attributions)
    assert {name for name, _ in shown} == set(attributions)
    for name, value in shown:
        assert value == pytest.approx(attributions[name], rel=1e-12, abs=1e-15)
    magnitudes = [abs(v) for _, v in shown]
    assert magnitudes == sorted(magnitudes, reverse=True)
    # The table repeats the chart's numbers as text, rounded to four significant digits.
    assert set(printed) == set(attributions)
    for name, value in printed.items():
        assert value == pytest.approx(attributions[name], rel=1e-3, abs=1e-12)
    # Base value plus the bars ends at the output the API reports.
    base = trace["explanation"]["base_value"]
    assert base + sum(v for _, v in shown) == pytest.approx(
        trace["explanation"]["output_value"], rel=1e-6)
    assert version == trace["model"]["version"]
    assert reason.startswith(trace["sampling"]["reason"])


def test_trace_page_shows_mismatch_drift_and_counterfactuals(
        live_service: LiveService, browser: BrowserThread, screenshots: Path) -> None:
    trace = _api(live_service, f"/v1/traces/{live_service.masked_id}")
    counterfactuals = trace.get("counterfactuals") or []
    # Asked for with counterfactuals=2 and explained with drift context: both sections
    # must be shown, not their empty-state notices.
    assert counterfactuals and trace.get("drift")

    async def check(tab: Tab) -> None:
        page = await _visit(tab, f"{live_service.base_url}/ui/traces/{live_service.masked_id}",
                            screenshots, "trace-counterfactuals")
        flag = await page.locator("#mismatch").inner_text()
        assert ("MISMATCH" in flag) == trace["prediction"]["mismatch"]
        if trace.get("drift"):
            assert await page.locator("#drift-summary").count() == 1
            badges = page.locator("svg.waterfall .badge-text")
            assert await badges.count() == len(trace["explanation"]["attributions"])
        else:
            assert await page.locator("#drift-unavailable").count() == 1
        if counterfactuals:
            rows = page.locator("#counterfactuals tbody tr")
            assert await rows.count() == len(counterfactuals)
        else:
            assert await page.locator("#no-counterfactuals").count() == 1

    browser.check(check)


def test_searching_a_request_id_navigates_to_its_trace(live_service: LiveService,
                                                       browser: BrowserThread) -> None:
    request_id = live_service.explained[-1]

    async def check(tab: Tab) -> None:
        page = tab.page
        await page.goto(live_service.base_url + "/ui/")
        await page.fill("#request-id-search", request_id)
        await page.press("#request-id-search", "Enter")
        await page.wait_for_url(f"**/ui/traces/{request_id}")
        assert await page.locator("#request-id").inner_text() == request_id
        assert tab.log.errors == []

    browser.check(check)


def test_searching_an_unknown_request_id_says_there_is_no_trace(
        live_service: LiveService, browser: BrowserThread) -> None:
    async def check(tab: Tab) -> None:
        response = await tab.page.goto(live_service.base_url
                                       + "/ui/search?request_id=never-seen-1")
        assert response is not None and response.status == 404
        assert "No trace for request ID never-seen-1" in await tab.page.inner_text("main")

    browser.check(check)


def test_model_page_shows_versions_heat_map_scores_and_reasons(
        live_service: LiveService, browser: BrowserThread, screenshots: Path) -> None:
    manifest = _api(live_service, "/v1/models/credit/versions/1")["manifest"]
    edges = np.asarray(manifest["baseline"]["score"]["edges"])

    async def check(tab: Tab) -> None:
        page = await _visit(tab, f"{live_service.base_url}/ui/models/credit?windows=4",
                            screenshots, "model")
        assert await page.locator("#versions tbody tr").count() == 2
        assert manifest["owner"] in await page.locator("#versions").inner_text()
        cells = await page.locator("svg.heatmap rect.cell").all()
        assert len(cells) == (len(manifest["features"]) + 1) * 4
        statuses = {await cell.get_attribute("data-status") for cell in cells}
        assert statuses <= {"ok", "warn", "drift", "insufficient_data", "unknown"}
        # Training shares of the score histogram come straight from the manifest baseline.
        training = _percents(await _texts(page.locator("#score-table tbody td:nth-child(2)")))
        proportions = manifest["baseline"]["score"]["proportions"]
        assert training == pytest.approx([100 * p for p in proportions], abs=0.051)
        # Every record was posted within the last window: its shares are theirs.
        live = _percents(await _texts(page.locator("#score-table tbody td:nth-child(3)")))
        assert live == pytest.approx(_score_shares(live_service, edges, segment=None),
                                     abs=0.051)
        reasons = " ".join(await _texts(page.locator("#reasons-table")))
        assert "canary" in reasons

    browser.check(check)


def test_model_page_narrows_drift_and_scores_to_a_segment(
        live_service: LiveService, browser: BrowserThread, screenshots: Path) -> None:
    manifest = _api(live_service, "/v1/models/credit/versions/1")["manifest"]
    edges = np.asarray(manifest["baseline"]["score"]["edges"])

    async def check(tab: Tab) -> None:
        page = await _visit(tab, f"{live_service.base_url}/ui/models/credit?windows=2"
                                 "&segment=mobile", screenshots, "model-segment")
        assert "segment segment:mobile" in await page.locator("#heat-h").inner_text()
        live = _percents(await _texts(page.locator("#score-table tbody td:nth-child(3)")))
        assert live == pytest.approx(_score_shares(live_service, edges, segment="mobile"),
                                     abs=0.051)
        await page.goto(f"{live_service.base_url}/ui/models/credit?windows=2"
                        "&segment=planet:mars")
        assert "showing all records" in await page.locator("main").inner_text()

    browser.check(check)


def test_incident_page_lists_the_attached_traces(live_service: LiveService,
                                                 browser: BrowserThread,
                                                 screenshots: Path) -> None:
    incident = _api(live_service, f"/v1/incidents/{live_service.incident_id}")

    async def check(tab: Tab) -> None:
        page = await _visit(tab, f"{live_service.base_url}/ui/incidents/"
                                 f"{live_service.incident_id}", screenshots, "incident")
        rows = await page.locator("#incident-traces tbody tr").all()
        listed = {await row.get_attribute("data-request-id") for row in rows}
        assert listed == set(live_service.attached)
        assert listed == {t["request_id"] for t in incident["traces"]}
        state = await page.locator("#incident-state").inner_text()
        assert state.strip().endswith(incident["state"])
        # Each listed trace links to its page, and that page links back to the incident.
        await page.click(f"#incident-traces a:text-is('{live_service.masked_id}')")
        await page.wait_for_url(f"**/ui/traces/{live_service.masked_id}")
        assert live_service.incident_id in await page.locator("#incident-links").inner_text()

    browser.check(check)


def test_incident_page_pages_through_many_attached_traces(live_service: LiveService,
                                                          browser: BrowserThread,
                                                          screenshots: Path) -> None:
    attached = live_service.explained[:60]
    assert len(attached) == 60, "too few explained traces to fill two pages"
    with httpx.Client(base_url=live_service.base_url, timeout=120) as client:
        # explain_all off: this incident must not change what the other tests see sampled.
        client.post("/v1/incidents", json={
            "id": "INC-PAGED-1", "model": "credit", "severity": 4, "explain_all": False,
            "title": "Many attached traces"}).raise_for_status()
        client.post("/v1/incidents/INC-PAGED-1/traces",
                    json={"request_ids": attached}).raise_for_status()

    async def check(tab: Tab) -> list[list[str]]:
        page = await _visit(tab, f"{live_service.base_url}/ui/incidents/INC-PAGED-1",
                            screenshots, "incident-paged")
        pages = []
        while True:
            rows = await page.locator("#incident-traces tbody tr").all()
            pages.append([await row.get_attribute("data-request-id") or "" for row in rows])
            if await page.locator("#next-page").count() == 0 or len(pages) > 3:
                return pages
            async with page.expect_navigation(wait_until="load"):
                await page.click("#next-page")
            assert tab.log.errors == []

    pages = browser.check(check)
    listed = [request_id for rows in pages for request_id in rows]
    assert len(pages) == 2 and len(pages[0]) == 50
    assert sorted(listed) == sorted(attached)


def test_masked_raw_values_never_appear_in_page_html(live_service: LiveService,
                                                     browser: BrowserThread) -> None:
    raw = [str(v) for v in live_service.masked_raw.values()]
    raw += [str(int(v)) for v in live_service.masked_raw.values() if isinstance(v, float)]
    paths = [f"/ui/traces/{live_service.masked_id}", "/ui/", "/ui/models/credit",
             f"/ui/search?request_id={live_service.masked_id}",
             f"/ui/incidents/{live_service.incident_id}"]
    for path in paths:
        served = httpx.get(live_service.base_url + path, timeout=60,
                           follow_redirects=True).text
        for value in raw:
            assert value not in served, (path, value)

    async def check(tab: Tab) -> str:
        for path in paths:
            await tab.page.goto(live_service.base_url + path)
            html = await tab.page.content()
            for value in raw:
                assert value not in html, (path, value)
        await tab.page.goto(f"{live_service.base_url}/ui/traces/{live_service.masked_id}")
        return await tab.page.locator("#waterfall-table").inner_text()

    # The masked forms are what is shown instead.
    assert "h:" in browser.check(check)


def test_unknown_pages_answer_404_in_html(live_service: LiveService) -> None:
    for path in ("/ui/traces/nope-404", "/ui/models/nope", "/ui/incidents/NOPE-1"):
        answer = httpx.get(live_service.base_url + path, timeout=60)
        assert answer.status_code == 404
        assert answer.headers["content-type"].startswith("text/html")


def test_trace_page_flags_a_skewed_score_and_shows_both_outputs(
        live_service: LiveService, browser: BrowserThread, screenshots: Path) -> None:
    # ui-0020 is in the canary cohort (always explained) and was logged with +0.2 of skew.
    skewed = "ui-0020"
    assert skewed in live_service.explained
    trace = _api(live_service, f"/v1/traces/{skewed}")
    assert trace["prediction"]["mismatch"] is True

    async def check(tab: Tab) -> tuple[str, str, str, str]:
        page = await _visit(tab, f"{live_service.base_url}/ui/traces/{skewed}", screenshots,
                            "trace-mismatch")
        return (await page.locator("#mismatch").inner_text(),
                await page.locator("#outcome-h + table").inner_text(),
                await page.locator("#recomputed-score").inner_text(),
                await page.locator("#cohort").inner_text())

    flag, outcome, recomputed, cohort = browser.check(check)
    # Spelled out and marked with a symbol, not only coloured.
    assert "MISMATCH" in flag and "⚠" in flag
    logged = trace["prediction"]["logged"]["score"]
    assert float(recomputed) == pytest.approx(trace["prediction"]["recomputed"]["score"],
                                              rel=1e-3)
    assert f"{logged:.4g}" in outcome
    assert cohort == trace["context"]["cohort"] == "canary"


def test_incident_page_shows_counts_shift_drift_canary_and_export_as_the_api(
        live_service: LiveService, browser: BrowserThread, screenshots: Path) -> None:
    document = _api(live_service, f"/v1/incidents/{live_service.incident_id}")
    summary = document["summary"]
    shift = summary["attribution"]
    assert shift, "the incident's traces were not summarized"

    async def check(tab: Tab) -> dict[str, Any]:
        page = await _visit(tab, f"{live_service.base_url}/ui/incidents/"
                                 f"{live_service.incident_id}", screenshots, "incident-summary")
        counts = {(await row.locator("th").inner_text()).strip():
                  (await row.locator("td").inner_text()).strip()
                  for row in await page.locator("#counts tr").all()}
        shift_section = page.locator("section[aria-labelledby='shift-h']")
        tables = []
        for table in await shift_section.locator("table").all():
            # Inside a closed <details>: text_content, not the rendered inner_text.
            tables.append({await row.locator("th").text_content() or "":
                           await row.locator("td:nth-child(3)").text_content() or ""
                           for row in await table.locator("tbody tr").all()})
        return {"counts": counts, "charts": await shift_section.locator("svg").count(),
                "shift": tables,
                "drift": await page.locator("section[aria-labelledby='idrift-h']").inner_text(),
                "canary": await page.locator("section[aria-labelledby='canary-h']").inner_text(),
                "canary_rows": {await row.locator("th").inner_text():
                                await row.locator("td").first.inner_text()
                                for row in await page.locator("#canary-table tbody tr").all()},
                "export": await page.locator("#exports").inner_text()}

    shown = browser.check(check)
    counts = summary["counts"]
    assert shown["counts"]["attached requests"] == str(counts["attached"])
    for reason, n in counts["by_reason"].items():
        assert shown["counts"][f"sampling reason {reason}"] == str(n)
    for version, n in summary["versions"].items():
        assert shown["counts"][f"version {version}"] == str(n)
    # One chart and one table (its text equivalent) per version, with the API's numbers.
    assert shown["charts"] == len(shift) == len(shown["shift"])
    for table, version in zip(shown["shift"], sorted(shift), strict=True):
        features = shift[version]["features"]
        assert table and set(table) <= set(features)
        for name, text in table.items():
            assert float(text) == pytest.approx(features[name]["mean_abs"], rel=1e-3)
    drift = summary.get("drift") or {}
    assert drift, "no drift in the incident window"
    for version, block in drift.items():
        if block.get("status") == "unavailable":
            assert f"Version {version}: unavailable" in shown["drift"]
        else:
            assert f"Version {version}: {block.get('count', 0)} records" in shown["drift"]
    # Versions 1 and 2 are different models: the canary's explanations differ.
    canary = summary["canary_comparison"]
    assert canary["compared"] > 0 and f"{canary['compared']} of" in shown["canary"]
    differences = {row["feature"]: row["mean_difference"] for row in canary["features"][:15]}
    assert any(abs(d) > 1e-6 for d in differences.values())
    for name, difference in differences.items():
        assert float(shown["canary_rows"][name]) == pytest.approx(difference, rel=1e-3,
                                                                  abs=1e-12)
    exports = document.get("exports") or []
    if exports:
        for export in exports:
            assert export["state"] in shown["export"]
    else:
        assert shown["export"].strip() == "Not exported."


def test_model_page_shows_each_versions_identity_and_reasons_as_the_api(
        live_service: LiveService, browser: BrowserThread, screenshots: Path) -> None:
    versions = {v: _api(live_service, f"/v1/models/credit/versions/{v}") for v in ("1", "2")}
    reasons: dict[str, int] = {}
    with httpx.Client(base_url=live_service.base_url, timeout=60) as client:
        cursor = None
        while True:
            page = client.get("/v1/traces", params={"model": "credit", "limit": 200,
                                                    **({"cursor": cursor} if cursor else {})})
            page.raise_for_status()
            for trace in page.json()["traces"]:
                reason = trace["sampling"]["reason"]
                reasons[reason] = reasons.get(reason, 0) + 1
            cursor = page.json().get("next_cursor")
            if not cursor:
                break

    async def check(tab: Tab) -> tuple[dict[str, str], dict[str, int], int]:
        page = await _visit(tab, f"{live_service.base_url}/ui/models/credit?windows=4",
                            screenshots, "model-identity")
        rows = {await row.locator("th").inner_text(): await row.inner_text()
                for row in await page.locator("#versions tbody tr").all()}
        table = {}
        for row in await page.locator("#reasons-table tbody tr").all():
            cells = await _texts(row.locator("td"))
            table[await row.locator("th").text_content() or ""] = sum(int(c) for c in cells)
        heat_rows = await page.locator("#heatmap-table tbody tr").count()
        return rows, table, heat_rows

    rows, shown_reasons, heat_rows = browser.check(check)
    assert set(rows) == set(versions)
    for version, answer in versions.items():
        manifest, text = answer["manifest"], rows[version]
        for alias in answer["aliases"]:
            assert alias in text
        assert manifest["owner"] in text and manifest["criticality"] in text
        assert manifest["training_data_snapshot"] in text
        assert (manifest.get("rollback_to") or "—") in text
    assert "1" in (versions["2"]["manifest"].get("rollback_to") or "")
    # The reasons chart's table counts the explained decisions the API lists.
    assert shown_reasons == reasons
    # The heat map's text equivalent has a row per feature plus the score.
    assert heat_rows == len(versions["1"]["manifest"]["features"]) + 1


def test_pages_load_nothing_from_another_origin_and_all_have_the_search_box(
        live_service: LiveService, browser: BrowserThread) -> None:
    paths = ["/ui/", f"/ui/traces/{live_service.masked_id}", "/ui/models/credit",
             f"/ui/incidents/{live_service.incident_id}"]

    async def check(tab: Tab) -> tuple[list[str], list[int]]:
        requested: list[str] = []
        tab.page.on("request", lambda request: requested.append(request.url))
        boxes = []
        for path in paths:
            await tab.page.goto(live_service.base_url + path, wait_until="networkidle")
            boxes.append(await tab.page.locator("#request-id-search").count())
        return requested, boxes

    requested, boxes = browser.check(check)
    assert boxes == [1] * len(paths)
    for path in paths:
        # The browser itself would refuse anything from another origin.
        policy = httpx.get(live_service.base_url + path, timeout=60).headers[
            "content-security-policy"]
        assert "default-src 'self'" in policy and "http" not in policy
    assert requested and any("/ui/static/" in url for url in requested)
    outside = [url for url in requested if not url.startswith(live_service.base_url + "/")]
    assert outside == []


@pytest.mark.parametrize(("width", "height"), [(1366, 768), (1024, 640)])
def test_every_page_fits_a_laptop_screen(live_service: LiveService, browser: BrowserThread,
                                         width: int, height: int) -> None:
    """Common laptop sizes (and a half-screen window): no horizontal scrolling, and the
    search box and each page's main heading are on the first screen."""
    paths = ["/ui/", "/ui/models/credit", f"/ui/traces/{live_service.explained[0]}",
             f"/ui/incidents/{live_service.incident_id}"]

    async def check(tab: Tab) -> None:
        page = tab.page
        await page.set_viewport_size({"width": width, "height": height})
        for path in paths:
            response = await page.goto(live_service.base_url + path, wait_until="load")
            assert response is not None and response.status == 200, path
            overflow = await page.evaluate("document.documentElement.scrollWidth")
            assert overflow <= width, f"{path} scrolls sideways at {width} px ({overflow})"
            for selector in ("#request-id-search", "h1"):
                box = await page.locator(selector).first.bounding_box()
                assert box is not None and box["y"] + box["height"] <= height, (path, selector)
                assert box["x"] >= 0 and box["x"] + box["width"] <= width, (path, selector)
        assert tab.log.errors == []

    browser.check(check)
