"""Keyset (cursor) pagination over time-ordered UUID ids."""

from __future__ import annotations

import base64
import binascii
import uuid
from typing import Any

from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import ValidationFailed


def encode_cursor(last_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(last_id.bytes).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> uuid.UUID | None:
    """The id a page starts after, or a 422 naming `cursor`."""
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return uuid.UUID(bytes=raw)
    except (binascii.Error, ValueError):
        raise ValidationFailed(
            "invalid cursor", details=[{"loc": ["query", "cursor"], "msg": "invalid cursor"}]
        ) from None


async def page(
    session: AsyncSession, stmt: Select[Any], model: Any, limit: int, cursor: str | None
) -> tuple[list[Any], str | None]:
    """One page of `stmt` (rows of `model`) in id order after `cursor`, and the next cursor."""
    after = decode_cursor(cursor)
    if after is not None:
        stmt = stmt.where(model.id > after)
    rows = list((await session.scalars(stmt.order_by(model.id).limit(limit + 1))).all())
    next_cursor = encode_cursor(rows[limit - 1].id) if len(rows) > limit else None
    return rows[:limit], next_cursor
