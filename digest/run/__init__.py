"""Running the job: preview, rehearsals, the send, the schedule, approval, checks and the demo.

`preview` shows the next issue as a sample reader would get it (from the preview cache when
nothing changed); `rehearsal` holds the test send and the dry run, which record nothing;
`editions` groups subscribers by the rendering they get and builds their messages; `send` is the
real, resumable send; `approval` asks for and records approval of a scheduled issue; `schedule`
and `slots` fire the weekly sends; `check` validates a setup; `demo` runs the whole job on
bundled sample feeds into a local mail server.
"""
