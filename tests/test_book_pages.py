"""The whole book, executed and built, and what a reader sees on its pages.

This is the test that proves the book works end to end: each notebook in
``pebench_core.book.CHAPTERS`` is executed with papermill exactly as ``pebench book`` does
(the ``executed`` fixture of ``tests/conftest.py``, in a temporary copy so the checkout is never
touched), with no error output, and the executed chapters then build into HTML with warnings as
errors. Every test that reads the executed book lives here: ``make test`` gives a module to one
test process, so the book is executed once.

Checks on the HTML built from the smoke chapters: math
and citations render as math and links, not as raw text; no build residue (papermill's
injected cell, the build machine's paths, a script loaded twice); nothing loaded from the
network; the course pieces (exercises with hidden solutions, the syllabus, the repository
link) are there. The last test opens the pages in headless Chromium with the network cut
off and proves that the math typesets and that the ipywidgets explorers (the world browser
among them) follow their menus.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
import yaml
from bs4 import BeautifulSoup

from pebench_core.book import CHAPTERS, ROOT, execute_chapters
from pebench_core.methods import chapter_methods

pytestmark = pytest.mark.notebooks

METHOD_PAGES = [f"04_{m.name}" for m in chapter_methods()]


def test_every_chapter_executes_without_errors(executed):
    site, chapters = executed
    assert [c.output for c in chapters] == [c.output for c in CHAPTERS]
    for ch in chapters:
        nb = json.loads((site / "book" / "chapters" / f"{ch.output}.ipynb").read_text())
        errors = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", []) if o["output_type"] == "error"]
        assert not errors, f"{ch.output}: {errors[0]['ename']}: {errors[0]['evalue']}"
        assert nb["metadata"]["pebench"]["parameters"]["profile"] == "smoke"
        figures = sum(
            bool({"image/png", "image/jpeg"} & set(o.get("data", {}))) for c in nb["cells"] for o in c.get("outputs", [])
        )
        assert figures > 0, f"{ch.output} shows no figure"


def test_unchanged_chapters_are_kept(executed):
    site, _ = executed
    seen = []
    execute_chapters(
        profile="smoke", seed=0, run_dir=None, out_dir=site / "book" / "chapters", log=seen.append, only=[CHAPTERS[0].output]
    )
    # run_dir differs (None vs a path), so the key differs and the chapter re-executes ...
    assert "executed" in seen[-1]
    seen.clear()
    execute_chapters(
        profile="smoke", seed=0, run_dir=None, out_dir=site / "book" / "chapters", log=seen.append, only=[CHAPTERS[0].output]
    )
    # ... and with identical inputs it is kept.
    assert "unchanged" in seen[-1]


def test_book_builds_with_warnings_as_errors(built):
    _, html_dir, chapters = built
    assert (html_dir / "index.html").is_file()
    html = (html_dir / "book" / "chapters" / f"{chapters[0].output}.html").read_text()
    assert "<img" in html


def _page(html_dir: Path, name: str) -> BeautifulSoup:
    return BeautifulSoup((html_dir / "book" / "chapters" / f"{name}.html").read_text(), "html.parser")


def _reader_text(soup: BeautifulSoup) -> str:
    """The page's text outside math, code and scripts: what would show as raw markup."""
    main = soup.find("main") or soup
    for tag in main.find_all(["script", "style", "pre", "code"]):
        tag.decompose()
    for tag in main.find_all(class_="math"):
        tag.decompose()
    return main.get_text(" ")


@pytest.mark.parametrize("page", METHOD_PAGES)
def test_method_pages_show_formulas_and_citations_not_their_markup(built, page):
    _, html_dir, _ = built
    soup = _page(html_dir, page)
    text = _reader_text(BeautifulSoup(str(soup), "html.parser"))
    for raw in ("$$", "{cite}", "\\\\mathcal", "\\\\mathrm"):
        assert raw not in text, f"{page}: raw {raw!r} in the page text"
    assert soup.select("main .math"), f"{page}: the method's formula is not a math element"
    assert soup.select("main a[href*='bibliography']"), f"{page}: no citation links to the bibliography"


def test_pages_carry_no_build_residue(built):
    site, html_dir, _ = built
    for path in sorted((html_dir / "book" / "chapters").glob("*.html")):
        html = path.read_text()
        soup = BeautifulSoup(html, "html.parser")
        assert not soup.select(".tag_injected-parameters"), f"{path.name}: papermill's injected cell is shown"
        for where in (str(site.parent), str(ROOT), os.path.expanduser("~") + "/"):
            assert where not in html, f"{path.name}: shows the build machine's path {where}"
        inline = [s.string or "" for s in soup.find_all("script") if not s.get("src")]
        assert sum("const THEBE_JS_URL" in s for s in inline) <= 1, f"{path.name}: thebe's configuration declared twice"
        srcs = [s["src"] for s in soup.find_all("script", src=True)]
        assert len(srcs) == len(set(srcs)), f"{path.name}: a script is loaded twice"
        remote = [s for s in srcs if re.match(r"(https?:)?//", s)]
        assert not remote, f"{path.name}: loads scripts from the network: {remote}"
        # a page with explorers carries their state and the book's own widget manager; no page
        # loads a widget manager it does not use, nor require.js
        manager = [s for s in srcs if "_static/widgets/embed.js" in s]
        assert "require.min.js" not in html
        assert bool(manager) == bool(soup.select("script[type='application/vnd.jupyter.widget-state+json']")), path.name
    assert (html_dir / "_static" / "widgets" / "embed.js").is_file()


EXPLORER_PAGES = [CHAPTERS[0].output, *METHOD_PAGES, *(c.output for c in CHAPTERS if c.output.startswith("07_"))]


def test_explorer_pages_carry_their_widgets_and_every_page_is_light(built):
    """The world browser and the explorers are stored with their pages; no page over 3 MB, no
    executed notebook offered for download over 5 MB (the world's thumbnails, not 1,200 PNGs)."""
    site, html_dir, _ = built
    for page in EXPLORER_PAGES:
        soup = _page(html_dir, page)
        views = soup.select("script[type='application/vnd.jupyter.widget-view+json']")
        assert views, f"{page}: no explorer on the page"
        state = json.loads(soup.select_one("script[type='application/vnd.jupyter.widget-state+json']").string)["state"]
        for v in views:
            assert json.loads(v.string)["model_id"] in state, f"{page}: a widget's view has no stored state"
    heavy = {p.relative_to(html_dir).as_posix(): p.stat().st_size for p in html_dir.rglob("*.html") if p.stat().st_size > 3e6}
    heavy |= {
        p.relative_to(html_dir).as_posix(): p.stat().st_size
        for p in html_dir.rglob("_sources/**/*.ipynb")
        if p.stat().st_size > 5e6
    }
    assert not heavy, f"pages or notebooks too heavy: {heavy}"


_RAW_FLOAT = re.compile(r"^[-+]?\d*\.\d{5,}$")


def test_every_table_holds_values_formatted_and_whole(built):
    """On every chapter page: no "nan" cell, no float printed to six places, no cell cut with "…"."""
    _, html_dir, chapters = built
    seen = 0
    for ch in chapters:
        for cell in _page(html_dir, ch.output).select("main table td, main table tbody th"):
            text = cell.get_text(" ", strip=True)
            seen += 1
            assert text.lower() not in ("nan", "none", "<na>", "nat"), f"{ch.output}: an empty (nan) cell"
            assert not _RAW_FLOAT.match(text), f"{ch.output}: an unformatted number {text!r}"
            assert not text.endswith(("…", "...")), f"{ch.output}: a cell cut short: {text!r}"
    assert seen > 100


_STATEMENT = re.compile(
    r"^\W*(?P<subject>[^:*\n]+?): (?P<quantity>[^=:\n]+?) = (?P<value>[-+]?\d+\.\d+(?: \[[-+]?\d+\.\d+, [-+]?\d+\.\d+\])?)",
    re.M,
)


def _stated_quantities(nb: dict) -> list[tuple[str, str, str]]:
    """Every ``(subject, quantity, value [interval])`` an executed chapter states: in its
    generated Markdown ("subject: quantity = 0.21 [0.03, 0.46]") and in its tables with
    ``subject``, ``quantity`` and ``estimate`` columns."""
    out = []
    for cell in nb["cells"]:
        for o in cell.get("outputs", []):
            data = o.get("data", {})
            md = data.get("text/markdown")
            if md:
                text = "".join(md) if isinstance(md, list) else md
                out += [(m["subject"].strip(), m["quantity"].strip(), m["value"]) for m in _STATEMENT.finditer(text)]
            html = data.get("text/html")
            if html and "<table" in (html := "".join(html) if isinstance(html, list) else html):
                for table in BeautifulSoup(html, "html.parser").find_all("table"):
                    head = [th.get_text(strip=True) for th in table.select("thead tr")[-1].find_all("th")] if table.thead else []
                    if not {"subject", "quantity", "estimate"} <= set(head):
                        continue
                    for tr in table.select("tbody tr"):
                        cells = [c.get_text(strip=True) for c in tr.find_all(["th", "td"])]
                        row = dict(zip(head[-len(cells) :], cells))
                        out.append((row["subject"], row["quantity"], row["estimate"]))
    return out


def test_one_quantity_has_one_value_on_every_page(executed):
    """The same quantity (a sub-test's subject and quantity) gets the same value and interval
    wherever the book states it: chapter 5 reads findings 4 and 5 with the very estimates of
    chapter 8's table, not a second bootstrap of its own."""
    site, chapters = executed
    seen: dict[tuple[str, str], dict[str, set[str]]] = {}
    for ch in chapters:
        nb = json.loads((site / "book" / "chapters" / f"{ch.output}.ipynb").read_text())
        for subject, quantity, value in _stated_quantities(nb):
            seen.setdefault((subject, quantity), {}).setdefault(value.replace("-0.00", "0.00"), set()).add(ch.output)
    differ = {k: v for k, v in seen.items() if len(v) > 1}
    assert not differ, f"stated differently: {differ}"
    shared = [k for k, v in seen.items() if len(set().union(*v.values())) > 1]
    assert shared, "no quantity is stated on two pages: the check read nothing it could compare"


def test_each_method_page_shows_the_parameters_that_ran(built):
    _, html_dir, _ = built
    for m in chapter_methods():
        soup = _page(html_dir, f"04_{m.name}")
        shown = soup.select_one(".tag_parameters")
        assert shown is not None and f'method = "{m.name}"' in shown.get_text(), m.name


def test_math_is_served_by_the_book_itself(built):
    _, html_dir, _ = built
    soup = _page(html_dir, METHOD_PAGES[0])
    mathjax = [s["src"] for s in soup.find_all("script", src=True) if "mathjax" in s["src"].lower()]
    assert mathjax and all(not s.startswith(("http", "//")) for s in mathjax)
    assert (html_dir / "_static" / "mathjax" / "tex-chtml.js").is_file()


def test_method_pages_have_their_own_exercises_with_hidden_solutions(built):
    _, html_dir, _ = built
    seen = {}
    for page in METHOD_PAGES:
        soup = _page(html_dir, page)
        exercises = soup.select("main .exercise")
        solutions = soup.select("main .solution")
        assert exercises and len(solutions) == len(exercises), page
        assert all("dropdown" in s.get("class", []) for s in solutions), f"{page}: a solution is not hidden"
        seen[page] = tuple(e.get_text(" ", strip=True) for e in exercises)
    assert len(set(seen.values())) == len(seen), "two method chapters share their exercises"


def test_the_header_links_the_repository_and_the_syllabus_is_built(built):
    site, html_dir, _ = built
    url = yaml.safe_load((site / "_config.yml").read_text())["repository"]["url"]
    # index.html only redirects to the root page; every page's header carries the buttons
    for page in ("book/intro.html", f"book/chapters/{METHOD_PAGES[0]}.html"):
        soup = BeautifulSoup((html_dir / page).read_text(), "html.parser")
        assert soup.select(f"a[href^='{url}']"), f"{page}: no repository link in the header"
        assert soup.select(".dropdown-download-buttons"), f"{page}: no download button in the header"
    syllabus = BeautifulSoup((html_dir / "book" / "syllabus.html").read_text(), "html.parser")
    rows = syllabus.select("main table tbody tr")
    assert len(rows) >= len(CHAPTERS), "the syllabus's run-time table misses chapters"


def _chromium() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def test_offline_in_a_browser_math_renders_and_the_explorers_follow_their_menus(built, tmp_path):
    """Headless Chromium, every network request sent to a closed port: the pages still work."""
    found = _chromium()
    if found is None:
        if os.environ.get("PEBENCH_REQUIRE_BROWSER"):
            pytest.fail("PEBENCH_REQUIRE_BROWSER is set but chromium / chromedriver are not installed")
        pytest.skip("needs chromium and chromedriver (Debian: apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    browser, driver_path = found
    _, html_dir, _ = built
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        # offline: any request that is not a local file goes to a port nobody listens on
        "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
    ):  # fmt: skip
        opts.add_argument(flag)
    drv = webdriver.Chrome(options=opts, service=webdriver.ChromeService(executable_path=driver_path))
    try:
        drv.get((html_dir / "book" / "chapters" / f"{METHOD_PAGES[0]}.html").as_uri())
        WebDriverWait(drv, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "mjx-container"))
        assert not drv.find_elements(By.CSS_SELECTOR, "mjx-merror"), "MathJax could not typeset a formula"

        # The ipywidgets explorers, replayed by the book's own widget manager with no kernel:
        # choosing another person, event, subject or method changes what the page shows.
        def rendered(page, n):
            drv.get((html_dir / "book" / "chapters" / f"{page}.html").as_uri())
            WebDriverWait(drv, 60).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".widget-dropdown select")) >= n)
            return [Select(s) for s in drv.find_elements(By.CSS_SELECTOR, ".widget-dropdown select")]

        def world():
            img = drv.find_element(By.CSS_SELECTOR, ".pb-panel img")
            return img.get_attribute("alt"), img.get_attribute("src")

        person, event = rendered(CHAPTERS[0].output, 2)[:2]
        first = world()
        person.select_by_index(1)
        second = world()
        assert second[1] != first[1] and second[0].startswith(person.first_selected_option.text + " at "), (first[0], second[0])
        event.select_by_index(3)
        third = world()
        assert third[1] != second[1] and third[0] == f"{person.first_selected_option.text} at {event.first_selected_option.text}"

        for page, what in ((METHOD_PAGES[0], ".widget-html-content table"), (EXPLORER_PAGES[-1], "img.pb-figure")):
            menu = rendered(page, 1)[0]  # the page's first explorer
            before = drv.find_element(By.CSS_SELECTOR, what).get_attribute("outerHTML")
            menu.select_by_index(len(menu.options) - 1)
            after = drv.find_element(By.CSS_SELECTOR, what).get_attribute("outerHTML")
            assert after != before, f"{page}: choosing another option changed nothing"
            errors = [e["message"] for e in drv.get_log("browser") if e["level"] == "SEVERE" and "widgets" in e["message"]]
            assert not errors, f"{page}: the widget manager failed: {errors[:2]}"

        # Figures show at the size they were drawn (their text as large as drawn): at a desktop
        # width, and on a phone, where a figure scrolls sideways inside its own box.
        pages = [METHOD_PAGES[0], *(c.output for c in CHAPTERS if c.output.startswith(("05_", "07_", "08_")))]
        for width in (1366, 390):
            drv.set_window_size(width, 900)
            for page in pages:
                drv.get((html_dir / "book" / "chapters" / f"{page}.html").as_uri())
                # every figure of the page decoded (a loaded machine may still be decoding after
                # the load event, while the widget manager renders), then their scales
                scales = WebDriverWait(drv, 30).until(
                    lambda d: d.execute_script(
                        "const imgs = [...document.querySelectorAll('.cell_output > img')];"
                        "return imgs.length && imgs.every(i => i.complete && i.naturalWidth > 0)"
                        " ? imgs.map(i => i.clientWidth / i.naturalWidth) : null"
                    ),
                    f"{page} at {width} px: the figures did not load",
                )
                assert scales and min(scales) >= 0.97, (page, width, [round(x, 2) for x in scales])
    finally:
        drv.quit()
