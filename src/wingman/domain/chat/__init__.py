"""Chat: sessions, messages and feedback events."""
