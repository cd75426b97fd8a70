"""Helpers shared by the test suites (real services, real processes)."""
