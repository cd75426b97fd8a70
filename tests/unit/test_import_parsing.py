"""Transcript parsing (pure): what a transcript says, or exactly which lines are wrong; and how
imported lines enter a reply's prompt."""

from __future__ import annotations

import json
from uuid import uuid4

from hypothesis import given
from hypothesis import strategies as st

from wingman.db.models import ImportFormat, MessageSender, ReplyLength
from wingman.domain.ai.prompt import HistoryMessage, PromptContext, build_request
from wingman.domain.catalog.registry import AiConfig
from wingman.domain.imports.parsing import MAX_ERRORS, TranscriptLine, parse

contents = st.text(
    alphabet=st.characters(exclude_categories=("Cc", "Cs")), min_size=1, max_size=30
).filter(lambda text: text == text.strip() and bool(text))


@given(st.lists(st.tuples(st.booleans(), contents), min_size=1, max_size=30))
def test_text_lines_come_back_in_order(lines: list[tuple[bool, str]]) -> None:
    body = "\ufeff" + "\r\n\n".join(f"{'Me' if mine else 'Ann'}: {text}" for mine, text in lines)
    parsed = parse(ImportFormat.TEXT, body.encode(), " Me ", 1000)
    assert parsed.errors == []
    assert parsed.lines == [TranscriptLine(mine, text) for mine, text in lines]


def test_text_errors_name_every_bad_line() -> None:
    body = "Me: fine\nno colon\n: no name\nAnn: \nAnn: " + "x" * 11 + "\n\xff\n"
    parsed = parse(ImportFormat.TEXT, body.encode("latin-1"), "Me", 10)
    assert [error.line for error in parsed.errors] == [2, 3, 4, 5, 6]
    assert parsed.lines == []


def test_errors_are_capped_with_a_count_of_the_rest() -> None:
    parsed = parse(ImportFormat.TEXT, b"bad\n" * (MAX_ERRORS + 7), "Me", 10)
    assert len(parsed.errors) == MAX_ERRORS + 1
    assert parsed.errors[-1].message == "and 7 more errors"


def test_an_empty_transcript_is_an_error() -> None:
    assert parse(ImportFormat.TEXT, b"\n \n", "Me", 10).errors[0].message == (
        "the transcript holds no messages"
    )


def test_telegram_entities_service_entries_and_deleted_senders() -> None:
    document = {
        "messages": [
            {"type": "service", "action": "pin_message"},
            {"type": "message", "from": "Me", "text": ["Hi ", {"type": "bold", "text": "you"}]},
            {"type": "message", "from": None, "text": "gone"},
            {"type": "message", "from": "Ann", "text": "", "photo": "p.jpg"},
        ]
    }
    parsed = parse(ImportFormat.TELEGRAM, json.dumps(document).encode(), "Me", 100)
    assert parsed.errors == []
    assert parsed.lines == [TranscriptLine(True, "Hi you"), TranscriptLine(False, "gone")]


def test_telegram_errors_name_the_message_or_the_line_of_bad_json() -> None:
    bad_json = parse(ImportFormat.TELEGRAM, b'{\n"messages": [\n{"from": "Me",,}]}', "Me", 9)
    assert [(e.line, e.message.startswith("not valid JSON")) for e in bad_json.errors] == [
        (3, True)
    ]
    wrong = {"messages": [{"from": "Me", "text": "ok"}, {"from": 1, "text": "x"}, {"text": [3]}]}
    parsed = parse(ImportFormat.TELEGRAM, json.dumps(wrong).encode(), "Me", 9)
    assert [error.line for error in parsed.errors] == [2, 3]
    assert parse(ImportFormat.TELEGRAM, b"[]", "Me", 9).errors[0].line == 0


def test_imported_contact_lines_are_the_conversation_s_other_side_in_the_prompt() -> None:
    history = [
        HistoryMessage(MessageSender.CONTACT, "Are we on?"),
        HistoryMessage(MessageSender.USER, "Yes"),
        HistoryMessage(MessageSender.AI, "Say 7 pm"),
    ]
    context = PromptContext(
        user_id=uuid4(),
        session_id=uuid4(),
        tone=None,
        profile=None,
        reply_length=ReplyLength.SHORT,
        language=None,
        history=history,
    )
    request = build_request(context, AiConfig())
    assert [(m.role, m.content) for m in request.messages[1:]] == [
        ("user", "Are we on?"),
        ("user", "Yes"),
        ("assistant", "Say 7 pm"),
    ]
