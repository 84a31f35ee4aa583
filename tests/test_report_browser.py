"""The report in a real browser: Debian's headless Chromium driven by Selenium through chromedriver.

- a tiny real sweep's report: sort the table, filter a job to wrong answers, open a question, read
  its turns and call graph from the DOM, no console errors, a screenshot under tmp_path;
- hostile records (script tags, onerror images, javascript: links, HTML entities, a closing script
  tag) in every field the report shows: nothing executes and everything appears literally.

Run as a script, it screenshots a built report the same way (the README's picture):
    python tests/test_report_browser.py runs/compare/report docs/report.png
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import pytest

from oversight.records import read_records, read_summary, write_records, write_summary

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
BROWSER_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1400,1000"]

PAYLOADS = [
    '<script>window.__pwned = "script"</script>',
    '<img src=x onerror="window.__pwned = \'img\'">',
    '<a href="javascript:window.__pwned = \'link\'">click me</a>',
    "&lt;b&gt;not bold&lt;/b&gt; &amp; &quot;entities&quot; &#60;i&#62;",
    '</script><script>window.__pwned = "closed"</script>',
    '<svg onload="window.__pwned = \'svg\'"><circle r="9"/></svg>',
]
HOSTILE = " ".join(PAYLOADS)


def chromium_missing() -> str | None:
    if not Path(CHROMIUM).exists() or not Path(CHROMEDRIVER).exists():
        return f"Chromium is not installed ({CHROMIUM}, {CHROMEDRIVER}: apt-get install chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    return None


def start_browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in BROWSER_ARGS:
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


needs_chromium = pytest.mark.skipif(chromium_missing() is not None, reason=chromium_missing() or "")


@pytest.fixture(scope="module")
def browser():
    driver = start_browser()
    yield driver
    driver.quit()


def open_page(driver, url: str, ready: str):
    """Load a page and wait until report.js has rendered `ready` (a CSS selector)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    WebDriverWait(driver, 20).until(lambda d: d.find_elements(By.CSS_SELECTOR, ready)
                                    or d.find_elements(By.CSS_SELECTOR, "p.error"))
    errors = driver.find_elements(By.CSS_SELECTOR, "p.error")
    assert not errors, f"{url}: {errors[0].text}"


def console_errors(driver) -> list[dict]:
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


@pytest.fixture(scope="module")
def sweep(tiny_model_dir, tmp_path_factory) -> Path:
    from tests.test_report import run_sweep

    root = tmp_path_factory.mktemp("browser-sweep")
    run_sweep(tiny_model_dir, root, n=12, protocols=("direct", "consultancy", "debate"))  # 12: some wrong
    return root / "sweep"


@needs_chromium
def test_browse_a_sweep_report(sweep, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from tests.test_report import build

    index = build(sweep)
    open_page(browser, index.as_uri(), "#comparison tbody tr")
    browser.get_screenshot_as_file(str(tmp_path / "index.png"))
    rows = browser.find_elements(By.CSS_SELECTOR, "#comparison tbody tr")
    assert len(rows) == 3

    heads = browser.find_elements(By.CSS_SELECTOR, "#comparison th")
    column = [h.text for h in heads].index("accuracy")

    def accuracies():
        return [float(r.find_elements(By.TAG_NAME, "td")[column].get_attribute("data-sort"))
                for r in browser.find_elements(By.CSS_SELECTOR, "#comparison tbody tr")]

    heads[column].click()
    assert accuracies() == sorted(accuracies())
    heads[column].click()
    assert accuracies() == sorted(accuracies(), reverse=True)
    assert browser.find_elements(By.CSS_SELECTOR, "figure svg")  # the plots are drawn inline

    # the job with the most wrong answers: filter its browser to them
    jobs = sorted(p.parent for p in sweep.rglob("summary.json") if "report" not in p.parts)
    records = {k: read_records(job) for k, job in enumerate(jobs)}
    k = max(records, key=lambda j: sum(r.correct == 0 for r in records[j]))
    wrong = [r for r in records[k] if r.correct == 0]
    assert wrong, "the tiny sweep has no wrong answer to filter to"
    browser.find_element(By.CSS_SELECTOR, f'#comparison a[href="job.html#job={k}"]').click()
    open_page(browser, browser.current_url, "#questions tbody tr")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#questions tbody tr")) == len(records[k])
    Select(browser.find_element(By.ID, "filter-result")).select_by_value("wrong")
    shown = browser.find_elements(By.CSS_SELECTOR, "#questions tbody tr")
    assert [r.find_element(By.CSS_SELECTOR, "a.qid").text for r in shown] == [r.question_id for r in wrong]
    assert {r.find_element(By.CSS_SELECTOR, "td.result").text for r in shown} == {"wrong"}
    assert browser.find_element(By.ID, "count").text == f"showing {len(wrong)} of {len(records[k])}"
    search = browser.find_element(By.ID, "search")
    search.send_keys(wrong[0].question_id)
    assert len(browser.find_elements(By.CSS_SELECTOR, "#questions tbody tr")) == 1

    # open the question: its turns and its call graph, read from the DOM
    browser.find_element(By.CSS_SELECTOR, "#questions a.qid").click()
    open_page(browser, browser.current_url, "svg.callgraph .node")
    record = wrong[0]
    assert browser.find_element(By.CSS_SELECTOR, "h1.question").text == record.question
    turns = browser.find_elements(By.CSS_SELECTOR, ".turn")
    expected = [t for tr in record.transcripts for t in tr.turns]
    assert len(turns) == len(expected)
    for element, turn in zip(turns, expected):
        assert element.find_element(By.CSS_SELECTOR, ".label").text == turn.label
        for quote, shown_quote in zip(turn.quotes, element.find_elements(By.CSS_SELECTOR, ".quote")):
            assert shown_quote.find_element(By.CSS_SELECTOR, ".quote-text").text == quote.text
            assert ("verified" if quote.verified else "unverified") in shown_quote.get_attribute("class").split()
    assert "hidden from the judge" in browser.find_element(By.CSS_SELECTOR, "details.passage summary").text
    probabilities = browser.find_elements(By.CSS_SELECTOR, "table.probs tbody tr")
    assert len(probabilities) == len(record.options) * len(record.judgments)

    nodes = browser.find_elements(By.CSS_SELECTOR, "svg.callgraph .node")
    assert len(nodes) == len(record.graph["nodes"])
    judge_node = next(n for n in record.graph["nodes"] if n["label"] == "judge")
    target = browser.find_element(By.CSS_SELECTOR, f'svg.callgraph .node[data-id="{judge_node["id"]}"]')
    browser.execute_script("arguments[0].scrollIntoView()", target)
    target.click()
    details = browser.find_element(By.ID, "node-details")
    prompts = [p.text for p in details.find_elements(By.CSS_SELECTOR, ".message pre")]
    assert prompts[:len(judge_node["call"]["messages"])] == [m["content"] for m in judge_node["call"]["messages"]]
    facts = dict(zip([e.text for e in details.find_elements(By.TAG_NAME, "dt")],
                     [e.text for e in details.find_elements(By.TAG_NAME, "dd")]))
    assert facts["cache hit"] == ("yes" if judge_node["output"]["cached"] else "no")
    assert facts["prompt tokens"] == str(judge_node["output"]["prompt_tokens"])
    browser.get_screenshot_as_file(str(tmp_path / "question.png"))

    # the same question in every job, side by side
    browser.find_element(By.LINK_TEXT, "this question in every job").click()
    open_page(browser, browser.current_url, ".side-by-side .column")
    assert len(browser.find_elements(By.CSS_SELECTOR, ".side-by-side .column")) == len(jobs)

    assert console_errors(browser) == []
    for shot in ("index.png", "question.png"):
        assert (tmp_path / shot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def hostile_job(source: Path, target: Path) -> Path:
    """A copy of a real job whose records say HOSTILE wherever the report shows text."""
    from judges.store import HumanJudgment, HumanStore

    shutil.copytree(source, target)
    records = []
    for r in read_records(source):
        transcripts = []
        for t in r.transcripts:
            turns = [turn.model_copy(update={
                "text": f"{HOSTILE} <quote>{turn.quotes[0].text if turn.quotes else 'x'} {HOSTILE}</quote> {HOSTILE}",
                "quotes": [q.model_copy(update={"text": f"{q.text} {HOSTILE}"}) for q in turn.quotes[:1]] or
                          [{"text": f"x {HOSTILE}", "verified": False}],
            }) for turn in t.turns]
            transcripts.append(t.model_copy(update={"turns": turns, "info": {"note": HOSTILE}}))
        judgments = [j.model_copy(update={"orders": [o.model_copy(update={"raw": HOSTILE}) for o in j.orders]})
                     for j in r.judgments]
        graph = dict(r.graph)
        graph["nodes"] = [{**n, "label": f"{n['label']} {HOSTILE}",
                           **({"call": {**n["call"], "messages": [{"role": "user", "content": HOSTILE}]}}
                              if "call" in n else {}),
                           "output": {**n["output"], "text": HOSTILE} if isinstance(n.get("output"), dict) else HOSTILE}
                          for n in r.graph["nodes"]]
        records.append(r.model_copy(update={
            "question": f"Which? {HOSTILE}", "options": [f"{o} {HOSTILE}" for o in r.options],
            "transcripts": transcripts, "judgments": judgments, "graph": graph,
            "metadata": {**r.metadata, "note": HOSTILE}}))
    write_records(target, records)
    summary = read_summary(source)
    write_summary(target, {**summary, "protocol": f"debate {HOSTILE}", "judge": f"likelihood {HOSTILE}"})
    with HumanStore(target) as store:
        now = time.time()
        store.add(HumanJudgment(judge_id=f"ann {HOSTILE}", question_id=records[0].question_id, status="judged",
                                chosen=0, confidence=0.8, explanation=HOSTILE, started_at=now - 30, ended_at=now,
                                seconds=30.0))
    return target


@needs_chromium
def test_record_text_never_executes_and_reads_literally(sweep, browser, tmp_path):
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    from tests.test_report import build

    source = next(p.parent for p in sweep.rglob("summary.json") if "protocol=debate" in str(p))
    hostile = hostile_job(source, tmp_path / "sweep" / "job <img src=x onerror=window.__pwned=1>")
    index = build(hostile.parent)
    report = index.parent
    for data in report.rglob("*.js"):
        if data.parent.name != "report":  # data files: not one raw '<' whatever the records say
            assert "<" not in data.read_text(), data
    html = index.read_text()
    assert "<script>window.__pwned" not in html and "<img src=x" not in html and "&lt;script&gt;" in html
    records = read_records(hostile)

    pages = [(index.as_uri(), "#comparison tbody tr"), (report.joinpath("job.html").as_uri() + "#job=0", "#questions tbody tr"),
             (report.joinpath("side.html").as_uri() + f"#id={records[0].question_id}", ".side-by-side .column")]
    pages += [(report.joinpath("question.html").as_uri() + f"#job=0&q={n}", "svg.callgraph .node")
              for n in range(len(records))]
    for url, ready in pages:
        open_page(browser, url, ready)
        for node in browser.find_elements(By.CSS_SELECTOR, "svg.callgraph .node")[:3]:
            node.click()  # the node panel renders prompts and outputs too
        for details in browser.find_elements(By.TAG_NAME, "details"):
            browser.execute_script("arguments[0].open = true", details)
        time.sleep(0.2)
        with pytest.raises(NoAlertPresentException):
            browser.switch_to.alert.text
        assert browser.execute_script("return window.__pwned === undefined"), url
        dom = browser.execute_script("""return {
            img: document.querySelectorAll('img').length,
            js: document.querySelectorAll('a[href^="javascript:"]').length,
            handlers: document.querySelectorAll('[onerror],[onload],[onclick]').length,
            scripts: Array.from(document.scripts).map(s => s.getAttribute('src')),
            svgs: document.querySelectorAll('main svg svg, .turn svg').length}""")
        assert dom["img"] == dom["js"] == dom["handlers"] == dom["svgs"] == 0, (url, dom)
        assert all(src == "report.js" or src.startswith("data/") for src in dom["scripts"]), dom["scripts"]
        text = browser.find_element(By.TAG_NAME, "body").text
        if "question.html" in url:
            assert f"Which? {HOSTILE}" in text  # every payload, entities included, shown as typed
            assert text.count(HOSTILE) >= 3
        else:
            assert HOSTILE in text, url
        assert console_errors(browser) == [], url
    # the person's explanation, from the human store, reads literally on the first question's page
    open_page(browser, report.joinpath("question.html").as_uri() + "#job=0&q=0", ".humans td.explanation")
    assert browser.find_element(By.CSS_SELECTOR, ".humans td.explanation").text == HOSTILE


def screenshot(report: Path, png: Path, question: str | None = None) -> None:
    """Screenshot a built report's index (or one question page) the way the tests see it."""
    driver = start_browser()
    try:
        page = report.resolve() / ("index.html" if question is None else "question.html")
        open_page(driver, page.as_uri() + ("" if question is None else f"#{question}"),
                  "#comparison tbody tr" if question is None else "svg.callgraph .node")
        driver.get_screenshot_as_file(str(png))
        assert console_errors(driver) == []
    finally:
        driver.quit()


if __name__ == "__main__":
    screenshot(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else None)
