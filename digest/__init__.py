"""digest: an organisation's new posts, collected from its feeds and emailed as one issue."""

import sys

__version__ = "0.2.0"

# httpx imports its own command-line tool (httpx._main, which loads rich, pygments and click)
# when it is imported, a tenth of a preview's start-up; digest never runs it. A None entry makes
# that import fail, and httpx then puts a stub in its place (httpx/__init__.py). An httpx
# already imported is left as it is.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
