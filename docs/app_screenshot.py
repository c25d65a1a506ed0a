"""Take the README's screenshot of ``rvar app`` in headless Chromium (not part of rvar or its tests).

Needs Chromium and its driver (``apt-get install chromium chromium-driver``) and Selenium (``pip install
selenium``, any environment). Start the app first, then::

    rvar app --ckpt A.ckpt --ckpt B.ckpt --port 7860 &
    python docs/app_screenshot.py http://127.0.0.1:7860 photo.png docs/app.png --degradation rain

The script uploads ``photo.png``, picks the degradation, presses Restore, waits for the result and saves a
PNG of the page (reduced to 256 colours to keep the repository small).
"""
from __future__ import annotations

import argparse
import time

from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as ready
from selenium.webdriver.support.ui import WebDriverWait


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("photo")
    parser.add_argument("output")
    parser.add_argument("--degradation", default=None)
    parser.add_argument("--options", default="")
    parser.add_argument("--size", default="1400,1000", help="window width,height")
    parser.add_argument("--driver", default="/usr/bin/chromedriver")
    args = parser.parse_args()

    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", f"--window-size={args.size}",
                 "--hide-scrollbars", "--force-device-scale-factor=1"):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(args.driver), options=options)
    wait = WebDriverWait(browser, 180)
    try:
        browser.get(args.url)
        upload = wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, "input[type=file]")))
        upload.send_keys(args.photo)
        time.sleep(2)
        if args.degradation:
            box = browser.find_element(By.CSS_SELECTOR, "input[role=listbox], input[aria-label*=degrade]")
            box.click()
            box.send_keys(Keys.CONTROL, "a")
            box.send_keys(args.degradation)
            time.sleep(0.5)
            box.send_keys(Keys.ENTER)
            time.sleep(1)
        if args.options:
            field = browser.find_element(By.CSS_SELECTOR, "textarea[placeholder^='e.g.'], input[placeholder^='e.g.']")
            field.send_keys(args.options)
        button = next(b for b in browser.find_elements(By.TAG_NAME, "button") if b.text.strip() == "Restore")
        button.click()
        wait.until(lambda page: "Restored" in page.find_element(By.ID, "status").text)
        time.sleep(3)  # the sliders' images load after the status line
        browser.save_screenshot(args.output)
    finally:
        browser.quit()
    image = Image.open(args.output).convert("RGB")
    image.quantize(256, method=Image.Quantize.MEDIANCUT).save(args.output, optimize=True)


if __name__ == "__main__":
    main()
