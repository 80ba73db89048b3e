"""premailer against css-inline on the same 40-post issue, in one run: time and equivalence.

Equivalent means: the same kept <style> block and, element by element, the same inline
declarations (zero lengths such as 0pt and 0 count as equal; the <tbody> that css-inline's
HTML5 parser adds, as browsers do, is ignored).
"""

from __future__ import annotations

import platform
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lxml.etree
import lxml.html

from digest.config.schema import parse_config
from digest.issue.samples import sample_config, sample_issue
from digest.render.inline import inline_css
from digest.render.issue import HTML_TEMPLATE, template_context
from digest.render.personalise import new_marker
from digest.render.templates import template_environment

RUNS = 15
CONFIG = """\
newsletter:
  title: Bench Weekly
  from: "Bench <bench@example.org>"
feeds:
  - name: From the blog
    url: https://example.org/blog.xml
  - name: Latest news
    url: https://example.org/news.xml
digest:
  max_posts_per_section: 20
"""


def declarations(style: str) -> dict[str, str]:
    pairs = (part.split(":", 1) for part in style.split(";") if ":" in part)
    return {
        name.strip().lower(): re.sub(r"\b0(pt|px)\b", "0", " ".join(value.split()))
        for name, value in pairs
    }


def differences(first: str, second: str) -> list[str]:
    """Where two inlined documents differ in kept CSS or inline styles (empty: equivalent)."""
    docs = [lxml.html.document_fromstring(html) for html in (first, second)]
    problems = []
    kept = ["".join(doc.xpath("//style/text()")) for doc in docs]
    if kept[0] != kept[1]:
        problems.append("the kept <style> blocks differ")
    elements = [[e for e in doc.iter(lxml.etree.Element) if e.tag != "tbody"] for doc in docs]
    if len(elements[0]) != len(elements[1]):
        problems.append(f"element counts differ: {len(elements[0])} vs {len(elements[1])}")
    for a, b in zip(*elements, strict=False):
        if a.tag != b.tag or declarations(a.get("style", "")) != declarations(b.get("style", "")):
            problems.append(f"<{a.tag} class={a.get('class')!r}> styles differ")
    return problems


def timed(inliner: str, html: str) -> tuple[float, str]:
    inline_css(html, inliner)  # warm up: imports, parser set-up
    runs, output = [], ""
    for _ in range(RUNS):
        started = time.perf_counter()
        output = inline_css(html, inliner)
        runs.append(time.perf_counter() - started)
    return statistics.median(runs) * 1000, output


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        config = sample_config(parse_config(CONFIG, "config.yaml", Path(folder), {}))
        issue = sample_issue(config, 20)
        html = (
            template_environment(config.templates_dir)
            .get_template(HTML_TEMPLATE)
            .render(template_context(issue, config, new_marker()))
        )
    premailer_ms, premailer_html = timed("premailer", html)
    try:
        css_inline_ms, css_inline_html = timed("css_inline", html)
    except ImportError:
        print("css-inline is not installed: pip install '.[fast]'")
        return
    problems = differences(premailer_html, css_inline_html)
    print(f"Inlining a {issue.post_count}-post issue ({len(html) / 1024:.0f} KB before inlining),")
    print(f"median of {RUNS} runs on {cpu_model()}, Python {platform.python_version()}:")
    print(f"  premailer   {premailer_ms:7.1f} ms  ({len(premailer_html) / 1024:.0f} KB out)")
    print(f"  css-inline  {css_inline_ms:7.1f} ms  ({len(css_inline_html) / 1024:.0f} KB out)")
    print(f"  css-inline is {premailer_ms / css_inline_ms:.0f}x faster")
    if problems:
        print(f"  outputs differ in {len(problems)} places, e.g. {problems[0]}")
    else:
        print("  outputs are equivalent (same kept <style>, same inline styles on every element)")


if __name__ == "__main__":
    main()
