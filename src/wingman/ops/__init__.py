"""Operations logic behind ``wingmanctl status``, ``backup``, ``restore``, ``doctor`` and ``logs``.

Each module returns msgspec Structs that the commands render; nothing here prints.
"""
