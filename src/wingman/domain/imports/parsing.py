"""Reading a chat transcript into speaker-tagged lines, or into line-numbered errors. Pure.

Two formats (docs/privacy.md, "Imports"):

- ``text``: UTF-8, one message per line, ``Name: text``. The name is everything before the first
  ``": "``; the text is the rest with surrounding whitespace removed. Blank lines are skipped.
- ``telegram``: Telegram Desktop's "Export chat history" in machine-readable JSON: an object
  whose ``messages`` list holds objects with ``type`` (only ``"message"`` ones are read;
  ``"service"`` ones are skipped), ``from`` (the sender's name) and ``text`` (a string, or a list
  of strings and ``{"type": ..., "text": ...}`` entities, concatenated). Messages without text
  (a photo, a sticker) are skipped; a ``from`` of ``null`` (a deleted account) is a contact.
  A message's "line" is its 1-based position in ``messages``.

Lines whose speaker is ``me`` (compared exactly, after trimming) are the user's; every other
speaker's are the contact's. Any error fails the whole transcript: nothing is imported.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from wingman.db.models import ImportFormat

# A report names at most this many problems; the count of the rest is given in the last one.
MAX_ERRORS = 100
MAX_NAME_CHARS = 100


@dataclass(frozen=True, slots=True)
class TranscriptLine:
    mine: bool
    content: str


@dataclass(frozen=True, slots=True)
class LineError:
    line: int
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"line": self.line, "message": self.message}


@dataclass(frozen=True, slots=True)
class Parsed:
    lines: list[TranscriptLine]
    errors: list[LineError]


class _Collector:
    def __init__(self, me: str, max_chars: int) -> None:
        self.me = me.strip()
        self.max_chars = max_chars
        self.lines: list[TranscriptLine] = []
        self.errors: list[LineError] = []
        self.dropped = 0

    def error(self, line: int, message: str) -> None:
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(LineError(line, message))
        else:
            self.dropped += 1

    def add(self, line: int, name: str, content: str) -> None:
        name, content = name.strip(), content.strip()
        if not name:
            self.error(line, "the speaker's name is empty")
        elif len(name) > MAX_NAME_CHARS:
            self.error(line, f"the speaker's name is longer than {MAX_NAME_CHARS} characters")
        elif not content:
            self.error(line, "the message has no text")
        elif len(content) > self.max_chars:
            self.error(line, f"the message is longer than {self.max_chars} characters")
        elif "\x00" in content or "\x00" in name:
            self.error(line, "the text holds a NUL character")
        else:
            self.lines.append(TranscriptLine(mine=name == self.me, content=content))

    def result(self) -> Parsed:
        errors = list(self.errors)
        if self.dropped:
            last = errors[-1].line if errors else 0
            errors.append(LineError(last, f"and {self.dropped} more errors"))
        if not errors and not self.lines:
            errors.append(LineError(0, "the transcript holds no messages"))
        return Parsed(self.lines if not errors else [], errors)


def parse_text(data: bytes, me: str, max_chars: int) -> Parsed:
    collector = _Collector(me, max_chars)
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            collector.error(number, "not valid UTF-8")
            continue
        if number == 1:
            line = line.removeprefix("\ufeff")
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        name, separator, content = line.partition(": ")
        if not separator:
            collector.error(number, 'expected "Name: text"')
            continue
        collector.add(number, name, content)
    return collector.result()


def _entity_text(text: Any) -> str | None:
    """A Telegram ``text`` field as plain text, or None when it has neither form."""
    if isinstance(text, str):
        return text
    if not isinstance(text, list):
        return None
    parts: list[str] = []
    for part in text:
        if isinstance(part, str):
            parts.append(part)
        elif isinstance(part, dict) and isinstance(part.get("text"), str):
            parts.append(part["text"])
        else:
            return None
    return "".join(parts)


def parse_telegram(data: bytes, me: str, max_chars: int) -> Parsed:
    collector = _Collector(me, max_chars)
    try:
        document = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError:
        return Parsed([], [LineError(0, "not valid UTF-8")])
    except json.JSONDecodeError as exc:
        return Parsed([], [LineError(exc.lineno, f"not valid JSON: {exc.msg}")])
    except RecursionError:
        return Parsed([], [LineError(0, "not valid JSON: nested too deeply")])
    messages = document.get("messages") if isinstance(document, dict) else None
    if not isinstance(messages, list):
        return Parsed([], [LineError(0, 'expected an object with a "messages" list')])
    for number, message in enumerate(messages, start=1):
        if not isinstance(message, dict):
            collector.error(number, "a message must be an object")
            continue
        if message.get("type", "message") != "message":
            continue
        text = _entity_text(message.get("text", ""))
        if text is None:
            collector.error(number, '"text" must be a string or a list of text entities')
            continue
        if not text.strip():
            continue
        sender = message.get("from")
        if sender is None:
            # Telegram's export of a message from an account deleted since.
            sender = "Deleted Account"
        if not isinstance(sender, str):
            collector.error(number, '"from" must be the sender\'s name')
            continue
        collector.add(number, sender, text)
    return collector.result()


def parse(kind: ImportFormat, data: bytes, me: str, max_chars: int) -> Parsed:
    """The transcript's lines in order, or (and then no lines) what is wrong with it."""
    if kind is ImportFormat.TEXT:
        return parse_text(data, me, max_chars)
    return parse_telegram(data, me, max_chars)
