"""Database schema (SQLAlchemy models) and the Alembic migrations that build it."""
