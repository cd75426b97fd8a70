"""Realtime: per-user events fanned out through Redis and delivered over the WebSocket."""
