"""Collecting posts from the configured feeds.

`fetch` downloads each feed within limits (size, time, politeness per host); `defuse` refuses
hostile XML before it is parsed; `parse` turns a body into posts (`parseprocess` runs that on a
second core); `collect` runs them all together; `advice` explains a failing feed to the editor.
"""
