"""The playground page in a real headless Chromium (Debian's ``chromium``; .ci/run installs it).

One test drives Chromium alone (``--dump-dom`` after a virtual-time budget); the
others drive it through Playwright, pointed at the system's Chromium (Playwright's
own browser download is not used).  They skip only when no Chromium is installed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import urllib.parse

import pytest

pytest.importorskip("starlette", reason="the web extra is not installed: pip install 'eingrad[web]'")

from webserver import Server  # noqa: E402

CHROMIUM = next((p for p in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser"))
                 if p and os.path.exists(p)), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (apt-get install chromium)")

# Chromium as root in a container: no sandbox, no GPU, nothing fetched from outside.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]
expect = None  # playwright's expect, set by the browser fixture
AFFINE = "Y_nh = X_nd W_dh + b_h\nL = sum_{n,h}(G_nh Y_nh)"


@pytest.fixture(scope="module")
def server():
    s = Server("--workers", "2", "--time-limit", "20")
    try:
        yield s
    finally:
        s.close()


def shared_link(server, **fields) -> str:
    return server.url + "?" + urllib.parse.urlencode(fields)


def test_a_shared_link_renders_katex(server):
    """Chromium alone: open a shared link, let the page run, read the DOM."""
    url = shared_link(server, program=AFFINE, wrt="W", order=1)
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run(
            [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=15000", "--dump-dom", url],
            capture_output=True, text=True, timeout=120,
        )
    dom = done.stdout
    assert 'class="katex' in dom, done.stderr[-2000:]
    # KaTeX keeps each formula's source in an annotation: the derivative and its matrix form were rendered.
    annotations = re.findall(r'<annotation encoding="application/x-tex">(.*?)</annotation>', dom, re.S)
    assert any("\\frac{\\partial L}{\\partial W_{ij}} &amp;= G_{nj} X_{ni}" in a for a in annotations), annotations
    assert any("X^{\\top} G" in a for a in annotations)
    assert "✓ agrees" in dom


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="the test extra's playwright is not installed")
    global expect
    expect = sync_api.expect
    # No wait_for_function: the page's security policy forbids evaluating strings, as it should.
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS[1:])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" and "status of" not in msg.text else None)
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 and "/api/" not in r.url else None)
    yield page
    context.close()
    assert not errors, errors  # no script error, no request refused by the page's security policy


def tex_of(page, selector: str) -> list[str]:
    return page.locator(f"{selector} annotation").all_text_contents()


def test_typing_a_program_and_pressing_the_button_shows_the_derivative(server, page):
    page.goto(server.url)
    page.wait_for_selector("#results:not([hidden]) .katex")  # the first example, computed on load
    page.fill("#program", "")
    page.locator("#program").type("f_i = A_ij v_j")
    # The example's W is no input of the new program: the field is filled with the inputs found.
    expect(page.locator("#wrt")).to_have_value("A v")
    expect(page.locator("#results")).to_have_class(re.compile("stale"))  # the old results, dimmed
    page.fill("#wrt", "A")
    page.click("#go")
    expect(page.locator("#status")).to_have_text(re.compile("^done"))
    expect(page.locator("#results")).not_to_have_class(re.compile("stale"))
    assert any("\\delta_{ik} v_{l}" in t for t in tex_of(page, "#result")), tex_of(page, "#result")
    assert page.locator("#steps li").count() >= 2
    assert any("\\delta_{ik} v_{l}" in t for t in tex_of(page, "#steps li:last-child"))
    assert "def compiled" in page.locator("#code").inner_text()
    assert page.locator("#check .pass").count() == 1
    assert page.locator("#graph svg text").all_text_contents() == ["A_ij", "v_j", "f_i = A_ij v_j"]
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(page.url).query)
    assert query["program"] == ["f_i = A_ij v_j"] and query["wrt"] == ["A"]  # the link to share


def test_a_bad_program_shows_the_error_at_its_position(server, page):
    page.goto(shared_link(server, program="y_i = x_i\nz_i = foo(y_i)", wrt="x"))
    error = page.locator("#error")
    error.wait_for(state="visible")
    assert "UnknownFunctionError" in error.inner_text() and "line 2, column 7" in error.inner_text()
    mark = page.locator("#backdrop mark")
    assert mark.inner_text() == "foo"
    assert page.locator("#gutter div.bad").inner_text() == "2"
    # The underline sits under 'foo' in the editor: on the second line, past 'z_i = '.
    box, editor = mark.bounding_box(), page.locator("#program").bounding_box()
    assert box["y"] > editor["y"] + box["height"] * 0.8 and box["x"] > editor["x"] + 5 * box["width"] / 3
    # Fixing the program clears the mark.
    page.fill("#program", "y_i = x_i\nz_i = exp(y_i)")
    page.click("#go")
    page.wait_for_selector("#results:not([hidden]) .katex")
    expect(page.locator("#error")).to_be_hidden()
    assert page.locator("#backdrop mark").count() == 0
    # A bad program after a good one: the good one's results are not left to pass for it.
    page.fill("#program", "y_i = x_j")
    page.click("#go")
    expect(page.locator("#error")).to_contain_text("IndexRuleError")
    expect(page.locator("#results")).to_be_hidden()
    assert page.locator("#backdrop mark").inner_text() == "i"


def test_the_examples_menu_and_the_gradient_program(server, page):
    page.goto(server.url)
    page.wait_for_selector("#results:not([hidden]) .katex")
    label = next(o for o in page.locator("#examples option").all_text_contents() if "RNN" in o)
    page.select_option("#examples", label=label)
    expect(page.locator("#result-title")).to_have_text(re.compile("^Gradient program"))
    expect(page.locator("#check tbody tr")).to_have_count(6)
    assert page.locator("#check .pass").count() == 6
    assert any("\\mathit{dLdW}" in t for t in tex_of(page, "#result"))
