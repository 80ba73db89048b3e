"""Where templates come from: the editor's templates/ folder over the bundled ones, file by file.

A file in the editor's folder replaces the bundled file of the same name, and any template can
extend or include `bundled/NAME`, which always means the shipped file: an editor's email.html can
`{% extends "bundled/email.html" %}` and override only the blocks listed in TEMPLATE_BLOCKS.
Files the bundled templates include (post.html, email-meta.html, email.css, email-head.css) are
looked up in the editor's folder first, so overriding one of them also changes what an extended
template shows.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

import jinja2

BUNDLED_TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
BUNDLED_PREFIX = "bundled"


@dataclass(frozen=True)
class BlockDoc:
    """One block of a bundled template that an extending template can override."""

    template: str
    name: str
    inside: str
    contains: str
    uses: str


TEMPLATE_BLOCKS: tuple[BlockDoc, ...] = (
    BlockDoc(
        "email.html",
        "styles",
        "`<head>`",
        "The two `<style>` elements: email.css (inlined into every tag) and email-head.css"
        " (kept in `<head>`: dark mode and small screens). Add your own `<style>` after"
        " `{{ super() }}`.",
        "`theme.*` (in the CSS files)",
    ),
    BlockDoc(
        "email.html",
        "header",
        '`<td class="card header">`',
        "The top card: the logo, the issue's title, its date and post count, then the intro and"
        " note blocks.",
        "`issue.title`, `issue.date`, `issue.count`, `newsletter.logo_url`, `.logo_width`,"
        " `.logo_height`, `.title`",
    ),
    BlockDoc(
        "email.html",
        "intro",
        "header",
        'newsletter.intro rendered from Markdown, in `<div class="intro">`; nothing when unset.',
        "`intro_html`",
    ),
    BlockDoc(
        "email.html",
        "note",
        "header",
        "The editor's note for this issue only (`digest note`), from Markdown, in"
        ' `<div class="note">`; nothing when there is none.',
        "`note_html`",
    ),
    BlockDoc(
        "email.html",
        "sections",
        "the main table",
        'Every section in config order, each a table row `<tr><td class="card">` holding the'
        " section block.",
        "`sections`",
    ),
    BlockDoc(
        "email.html",
        "section",
        '`<td class="card">`, once per section',
        "One section: its `<h2>` heading (id= its anchor), then the post block for each post.",
        "`section.title`, `section.anchor`, `section.posts`, `section.count`",
    ),
    BlockDoc(
        "email.html",
        "post",
        "section, once per post",
        '`{% include "post.html" %}`: the title linked, date and author, excerpt and thumbnail.'
        " Override this block, or put your own post.html in templates/.",
        "`post.*` (title, link, date, author, excerpt, image_url...), `section`",
    ),
    BlockDoc(
        "email.html",
        "footer",
        '`<td class="footer">`',
        "Who it was sent to, newsletter.footer, the unsubscribe link, the archive link and the"
        " postal address. Keep `{{ unsubscribe_url }}` in yours, or call `{{ super() }}`.",
        "`subscriber.recipient`, `unsubscribe_url`, `newsletter.footer`, `.title`,"
        " `.address`, `issue_url`",
    ),
    BlockDoc(
        "email.txt",
        "header",
        "the top",
        "The title underlined with =, the date and post count, the archive link, then the"
        " intro and note blocks.",
        "`issue.*`, `issue_url`",
    ),
    BlockDoc("email.txt", "intro", "header", "The intro and a blank line.", "`intro_text`"),
    BlockDoc(
        "email.txt", "note", "header", "The editor's note and a blank line, if any.", "`note_text`"
    ),
    BlockDoc(
        "email.txt", "sections", "the body", "Every section block in config order.", "`sections`"
    ),
    BlockDoc(
        "email.txt",
        "section",
        "sections, once per section",
        "A blank line, the heading underlined with -, a blank line, then the post block for"
        " each post.",
        "`section.*`",
    ),
    BlockDoc(
        "email.txt",
        "post",
        "section, once per post",
        "Title, date and author, excerpt, link, and a blank line.",
        "`post.*`, `section`",
    ),
    BlockDoc(
        "email.txt",
        "footer",
        "the end",
        "A -- line, who it was sent to, newsletter.footer, the unsubscribe URL and the postal"
        " address. Keep `{{ unsubscribe_url }}` in yours, or call `{{ super() }}`.",
        "`subscriber.recipient`, `unsubscribe_url`, `newsletter.footer`, `.title`, `.address`",
    ),
    BlockDoc(
        "message.html",
        "styles",
        "`<head>`",
        "As email.html's: email.css inlined, email-head.css kept. The confirmation, welcome,"
        " held and report emails (confirm-email.html, welcome-email.html, held-email.html,"
        " report-email.html) extend message.html.",
        "`theme.*` (in the CSS files)",
    ),
    BlockDoc(
        "message.html",
        "header",
        '`<td class="card header">`',
        "The logo and the email's heading.",
        "`heading`, `newsletter.logo_url`, `.logo_width`, `.logo_height`, `.title`",
    ),
    BlockDoc(
        "message.html",
        "content",
        '`<td class="card message">`',
        "The email's own text, with a button (`{{ button(url, label) }}`, from button.html);"
        " each email fills it.",
        "that email's variables (see the one-off emails' variables)",
    ),
    BlockDoc(
        "message.html",
        "footer",
        '`<td class="footer">`',
        "Who it was sent to and the postal address.",
        "`recipient`, `newsletter.title`, `.address`",
    ),
    BlockDoc("message.txt", "header", "the top", "The heading underlined with =.", "`heading`"),
    BlockDoc("message.txt", "content", "the body", "The email's own text.", "that email's"),
    BlockDoc(
        "message.txt",
        "footer",
        "the end",
        "A -- line, who it was sent to and the postal address.",
        "`recipient`, `newsletter.title`, `.address`",
    ),
)

OVERRIDE_RULES: tuple[str, ...] = (
    "A file in the `templates/` folder beside config.yaml replaces the bundled file of the same"
    " name; the bundled files are used for everything else, so a newer release's improvements"
    " reach you for every file you have not replaced.",
    "`bundled/NAME` always means the shipped file, so your email.html can start with"
    ' `{% extends "bundled/email.html" %}` and override only the blocks you want to change;'
    " `{{ super() }}` inside a block outputs the bundled content of that block.",
    "In an extending template only the blocks count: text outside them is not shown.",
    "Files the bundled templates include (post.html, email-meta.html, email.css,"
    " email-head.css) are taken from your folder first, so replacing post.html or email.css"
    " also changes an extended email.html.",
    "The confirmation, welcome, held and report emails (confirm-email, welcome-email, held-email,"
    " report-email, each an .html and a .txt) extend message.html and message.txt, which use the"
    " same email.css, email-head.css and theme as the issue: replacing message.html changes all"
    " four.",
    "Templates ending in .html are autoescaped (write `{{ value|safe }}` only for trusted HTML);"
    " .txt and .css are not. Any variable misspelt is an error naming the file and line.",
)

README_EXAMPLE = """\
{% extends "bundled/email.html" %}
{% block footer %}
<p>Thanks for reading! Forward this to a friend who would enjoy it.</p>
{{ super() }}
{% endblock %}
"""


def template_loader(templates_dir: Path) -> jinja2.BaseLoader:
    """The editor's folder first, then the bundled templates; `bundled/NAME` is always shipped."""
    bundled = jinja2.FileSystemLoader(str(BUNDLED_TEMPLATES))
    return jinja2.ChoiceLoader(
        [
            # First, so a folder named bundled/ among the editor's templates cannot shadow it.
            jinja2.PrefixLoader({BUNDLED_PREFIX: bundled}),
            jinja2.FileSystemLoader(str(templates_dir)),
            bundled,
        ]
    )


def bundled_template_names() -> list[str]:
    """Names of the shipped template files, as editors would name their replacements."""
    return sorted(
        path.name
        for path in BUNDLED_TEMPLATES.iterdir()
        if path.is_file() and not path.name.startswith(".")
    )


def _fill(text: str, bullet: str = "") -> str:
    return textwrap.fill(text, width=78, initial_indent=bullet, subsequent_indent=" " * len(bullet))


def readme_text() -> str:
    """The README.txt `digest init` puts in the editor's empty templates/ folder."""
    blocks = "\n".join(
        f"  {template}: {', '.join(b.name for b in TEMPLATE_BLOCKS if b.template == template)}"
        for template in dict.fromkeys(b.template for b in TEMPLATE_BLOCKS)
    )
    paragraphs = [
        _fill(
            "Your templates. This folder starts empty: the newsletter uses the templates that"
            " come with digest, and gets their improvements when you upgrade. Put a file here"
            f" to change one. The bundled files are: {', '.join(bundled_template_names())}."
        ),
        *(_fill(rule, "- ") for rule in OVERRIDE_RULES),
        _fill(
            "For example, to add a line above the footer and keep the rest, save this as"
            " email.html:"
        ),
        README_EXAMPLE.rstrip("\n"),
        f"Blocks you can override:\n{blocks}",
        _fill(
            "intro is inside header, and post inside section inside sections: overriding an"
            " outer block without {{ super() }} replaces the blocks inside it too."
        ),
        _fill(
            "`digest check` renders your templates on sample data and names the file and line"
            " of any mistake; digest's docs/reference.md describes every block and variable."
            " To start from copies of every bundled template instead, run"
            " `digest init --templates` in a new folder."
        ),
    ]
    return "\n\n".join(paragraphs) + "\n"
