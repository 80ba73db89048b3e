"""The newsletter on the web: every issue sent, as pages and a feed.

`pages` renders the archive's index, issue pages and Atom feed; `files` writes them as static
files, replacing the old set atomically; `backfill` adds the issues sent before the archive was
on.
"""
