"""The request's database session carries none of advanced-alchemy's listeners that Wingman does
not use: its cache listener (which built a new option engine after every commit just to ask
whether it was enabled) is switched off, and file objects are not tracked."""

from __future__ import annotations

from advanced_alchemy._listeners import AsyncCacheListener, AsyncFileObjectListener
from sqlalchemy import event

from wingman.config import DatabaseSettings
from wingman.server.database import alchemy_config


def test_request_sessions_skip_unused_listeners() -> None:
    maker = alchemy_config(DatabaseSettings()).create_session_maker()
    sync_maker = maker.kw["sync_session_class"]
    session = maker()
    assert session.sync_session.info["enable_cache_listener"] is False
    # Still registered by the library, but it returns at the session's flag.
    assert event.contains(sync_maker, "after_commit", AsyncCacheListener.after_commit)
    assert not event.contains(sync_maker, "after_commit", AsyncFileObjectListener.after_commit)
    assert not event.contains(sync_maker, "before_flush", AsyncFileObjectListener.before_flush)
