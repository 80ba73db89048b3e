"""`digest serve`: a public app for subscribers and a workbench for the editor, served apart.

The public app (public.py: one-click unsubscribe, /healthz) and the workbench (workbench.py: the
live preview, which fetches feeds and renders) are separate ASGI apps, each on its own uvicorn
server, thread and event loop, on its own port (launch.py). A slow feed or a long render
therefore occupies only the workbench's own small worker pool, never the public app's; and the
workbench can stay on 127.0.0.1 (the default) while the public app sits behind a reverse proxy.
Both servers close connections that do not send a whole request head within 5 seconds and
hold at most 200 connections each. This package imports nothing itself, so importing
digest.web.public never loads the preview machinery.
"""
