"""Accounts: one-time-code sign-in, access and refresh tokens, the caller's profile and settings."""
