"""Wiring shared by the web and worker processes: database, Redis, logging, errors."""
