"""Catalog: the default tones.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 10:55:00.000000

Data only. A tone whose slug already exists (made by an admin) is left as it is; the downgrade
removes the default slugs only where they still hold the seeded prompt, so an edited tone stays.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import insert
from uuid_utils.compat import uuid7

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

tones = sa.table(
    "tones",
    sa.column("id", sa.Uuid()),
    sa.column("slug", sa.String()),
    sa.column("name", sa.String()),
    sa.column("description", sa.Text()),
    sa.column("prompt", sa.Text()),
    sa.column("is_active", sa.Boolean()),
    sa.column("sort_order", sa.Integer()),
)

# (slug, name, description, prompt fragment)
DEFAULT_TONES = [
    (
        "friendly",
        "Friendly",
        "Warm and easy-going, like talking to a good friend.",
        "Write in a warm, relaxed and approachable way. Show genuine interest in the other"
        " person, keep it positive, and use simple everyday words.",
    ),
    (
        "playful",
        "Playful",
        "Light-hearted and fun, with gentle teasing.",
        "Keep the mood light and fun: light teasing, a playful question or an unexpected twist"
        " are welcome, but never mean-spirited. Short sentences, an emoji at most.",
    ),
    (
        "flirty",
        "Flirty",
        "Charming with a hint of romance, never pushy.",
        "Be charming and a little flirtatious: compliment specific things, hint at interest and"
        " leave room for the other person to respond. Stay respectful and never explicit or pushy.",
    ),
    (
        "confident",
        "Confident",
        "Self-assured and direct.",
        "Sound self-assured and direct: make clear statements instead of hedging, suggest concrete"
        " plans, and avoid apologising or over-explaining.",
    ),
    (
        "formal",
        "Formal",
        "Polite and professional.",
        "Use a polite, professional register with complete sentences and correct grammar. No"
        " slang, no emoji, and address the other person courteously.",
    ),
    (
        "witty",
        "Witty",
        "Clever and quick, with a sense of humour.",
        "Be clever and quick: use wordplay, a sharp observation or a light ironic remark that"
        " builds on what was just said. Keep it brief so the joke lands.",
    ),
]


def upgrade() -> None:
    rows = [
        {
            "id": uuid7(),
            "slug": slug,
            "name": name,
            "description": description,
            "prompt": prompt,
            "is_active": True,
            "sort_order": (index + 1) * 10,
        }
        for index, (slug, name, description, prompt) in enumerate(DEFAULT_TONES)
    ]
    op.execute(insert(tones).values(rows).on_conflict_do_nothing(index_elements=["slug"]))


def downgrade() -> None:
    for slug, _name, _description, prompt in DEFAULT_TONES:
        op.execute(tones.delete().where(tones.c.slug == slug, tones.c.prompt == prompt))
