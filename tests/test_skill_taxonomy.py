"""A skill carries a taxonomy (topics -> subtopics, quotas on leaves), editable by PATCH."""

from __future__ import annotations

import httpx
import pytest

from app.taxonomy import leaves

TAXONOMY = {
    "topics": [
        {
            "name": "Algebra",
            "subtopics": [{"name": "Linear equations", "quota": 5}, {"name": "Quadratics"}],
        },
        {"name": "Geometry", "quota": 3},
    ]
}


def test_a_taxonomy_is_stored_and_replaced(client: httpx.Client) -> None:
    r = client.post("/v1/skills", json={"name": "math", "taxonomy": TAXONOMY})
    assert r.status_code == 201, r.text
    skill = r.json()
    assert skill["taxonomy"]["topics"][0]["subtopics"][0] == {
        "name": "Linear equations", "quota": 5, "description": "", "subtopics": []
    }  # fmt: skip
    assert [leaf["path"] for leaf in leaves(skill["taxonomy"])] == [
        "Algebra/Linear equations", "Algebra/Quadratics", "Geometry",
    ]  # fmt: skip
    assert [leaf["quota"] for leaf in leaves(skill["taxonomy"])] == [5, None, 3]

    edited = {"topics": [{"name": "Geometry", "subtopics": [{"name": "Circles", "quota": 9}]}]}
    r = client.patch(f"/v1/skills/{skill['id']}", json={"taxonomy": edited})
    assert r.status_code == 200, r.text
    got = client.get(f"/v1/skills/{skill['id']}").json()
    assert [leaf["path"] for leaf in leaves(got["taxonomy"])] == ["Geometry/Circles"]
    assert got["name"] == "math"  # fields not given are kept

    r = client.patch(f"/v1/skills/{skill['id']}", json={"taxonomy": None})
    assert r.status_code == 200 and r.json()["taxonomy"] is None


@pytest.mark.parametrize(
    ("taxonomy", "needle"),
    [
        ({"topics": []}, "topics"),
        ({"topics": [{"name": "a/b"}]}, "name"),
        ({"topics": [{"name": "A", "quota": 0}]}, "quota"),
        ({"topics": [{"name": "A", "quota": True}]}, "quota"),
        ({"topics": [{"name": "A", "colour": "red"}]}, "colour"),
        (
            {
                "topics": [
                    {
                        "name": "1",
                        "subtopics": [
                            {
                                "name": "2",
                                "subtopics": [{"name": "3", "subtopics": [{"name": "4"}]}],
                            }
                        ],
                    }
                ]
            },
            "subtopics",
        ),
    ],
)
def test_a_bad_taxonomy_is_422_naming_the_field(
    client: httpx.Client, taxonomy: dict, needle: str
) -> None:
    r = client.post("/v1/skills", json={"name": "bad", "taxonomy": taxonomy})
    assert r.status_code == 422, r.text
    assert needle in r.text
    assert client.get("/v1/skills").json()["data"] == []  # nothing half-stored


def test_siblings_named_alike_are_one_topic(client: httpx.Client) -> None:
    taxonomy = {
        "topics": [
            {"name": "Algebra", "quota": 2, "subtopics": [{"name": "Rings", "quota": 1}]},
            {"name": " algebra ", "quota": 3, "subtopics": [{"name": "rings", "quota": 4}]},
        ]
    }
    got = client.post("/v1/skills", json={"name": "m", "taxonomy": taxonomy}).json()["taxonomy"]
    assert [(leaf["path"], leaf["quota"]) for leaf in leaves(got)] == [("Algebra/Rings", 5)]


def test_patch_refuses_null_text_fields_and_unknown_skills(client: httpx.Client) -> None:
    skill = client.post("/v1/skills", json={"name": "s"}).json()
    r = client.patch(f"/v1/skills/{skill['id']}", json={"name": None})
    assert r.status_code == 422 and "name" in r.text
    r = client.patch("/v1/skills/00000000-0000-7000-8000-00000000abcd", json={"rubric": "x"})
    assert r.status_code == 404
