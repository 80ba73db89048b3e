"""Per-issue reports and deliverability health: what each issue delivered, what it drew back
(bounces, complaints, unsubscribes, preference changes), and plain words when a rate passes
what mailbox providers tolerate. Counts per issue only, never per reader.

`figures` computes the report from counts (pure), `health` judges it (pure), `charts` draws it
as inline SVG with a table beside each chart (pure), `formats` writes it as JSON or CSV
(pure); `gather` reads the counts from the state, and `mail` queues an issue's report for the
editor through the outbox.
"""
