"""The dashboard at `/` in a real headless browser (Debian's chromium + Selenium): it loads without console
errors after signing in with an API key, shows alerts and the validation chart, and a correction submitted in
the page reaches the API. Screenshots are saved in the test's tmp dir."""
from __future__ import annotations

import re
import shutil
from datetime import timedelta

import pytest

from alerting_support import START, generate, make_loop, post_records, small_scenario
from operations_support import serving

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="needs Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver)")]


def test_static_files_are_served_and_data_needs_a_key(tmp_path):
    context, client, keys = make_loop(tmp_path / "ws")
    page = client.get("/")
    assert page.status_code == 200 and "/static/dashboard.js" in page.text
    assert not re.search(r'(src|href)="(https?:)?//', page.text)  # nothing from a CDN
    assert client.get("/static/dashboard.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/static/../service.py").status_code == 404
    assert client.get("/dashboard/summary").status_code == 401
    assert client.get("/dashboard/summary", headers={"x-api-key": keys["read"]}).json()["labels"]["sentiments"]


@pytest.fixture
def served(tmp_path):
    context, client, keys = make_loop(tmp_path / "ws")
    post_records(client, keys["submit"], generate(small_scenario(days=9, defect_day=8)))
    context.worker.drain()
    context.alerting.evaluate(START + timedelta(days=8, hours=20))
    with serving(context) as url:
        key = context.store.create_key(["read", "review"])
        yield url, key, client, keys, context


def test_dashboard_in_headless_chromium(served, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    url, key, client, keys, context = served
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,2400"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        wait = WebDriverWait(driver, 30)
        driver.get(url + "/")
        driver.save_screenshot(str(tmp_path / "signin.png"))
        driver.find_element(By.ID, "api-key").send_keys(key)
        driver.find_element(By.CSS_SELECTOR, "#signin-form button").click()
        wait.until(lambda d: d.find_element(By.ID, "app").is_displayed()
                   and d.find_elements(By.CSS_SELECTOR, "#alerts tbody button.show-alert")
                   and d.find_elements(By.CSS_SELECTOR, "form.correction"))
        assert "product_quality" in driver.find_element(By.ID, "movers").text
        driver.find_elements(By.CSS_SELECTOR, "#alerts tbody button.show-alert")[0].click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#validation-chart svg polyline"))
        assert "Playbook" in driver.find_element(By.ID, "detail-body").text
        driver.save_screenshot(str(tmp_path / "dashboard.png"))

        form = driver.find_elements(By.CSS_SELECTOR, "form.correction")[0]
        feedback_id = form.get_attribute("data-feedback-id")
        item = client.get(f"/feedback/{feedback_id}", headers={"x-api-key": keys["read"]}).json()
        day = item["timestamps"]["created"][:10]
        window = {"sku": item["sku"], "since": f"{day}T00:00:00Z", "until": f"{day}T23:59:59Z"}
        before = client.get("/insights", params=window, headers={"x-api-key": keys["read"]}).json()["sentiment"]
        form.find_element(By.NAME, "reviewer").send_keys("browser-reviewer")
        Select(form.find_element(By.NAME, "sentiment")).select_by_value("neutral")
        Select(form.find_element(By.NAME, "intent")).select_by_value("question")
        form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait.until(lambda d: form.find_element(By.CSS_SELECTOR, ".status").text in ("saved",) or
                   "error" in form.find_element(By.CSS_SELECTOR, ".status").get_attribute("class"))
        assert form.find_element(By.CSS_SELECTOR, ".status").text == "saved"
        driver.save_screenshot(str(tmp_path / "corrected.png"))
        errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
        assert errors == []
    finally:
        driver.quit()
    held = client.get(f"/feedback/{feedback_id}", headers={"x-api-key": keys["read"]}).json()
    assert held["corrections"] == {"sentiment": "neutral", "intent": "question"}
    after = client.get("/insights", params=window, headers={"x-api-key": keys["read"]}).json()["sentiment"]
    was = item["predictions"]["sentiment"]["label"]
    assert after["neutral"]["count"] == before.get("neutral", {}).get("count", 0) + (was != "neutral")
    assert after.get(was, {}).get("count", 0) == before[was]["count"] - (was != "neutral")
    for name in ("signin.png", "dashboard.png", "corrected.png"):
        assert (tmp_path / name).stat().st_size > 10_000
