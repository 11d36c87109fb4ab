"""Wire models: the API's contract (requests in, responses out)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Generic, Literal, TypeVar

from fastapi import Query
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict, model_validator

from app.kinds import (
    CurationParams,
    DialogueParams,
    EvolParams,
    ExpansionParams,
    FeedbackParams,
    LabelingParams,
    ScoringParams,
    TeacherSpec,
    integral,
)
from app.models import JobStatus
from app.taxonomy import Taxonomy

T = TypeVar("T")

ExportFormat = Literal[
    "alpaca", "messages", "sharegpt", "prompt_completion", "preference", "kto", "kd"
]


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


LICENSE = r"^[a-z0-9][a-z0-9.+-]{0,63}$"  # Hugging Face's license ids: apache-2.0, cc-by-4.0 ...
_LICENSE_FIELD = Field(
    None,
    pattern=LICENSE,
    description="the data's license as a Hugging Face license id (apache-2.0, mit, cc-by-4.0, "
    "other ...); the dataset card declares it",
)


class DatasetCreate(_In):
    name: str = Field(..., min_length=1, max_length=200, pattern=NOT_BLANK)
    description: str = Field("", max_length=10_000)
    license: str | None = _LICENSE_FIELD


class DatasetUpdate(_In):
    description: str | None = Field(None, max_length=10_000)
    license: str | None = _LICENSE_FIELD


class DatasetRead(BaseModel):
    id: uuid.UUID
    name: str
    description: str
    license: str | None
    created_at: dt.datetime
    counts: dict[str, dict[str, int]] | None = Field(
        None, description="examples by origin, then by status"
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
    source_id: uuid.UUID | None = Field(description="the prompt this example answers (labeling)")
    superseded_by: uuid.UUID | None = Field(
        description="the answer that replaced this one (relabel); left out of default exports"
    )
    rationale: str | None = Field(
        None, description="the teacher's reasoning before its answer (`rationale: true` jobs)"
    )
    created_at: dt.datetime


# skills -----------------------------------------------------------------------------------------


class SkillCreate(_In):
    name: str = Field(..., min_length=1, max_length=200, pattern=NOT_BLANK)
    description: str = Field("", max_length=20_000)
    domain: str = Field("", max_length=200)
    guidelines: str = Field("", max_length=50_000)
    rubric: str = Field("", max_length=50_000)
    output_format: str = Field("", max_length=20_000)
    taxonomy: Taxonomy | None = Field(
        None, description="topics -> subtopics with quotas per leaf (curation, dialogue jobs)"
    )


class SkillUpdate(_In):
    """PATCH: the fields given replace the stored ones (`taxonomy: null` removes it)."""

    # text fields: absent = unchanged; null is not a value (the schema says string)
    name: str = Field(None, min_length=1, max_length=200, pattern=NOT_BLANK)  # type: ignore[assignment]
    description: str = Field(None, max_length=20_000)  # type: ignore[assignment]
    domain: str = Field(None, max_length=200)  # type: ignore[assignment]
    guidelines: str = Field(None, max_length=50_000)  # type: ignore[assignment]
    rubric: str = Field(None, max_length=50_000)  # type: ignore[assignment]
    output_format: str = Field(None, max_length=20_000)  # type: ignore[assignment]
    taxonomy: Taxonomy | None = None


class SkillRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    description: str
    domain: str
    guidelines: str
    rubric: str
    output_format: str
    taxonomy: dict[str, Any] | None
    created_at: dt.datetime


# benchmarks -------------------------------------------------------------------------------------


class BenchmarkItemIn(_In):
    text: str = Field(..., max_length=1_000_000, pattern=NOT_BLANK)


class BenchmarkCreate(_In):
    """A test set to keep out of generated data (JSON form; JSONL: one item per line)."""

    name: str = Field(..., min_length=1, max_length=200, pattern=NOT_BLANK)
    items: list[BenchmarkItemIn] = Field(..., min_length=1)
    default: bool = Field(False, description="applied to every job of the tenant")


class BenchmarkUpdate(_In):
    default: bool = Field(..., description="applied to every job of the tenant")


class BenchmarkRead(BaseModel):
    id: uuid.UUID
    name: str
    items: int = Field(description="number of items")
    default: bool
    created_at: dt.datetime


class DecontaminateRequest(_In):
    benchmarks: list[uuid.UUID] | None = Field(
        None, max_length=1000, description="benchmark ids (default: the tenant's defaults)"
    )


class DecontaminateResult(BaseModel):
    checked: int = Field(description="accepted and pending examples checked")
    contaminated: int = Field(description="of them, rejected now as `contaminated`")
    by_benchmark: dict[str, int] = Field(description="hits per benchmark id")


# jobs -------------------------------------------------------------------------------------------


class _JobCreate(_In):
    dataset_id: uuid.UUID
    skill_id: uuid.UUID | None = None
    teacher: TeacherSpec | None = None
    # strict like job params: `true` and "5" are refused, 5.0 is an integer to JSON Schema
    priority: Annotated[int, Strict(), BeforeValidator(integral)] = Field(
        0,
        ge=-100,
        le=100,
        description="higher runs first: a training loop's small scoring job overtakes bulk jobs",
    )


class LabelingJobCreate(_JobCreate):
    kind: Literal["labeling"]
    params: LabelingParams = Field(default_factory=LabelingParams)


class ExpansionJobCreate(_JobCreate):
    kind: Literal["expansion"]
    params: ExpansionParams


class ScoringJobCreate(_JobCreate):
    kind: Literal["scoring"]
    params: ScoringParams = Field(default_factory=ScoringParams)


class FeedbackJobCreate(_JobCreate):
    kind: Literal["feedback"]
    params: FeedbackParams = Field(default_factory=FeedbackParams)


class EvolJobCreate(_JobCreate):
    kind: Literal["evol"]
    params: EvolParams = Field(default_factory=EvolParams)


class DialogueJobCreate(_JobCreate):
    kind: Literal["dialogue"]
    params: DialogueParams = Field(default_factory=DialogueParams)


class CurationJobCreate(_JobCreate):
    kind: Literal["curation"]
    params: CurationParams = Field(default_factory=CurationParams)


AnyJobCreate = (
    LabelingJobCreate
    | ExpansionJobCreate
    | ScoringJobCreate
    | FeedbackJobCreate
    | EvolJobCreate
    | DialogueJobCreate
    | CurationJobCreate
)
JobCreate = Annotated[AnyJobCreate, Field(discriminator="kind")]


class Progress(BaseModel):
    total: int
    completed: int
    accepted: int
    rejected: int
    failed: int


HealthState = Literal["ok", "waiting_for_worker", "waiting_for_teacher", "retrying"]


class JobHealth(BaseModel):
    """Whether the job can make progress now (app.health)."""

    state: HealthState
    message: str = Field(description="why, in words (empty when all is well)")
    since: dt.datetime | None = Field(description="when this state began, where known")
    last_error: str | None = Field(description="the last teacher error (or the job's error)")


class WorkerRead(BaseModel):
    """A registered worker (GET /v1/workers)."""

    name: str
    host: str
    pid: int | None
    model: str | None
    backend: str | None
    kinds: list[str]
    concurrency: int
    in_flight: int = Field(description="tasks running")
    teacher_in_flight: int = Field(
        description="requests sent to the teacher and not answered yet, at the last heartbeat"
    )
    teacher_state: Literal["ok", "down"]
    teacher_down_since: dt.datetime | None
    last_teacher_error: str | None
    last_teacher_error_at: dt.datetime | None
    started_at: dt.datetime
    last_seen_at: dt.datetime
    stopped_at: dt.datetime | None
    live: bool = Field(description="heartbeating now (seen within a few heartbeat periods)")


class JobRead(BaseModel):
    id: uuid.UUID
    dataset_id: uuid.UUID
    skill_id: uuid.UUID | None
    kind: str
    status: JobStatus
    params: dict[str, Any]
    teacher: dict[str, Any]
    priority: int
    tokenizer: dict[str, Any] | None = Field(
        description="the teacher's tokenizer identity (name, vocab_size, sha256, chat_template), "
        "recorded when the job captured soft targets"
    )
    progress: Progress
    error: str | None
    stop_reason: str | None
    cancel_requested: bool
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    health: JobHealth


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


class MarginBin(BaseModel):
    low: float
    high: float
    pairs: int


class MarginDistribution(BaseModel):
    min: float | None
    median: float | None
    max: float | None
    histogram: list[MarginBin] = Field(description="unit-wide bins over 0-10, the last closed")


class FeedbackReport(BaseModel):
    prompts_judged: int = Field(description="prompt groups the job judged")
    prompts_with_pair: int = Field(description="prompts that gave at least one preference pair")
    pairs: int
    margin: MarginDistribution = Field(
        description="the pairs' margins (pointwise: overall score points; pairwise: win-rate "
        "difference x 10)"
    )
    comparisons: int = Field(description="pairwise: comparisons asked in both orders")
    disagreements: int = Field(description="pairwise: comparisons whose two orders disagreed")
    disagreement_rate: float | None = Field(
        description="disagreements / comparisons: the judge's position bias (pairwise)"
    )
    judge_failed: int = Field(
        description="judgments still unparseable or invalid after their retries (never a score)"
    )
    aspects: dict[str, float] = Field(
        description="mean 1-10 score per aspect over the responses whose judgment is this job's"
    )


class SoftTargetsReport(BaseModel):
    examples: int = Field(description="examples with soft targets from this job")
    positions: int = Field(description="completion tokens covered")
    k: int = Field(description="alternatives per position (the most any example has)")
    stored_bytes: int = Field(description="packed bytes stored (soft_targets.data)")
    bytes_per_token: float | None = Field(description="stored bytes per completion token")


class DialogueReport(BaseModel):
    conversations: int = Field(description="accepted conversations")
    turns: dict[str, int] = Field(
        description="accepted conversations by their number of assistant turns"
    )
    mean_turns: float | None = Field(description="assistant turns per accepted conversation")
    full: int = Field(description="accepted conversations that reached `turns`")
    truncated: int = Field(description="accepted conversations cut at their last good turn")
    cut_by_reason: dict[str, int] = Field(
        description="truncated conversations by the reason of the turn that ended them"
    )
    rejected_by_reason: dict[str, int] = Field(
        description="rejected conversations by reason (too_few_turns: cut before `min_turns`)"
    )


class EvolGeneration(BaseModel):
    generation: int
    evolved: int = Field(description="evolutions stored (each lineage step once)")
    accepted: int
    pending: int = Field(description="kept unanswered (answer: false)")
    eliminated: dict[str, int] = Field(
        description="eliminated by rule: evol_no_new_information, evol_refusal, "
        "evol_degenerate_answer, evol_copied_prompt"
    )
    rejected: dict[str, int] = Field(
        description="rejected by curation (filters, duplicates, contamination, answer filters)"
    )


class EvolOperationReport(BaseModel):
    evolved: int
    kept: int = Field(description="accepted or pending")


class EvolReport(BaseModel):
    generations: list[EvolGeneration]
    operations: dict[str, EvolOperationReport] = Field(
        description="evolutions and those kept, per operation"
    )


class LeafCoverage(BaseModel):
    path: str = Field(description='the taxonomy leaf, "topic/subtopic"')
    quota: int
    accepted: int
    rejected: int
    rejected_by_reason: dict[str, int]
    rounds: int = Field(description="proposal rounds the leaf ran")
    done: str | None = Field(
        description="why the leaf stopped: `quota met`, `round budget spent (N rounds)`, or the "
        "job's end (`cancelled`, `failed`); null while it runs"
    )


class CurationReport(BaseModel):
    proposed: bool = Field(description="the teacher proposed the taxonomy in this job")
    leaves: int
    leaves_met: int = Field(description="leaves whose quota is met")
    quota: int = Field(description="the leaves' quotas, summed")
    accepted: int
    coverage: list[LeafCoverage] = Field(description="per leaf, in taxonomy order")


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
    teacher_errors: dict[str, int] = Field(
        description="failed teacher attempts by cause (http_500, http_429, timeout, connection, "
        "malformed ...), the backend's own retries included; every one was retried"
    )
    last_teacher_error: str | None
    teacher_wait_seconds: float = Field(
        description="time the job spent with the teacher answering nothing (of its budget)"
    )
    wall_seconds: float | None = Field(description="from the first claim to the end (or now)")
    examples_per_minute: float | None
    diversity: Diversity
    feedback: FeedbackReport | None = Field(
        None, description="feedback jobs: prompts judged, pairs, margins, judge disagreement"
    )
    soft_targets: SoftTargetsReport | None = Field(
        None, description="the teacher's token distributions the job stored (top_logprobs, scoring)"
    )
    dialogue: DialogueReport | None = Field(
        None, description="dialogue jobs: turns per conversation, cut and rejected by reason"
    )
    evol: EvolReport | None = Field(
        None, description="evol jobs: per generation, evolved, eliminated by rule, accepted"
    )
    curation: CurationReport | None = Field(
        None,
        description="curation jobs: coverage per taxonomy leaf (accepted / quota, rejected "
        "by reason, rounds, why it stopped)",
    )
    wasted_tokens: int = Field(
        0,
        description="teacher tokens spent on candidates discarded for being too many: kept "
        "tasks left unanswered over the target (their share of the proposal call) and answered "
        "examples dropped at commit (over the target, a parallel round's near copy, content "
        "already stored)",
    )
    wasted_token_share: float = Field(0.0, description="wasted_tokens / all the job's tokens")
