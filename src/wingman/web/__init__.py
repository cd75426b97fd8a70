"""The reference web client: a small page at ``/`` that uses the public REST API and WebSocket.

Plain files in ``static/`` (HTML, CSS and JavaScript modules, no build step and nothing from
another origin), served by :mod:`wingman.web.routes`. See docs/web-client.md.
"""
