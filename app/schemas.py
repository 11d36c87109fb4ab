"""Wire models: the API's contract (requests in, responses out)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Generic, Literal, TypeVar

from fastapi import Query
from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.kinds import ExpansionParams, LabelingParams, TeacherSpec
from app.models import JobStatus

T = TypeVar("T")

ExportFormat = Literal["alpaca", "messages", "sharegpt"]


def _find_nul(value: Any, path: str) -> str | None:
    """The path of the first string (or key) holding a NUL character: Postgres cannot store it."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and "\x00" in key:
                return f"{path}.{key!r}"
            found = _find_nul(item, f"{path}.{key}" if path else str(key))
            if found:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = _find_nul(item, f"{path}.{i}")
            if found:
                return found
    return None


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        found = _find_nul(data, "")
        if found is not None:
            raise ValueError(f"NUL characters (\\u0000) are not allowed (at {found or 'body'})")
        return data


NOT_BLANK = r"\S"  # at least one non-space character (same rule in JSON Schema and pydantic)


Cursor = Annotated[
    str | None,
    Query(pattern=r"^[A-Za-z0-9_-]{22}$", description="`next_cursor` of the previous page"),
]


class ErrorBody(BaseModel):
    code: str
    message: str
    details: list[dict[str, Any]] = []


class ErrorResponse(BaseModel):
    error: ErrorBody


class Page(BaseModel, Generic[T]):
    data: list[T]
    next_cursor: str | None = Field(None, description="pass as `cursor` for the next page")


# datasets ---------------------------------------------------------------------------------------


class DatasetCreate(_In):
    name: str = Field(..., min_length=1, max_length=200, pattern=NOT_BLANK)
    description: str = Field("", max_length=10_000)


class DatasetRead(BaseModel):
    id: uuid.UUID
    name: str
    description: str
    created_at: dt.datetime
    counts: dict[str, dict[str, int]] | None = Field(
        None, description="examples by origin, then by status (one dataset only)"
    )
    total_examples: int | None = None


# examples ---------------------------------------------------------------------------------------


class Message(_In):
    role: Literal["system", "user", "assistant"]
    content: str = Field(..., max_length=1_000_000)


class ExampleIn(_In):
    """A seed: an instruction (with optional input and output), or a conversation."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "anyOf": [
                {"required": ["instruction"], "properties": {"instruction": {"type": "string"}}},
                {
                    "required": ["messages"],
                    "properties": {
                        "messages": {
                            "type": "array",
                            "contains": {"properties": {"role": {"const": "user"}}},
                        }
                    },
                },
            ]
        },
    )

    instruction: str | None = Field(None, max_length=1_000_000, pattern=NOT_BLANK)
    input: str | None = Field(None, max_length=1_000_000)
    output: str | None = Field(None, max_length=1_000_000)
    messages: list[Message] | None = Field(None, max_length=1000)
    metadata: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _has_task(self) -> ExampleIn:
        has_instruction = self.instruction is not None
        has_messages = bool(self.messages)
        if not has_instruction and not has_messages:
            raise ValueError("needs a non-blank `instruction` or a non-empty `messages`")
        if has_messages and not any(m.role == "user" for m in self.messages or []):
            raise ValueError("`messages` needs at least one user message")
        return self


class SeedsUpload(_In):
    examples: list[ExampleIn] = Field(..., min_length=1)


class SeedsResult(BaseModel):
    inserted: int
    duplicates: int


class ExampleRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    dataset_id: uuid.UUID
    origin: str
    status: str
    instruction: str
    input: str
    output: str | None
    messages: list[dict[str, Any]] | None
    metadata: dict[str, Any] = Field(validation_alias="meta")
    reject_reason: str | None
    reject_detail: str | None
    job_id: uuid.UUID | None
    method: str | None
    prompt_id: str | None
    prompt_version: str | None
    teacher_backend: str | None
    teacher_model: str | None
    sampling: dict[str, Any] | None
    usage: dict[str, Any] | None
    raw_output: str | None
    scores: dict[str, Any] | None
    created_at: dt.datetime


# skills -----------------------------------------------------------------------------------------


class SkillCreate(_In):
    name: str = Field(..., min_length=1, max_length=200, pattern=NOT_BLANK)
    description: str = Field("", max_length=20_000)
    domain: str = Field("", max_length=200)
    guidelines: str = Field("", max_length=50_000)
    rubric: str = Field("", max_length=50_000)
    output_format: str = Field("", max_length=20_000)


class SkillRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    description: str
    domain: str
    guidelines: str
    rubric: str
    output_format: str
    created_at: dt.datetime


# jobs -------------------------------------------------------------------------------------------


class _JobCreate(_In):
    dataset_id: uuid.UUID
    skill_id: uuid.UUID | None = None
    teacher: TeacherSpec | None = None


class LabelingJobCreate(_JobCreate):
    kind: Literal["labeling"]
    params: LabelingParams = Field(default_factory=LabelingParams)


class ExpansionJobCreate(_JobCreate):
    kind: Literal["expansion"]
    params: ExpansionParams


JobCreate = Annotated[LabelingJobCreate | ExpansionJobCreate, Field(discriminator="kind")]


class Progress(BaseModel):
    total: int
    completed: int
    accepted: int
    rejected: int
    failed: int


class JobRead(BaseModel):
    id: uuid.UUID
    dataset_id: uuid.UUID
    skill_id: uuid.UUID | None
    kind: str
    status: JobStatus
    params: dict[str, Any]
    teacher: dict[str, Any]
    progress: Progress
    error: str | None
    stop_reason: str | None
    cancel_requested: bool
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None


class Tokens(BaseModel):
    prompt: int
    completion: int
    total: int


class LeadingWord(BaseModel):
    word: str
    count: int


class Diversity(BaseModel):
    instructions: int = Field(description="accepted instructions measured (a sample past 20,000)")
    distinct_1: float = Field(description="distinct words / words")
    distinct_2: float = Field(description="distinct word pairs / word pairs")
    leading_words: list[LeadingWord] = Field(description="most common first words (verbs)")


class JobReport(BaseModel):
    job_id: uuid.UUID
    kind: str
    status: JobStatus
    stop_reason: str | None
    candidates: int = Field(description="every candidate the teacher produced and we judged")
    accepted: int
    rejected: int
    pending: int
    rejected_by_reason: dict[str, int]
    duplicates: int = Field(description="exact and near duplicates among the rejected")
    failed: int = Field(description="items whose teacher calls failed for good")
    tokens: Tokens
    teacher_seconds: float = Field(description="time spent in teacher calls (summed over tasks)")
    wall_seconds: float | None = Field(description="from the first claim to the end (or now)")
    examples_per_minute: float | None
    diversity: Diversity
