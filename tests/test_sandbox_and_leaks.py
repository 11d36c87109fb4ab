"""User text reaches prompts as data only (sandboxed Jinja), and errors never leak internals."""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import text

from app.state import Database
from tests.factories import make_dataset
from workers.methods.common import answer_messages
from workers.prompts import render, skill_system_prompt

TEMPLATE_SYNTAX = [
    "{{ 7*7 }}",
    "{% for x in range(3) %}loop{% endfor %}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ config }}{# comment #}",
]


def test_template_syntax_in_user_text_renders_literally() -> None:
    for payload in TEMPLATE_SYNTAX:
        system = skill_system_prompt(
            {"name": payload, "description": payload, "guidelines": payload}
        )
        assert system.count(payload) == 3
        messages = answer_messages(system, f"Explain {payload}", payload)
        assert payload in messages[1]["content"] and f"Explain {payload}" in messages[1]["content"]
        demos = [{"instruction": payload, "input": payload}]
        proposal = render("expansion/propose", "v1", count=2, demos=demos, with_output=False)
        assert proposal.count(payload) == 2
    assert "49" not in skill_system_prompt({"name": "{{ 7*7 }}"})


def test_internal_errors_do_not_leak(client: httpx.Client, database_url: str) -> None:
    make_dataset(client)

    async def break_schema() -> None:
        db = Database.from_url(database_url)
        try:
            async with db.transaction() as session:
                cascade = " CASCADE" if db.dialect == "postgresql" else ""
                await session.execute(text(f"DROP TABLE skills{cascade}"))
        finally:
            await db.engine.dispose()

    asyncio.run(break_schema())
    response = client.get("/v1/skills")
    assert response.status_code == 500
    error = response.json()["error"]
    assert error == {
        "code": "internal",
        "message": "internal error; the server log has the details",
        "details": [],
    }
    for leak in ("skills", "SELECT", "Traceback", "sqlalchemy", ".py"):
        assert leak not in response.text
