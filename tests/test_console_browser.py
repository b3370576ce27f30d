"""The operator's console in a real headless browser (Debian's chromium + chromedriver, selenium) against a
live service with a simulated substation (``os3p_sim.LiveStation``) on loopback: overview, search, station
page, a command and its answer, a live frame appearing without reload, sign-in with a token and refusal
without it.  Also writes the screenshots of docs/console.md when ``OS3P_SCREENSHOTS`` names a directory."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

from os3p_sim import LiveStation
from os3p_sim._store import SQLiteStore
from os3p_trio import ClientConfig
from os3p_trio.central import CentralConfig, CentralService, FileArea, open_central_service, open_sqlite_store

TOKEN = "console-test-token-0123456789"


def browser() -> webdriver.Chrome:
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    driver = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
    ):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(driver), options=options)


@asynccontextmanager
async def fleet(tmp_path: Path, count: int, api_token: str | None = None) -> AsyncIterator[CentralService]:
    files = FileArea(tmp_path / "fw", tmp_path / "up")
    async with (
        open_sqlite_store(tmp_path / "cs.sqlite") as store,
        open_central_service(
            store,
            CentralConfig(open_registration=True, heartbeat_interval=60),
            files=files,
            api_token=api_token,
        ) as service,
        trio.open_nursery() as nursery,
    ):
        sim = SQLiteStore(":memory:", synchronous="NORMAL")
        for i in range(count):
            station = LiveStation(
                service.ws_url, f"CON-{i + 1:03d}", sim, client_config=ClientConfig(ping_interval=0.0)
            )
            nursery.start_soon(station.run)
        headers = {} if api_token is None else {"Authorization": f"Bearer {api_token}"}
        async with httpx.AsyncClient(base_url=service.api_url, headers=headers) as api:
            with trio.fail_after(30):
                while (await api.get("/api/summary")).json()["accepted"] < count:
                    await trio.sleep(0.1)
        yield service
        nursery.cancel_scope.cancel()


def wait(driver: webdriver.Chrome, condition: Callable[[Any], Any], seconds: float = 20) -> Any:
    return WebDriverWait(driver, seconds).until(condition)


def shoot(driver: webdriver.Chrome, name: str) -> None:
    target = os.environ.get("OS3P_SCREENSHOTS")
    if target:
        driver.save_screenshot(str(Path(target) / name))


@pytest.mark.slow
async def test_console_overview_search_station_command_live(tmp_path: Path) -> None:
    async with fleet(tmp_path, 3) as service:
        base = service.api_url

        def drive() -> None:
            driver = browser()
            try:
                driver.get(base + "/")
                assert "Fleet overview" in driver.page_source
                wait(
                    driver,
                    lambda d: d.find_element(By.CSS_SELECTOR, '[data-stat="stations.accepted"]').text == "3",
                )
                wait(driver, ec.text_to_be_present_in_element((By.ID, "live-status"), "live"))
                shoot(driver, "console-overview.png")
                # Search (htmx, server-side), then open the station's page.
                driver.get(base + "/stations")
                box = driver.find_element(By.ID, "q")
                box.send_keys("CON-002")
                wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "a.station-link")) == 1)
                driver.find_element(By.CSS_SELECTOR, "a.station-link").click()
                wait(driver, ec.title_contains("CON-002"))
                assert "firmwareVersion" in driver.page_source
                # A command and the station's answer.
                Select(driver.find_element(By.ID, "action")).select_by_visible_text("TriggerMessage")
                fieldset = driver.find_element(By.CSS_SELECTOR, 'fieldset[data-action="TriggerMessage"]')
                Select(fieldset.find_element(By.NAME, "f.requestedMessage")).select_by_visible_text(
                    "Heartbeat"
                )
                driver.find_element(By.ID, "send").click()
                answer = wait(driver, ec.presence_of_element_located((By.ID, "answer")))
                assert "the station answered" in answer.text
                assert "Accepted" in answer.text
                # The Heartbeat it triggered shows up in the message log, live (no reload).
                wait(
                    driver,
                    lambda d: any(
                        "Heartbeat" in r.text for r in d.find_elements(By.CSS_SELECTOR, "tr.live-frame")
                    ),
                )
                # A payload failing its schema is not sent; the violation is shown.
                Select(driver.find_element(By.ID, "action")).select_by_visible_text("ChangeConfiguration")
                fieldset = driver.find_element(By.CSS_SELECTOR, 'fieldset[data-action="ChangeConfiguration"]')
                fieldset.find_element(By.NAME, "f.key").send_keys("HeartbeatInterval")
                driver.find_element(By.ID, "send").click()
                wait(driver, ec.text_to_be_present_in_element((By.ID, "answer"), "fails its schema"))
                shoot(driver, "console-station.png")
            finally:
                driver.quit()

        await trio.to_thread.run_sync(drive)


@pytest.mark.slow
async def test_console_sign_in_with_token(tmp_path: Path) -> None:
    async with fleet(tmp_path, 1, api_token=TOKEN) as service:
        base = service.api_url
        async with httpx.AsyncClient(base_url=base) as plain:
            refused = await plain.get("/")
            assert refused.status_code == 303
            assert refused.headers["location"].startswith("/login")
            assert (await plain.get("/console/events")).status_code == 401
            assert (await plain.get("/stations/CON-001")).status_code == 303

        def drive() -> None:
            driver = browser()
            try:
                driver.get(base + "/stations")
                wait(driver, ec.presence_of_element_located((By.ID, "login-form")))
                driver.find_element(By.ID, "token").send_keys("wrong")
                driver.find_element(By.ID, "sign-in").click()
                wait(driver, ec.presence_of_element_located((By.ID, "login-error")))
                driver.find_element(By.ID, "token").send_keys(TOKEN)
                driver.find_element(By.ID, "sign-in").click()
                wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "a.station-link")) == 1)
                cookie = driver.get_cookie("os3p_console")
                assert cookie is not None
                assert cookie["httpOnly"] is True
                assert cookie["sameSite"] == "Strict"
            finally:
                driver.quit()

        await trio.to_thread.run_sync(drive)


async def test_console_csrf_and_loopback_host(tmp_path: Path) -> None:
    files = FileArea(tmp_path / "fw", tmp_path / "up")
    async with (
        open_sqlite_store(tmp_path / "cs.sqlite") as store,
        open_central_service(store, files=files) as service,
        httpx.AsyncClient(base_url=service.api_url) as client,
    ):
        await service.central.add_station("A")
        page = await client.get("/stations/A")
        assert page.status_code == 200
        assert "os3p_console" in client.cookies
        # No CSRF token: refused, nothing sent.
        assert (await client.post("/stations/A/command", data={"action": "Reset"})).status_code == 403
        token = page.text.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]
        answer = await client.post("/stations/A/command", data={"action": "Reset", "csrf": token})
        assert answer.status_code == 200
        assert "Not connected" in answer.text
        # DNS rebinding: a foreign Host name does not reach the open (no token) console.
        assert (await client.get("/", headers={"Host": "evil.example"})).status_code == 403
