from __future__ import annotations

import httpx

from tests.factories import make_dataset


def test_create_and_read_dataset(client: httpx.Client) -> None:
    ds = make_dataset(client, "first")
    got = client.get(f"/v1/datasets/{ds['id']}").json()
    assert got["name"] == "first"
    assert got["counts"]["seed"]["accepted"] == 0
