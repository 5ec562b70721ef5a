"""The daemon's service side: sockets, sessions, the device worker, and the `serve` / `edit` commands.

server.py (ROUTER loop, validation, dispatch) -> worker.py (one engine task at a time) -> engine_ops.py (what each
task does with the engine); sessions.py (ownership, history, caps), models.py (which generators are served),
serve_cli.py / edit_cli.py (the commands), logs.py, pixels.py, curve_keys.py. The wire format is
draggan_protocol's PROTOCOL.md.
"""
