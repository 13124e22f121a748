"""browser.py - what the browser tests share: headless Chromium through Debian's
chromedriver and python3-selenium, a signed-in dashboard, bounded waits, screenshots.

The driver and its browser are started by us and stopped by PID (the service's
process, and the browser's process group through driver.quit); each wait is
bounded in time."""
import os
import shutil
import tempfile
import time

from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException, StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SHOTS = os.environ.get("TURNOUT_UI_SHOTS", os.path.join(ROOT, "build", "ui-shots"))


def start(env, t, **kw):
    """A Browser on T, stopped with ENV's processes (Env.close stops what it holds)."""
    b = Browser(t, **kw)
    env.procs.append(b)
    return b


class Browser:
    """A headless Chromium on the admin listener of turnout T."""

    def __init__(self, t, width=1400, height=900):
        self.t = t
        self.base = "http://127.0.0.1:%d" % t.admin_port
        self.profile = tempfile.mkdtemp(prefix="turnout-chrome-")
        opts = webdriver.ChromeOptions()
        opts.binary_location = "/usr/bin/chromium"
        for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--no-first-run", "--disable-extensions", "--disable-background-networking",
                  "--window-size=%d,%d" % (width, height), "--user-data-dir=" + self.profile):
            opts.add_argument(a)
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.service = Service("/usr/bin/chromedriver", log_path=os.path.join(t_dir(t), "chromedriver.log"))
        self.d = webdriver.Chrome(service=self.service, options=opts)
        self.d.set_page_load_timeout(20)
        self.d.set_script_timeout(10)

    def stop(self, timeout=10):
        self.close()
        return 0

    def output(self):
        return ""

    def close(self):
        try:
            self.d.quit()
        except WebDriverException:
            pass
        proc = getattr(self.service, "process", None)
        if proc is not None and proc.poll() is None:     # the driver we started, by its PID
            proc.kill()
            proc.wait(5)
        shutil.rmtree(self.profile, ignore_errors=True)

    def open(self, path="/ui/"):
        self.d.get(self.base + path)

    def sign_in(self, key=None, view=None):
        self.open("/ui/" + ("#/" + view if view else ""))
        box = self.wait_css("#signin-key")
        box.send_keys(key if key is not None else self.t.admin_key)
        self.css("#signin-submit").click()
        if key is None or key == self.t.admin_key:
            self.wait_css("#app:not([hidden])")

    def css(self, sel):
        return self.d.find_element(By.CSS_SELECTOR, sel)

    def all(self, sel):
        return self.d.find_elements(By.CSS_SELECTOR, sel)

    def wait(self, cond, timeout=5, what="a condition"):
        """Polls COND (a function) until it returns something true; raises after TIMEOUT s."""
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            try:
                got = cond()
                if got:
                    return got
            except (WebDriverException, StaleElementReferenceException) as e:
                last = e
            time.sleep(0.05)
        raise AssertionError("timed out after %ss waiting for %s (%s)" % (timeout, what, last))

    def wait_css(self, sel, timeout=5):
        return self.wait(lambda: next((e for e in self.all(sel) if e.is_displayed()), None), timeout, sel)

    def wait_text(self, sel, text, timeout=5):
        return self.wait(lambda: next((e for e in self.all(sel) if text in e.text), None), timeout,
                         "%r in %s" % (text, sel))

    def go(self, view):
        self.d.execute_script("location.hash = arguments[0]", "#/" + view)
        self.wait(lambda: self.d.execute_script("return document.getElementById('view').dataset.view") == view,
                  5, "view " + view)

    def alert_text(self):
        """The text of an open alert/confirm dialog, or None."""
        try:
            return self.d.switch_to.alert.text
        except NoAlertPresentException:
            return None

    def console_errors(self):
        return [e for e in self.d.get_log("browser") if e.get("level") == "SEVERE"]

    def shot(self, name):
        os.makedirs(SHOTS, exist_ok=True)
        path = os.path.join(SHOTS, name + ".png")
        self.d.save_screenshot(path)
        return path


def t_dir(t):
    return os.path.dirname(t.config_path)
