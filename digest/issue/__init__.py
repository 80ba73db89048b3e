"""The next issue: which posts go in, grouped a section per feed, each post once.

`prepare` collects every feed and builds the issue the editor would send now; `group` chooses and
orders its posts; `choices` holds the editor's hand on it (a note, posts left out or pinned, a
clean start); `samples` supplies sample posts for previews and checks when nothing is new.
"""
