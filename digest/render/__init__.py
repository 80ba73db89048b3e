"""Rendering an issue into an email: sandboxed Jinja2 templates, CSS inlined once, HTML to text.

`templates` sets up the sandboxed, autoescaped, StrictUndefined environment and the bounds on
rendering; `loader` finds the editor's templates beside the bundled ones; `issue` renders the
frozen issue into HTML and text; `inline` inlines the CSS; `htmltext` turns HTML into the text
part and excerpts; `theme` holds the newsletter's colours and fonts; `personalise` fills the
per-reader placeholders (name, links) into a frozen issue without rendering it again.
"""
