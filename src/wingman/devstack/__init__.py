"""Private PostgreSQL and Redis servers, plus web and workers, for development and tests.

The same topology as the appliance, started from the host's binaries on loopback ports under one
data folder, so that a laptop or a CI machine needs nothing but the binaries.
"""
