"""Plain factory helpers for tests: make resources through the HTTP API."""

from __future__ import annotations

import uuid
from typing import Any

import httpx


def make_dataset(client: httpx.Client, name: str | None = None, **extra: Any) -> dict[str, Any]:
    """A dataset with a description (expansion jobs without a skill_id need one)."""
    body = {"name": name or f"ds-{uuid.uuid4().hex[:8]}", "description": "short tasks", **extra}
    response = client.post("/v1/datasets", json=body)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def seed_items(n: int, *, with_output: bool = True, prefix: str = "Task") -> list[dict[str, Any]]:
    items = []
    for i in range(n):
        item: dict[str, Any] = {"instruction": f"{prefix} number {i}: explain topic {i}"}
        if with_output:
            item["output"] = f"Answer {i}"
        items.append(item)
    return items


def upload_seeds(
    client: httpx.Client, dataset_id: str, items: list[dict[str, Any]]
) -> dict[str, Any]:
    response = client.post(f"/v1/datasets/{dataset_id}/seeds", json={"examples": items})
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]
