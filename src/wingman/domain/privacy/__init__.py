"""Privacy: account exports (``POST /me/export``) and deletion (``DELETE /me``, then a purge).

Both run their heavy part on the ``heavy`` queue (``jobs``); see docs/privacy.md.
"""
