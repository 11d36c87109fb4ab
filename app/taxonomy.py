"""A skill's taxonomy: topics -> subtopics (up to three levels), with quotas on the leaves.

Stored on the skill as ``{"topics": [{"name", "quota"?, "subtopics": [...]}]}``; a leaf is named
by its path, ``"topic/subtopic"``. Curation jobs generate per leaf until its quota; dialogue jobs
may open from the leaves.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from app.kinds import integral

SEPARATOR = "/"


class _Node(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(..., min_length=1, max_length=200, pattern=r"^[^/]*[^/\s][^/]*$")
    # strict, as job params are: `true` or "5" are refused; 5.0 is an integer to JSON Schema
    quota: Annotated[int, Field(ge=1, le=100_000), BeforeValidator(integral)] | None = Field(
        None, description="accepted examples wanted for this leaf"
    )
    description: str = Field("", max_length=2000)


class LeafNode(_Node):
    """A third-level topic: always a leaf."""


class SubtopicNode(_Node):
    subtopics: list[LeafNode] = Field(default_factory=list, max_length=500)

    @field_validator("subtopics")
    @classmethod
    def _merge(cls, nodes: list[LeafNode]) -> list[LeafNode]:
        return _merge_siblings(nodes)


class TopicNode(_Node):
    subtopics: list[SubtopicNode] = Field(default_factory=list, max_length=500)

    @field_validator("subtopics")
    @classmethod
    def _merge(cls, nodes: list[SubtopicNode]) -> list[SubtopicNode]:
        return _merge_siblings(nodes)


class Taxonomy(BaseModel):
    """Topics -> subtopics -> subsubtopics (three levels at most, the schema says so). Names
    hold no '/'; siblings whose names differ only in case or surrounding spaces are one topic:
    merged, their quotas added and their subtopics joined."""

    model_config = ConfigDict(extra="forbid", strict=True)

    topics: list[TopicNode] = Field(..., min_length=1, max_length=500)

    @field_validator("topics")
    @classmethod
    def _merge(cls, nodes: list[TopicNode]) -> list[TopicNode]:
        return _merge_siblings(nodes)


def _merge_siblings(nodes: list[Any]) -> list[Any]:
    merged: dict[str, Any] = {}
    for node in nodes:
        key = node.name.strip().lower()
        first = merged.get(key)
        if first is None:
            merged[key] = node.model_copy(update={"name": node.name.strip()})
            continue
        quotas = [q for q in (first.quota, node.quota) if q is not None]
        update: dict[str, Any] = {"quota": min(sum(quotas), 100_000) if quotas else None}
        if hasattr(node, "subtopics"):
            update["subtopics"] = _merge_siblings([*first.subtopics, *node.subtopics])
        merged[key] = first.model_copy(update=update)
    return list(merged.values())


def leaves(taxonomy: dict[str, Any]) -> list[dict[str, Any]]:
    """The leaves of a stored taxonomy, in order: ``{"path", "names", "quota", "description"}``
    (``quota`` None where the leaf has none of its own)."""
    out: list[dict[str, Any]] = []

    def walk(nodes: list[dict[str, Any]], names: list[str]) -> None:
        for node in nodes:
            path = [*names, node["name"].strip()]
            if node.get("subtopics"):
                walk(node["subtopics"], path)
            else:
                out.append(
                    {
                        "path": SEPARATOR.join(path),
                        "names": path,
                        "quota": node.get("quota"),
                        "description": node.get("description") or "",
                    }
                )

    walk(list(taxonomy.get("topics") or []), [])
    return out


def leaf_quotas(taxonomy: dict[str, Any], quota_per_leaf: int) -> list[dict[str, Any]]:
    """The leaves as a curation job runs them, in order: ``{"path", "description", "quota"}``
    (the leaf's own quota, else `quota_per_leaf`)."""
    return [
        {
            "path": leaf["path"],
            "description": leaf["description"],
            "quota": leaf["quota"] or quota_per_leaf,
        }
        for leaf in leaves(taxonomy)
    ]
