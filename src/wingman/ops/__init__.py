"""Operations logic behind ``wingmanctl status``, ``backup``, ``restore``, ``doctor``, ``logs``
and ``tune`` (where the tuned files live: ``tune_*``).

Each module returns msgspec Structs that the commands render; nothing here prints.
"""
