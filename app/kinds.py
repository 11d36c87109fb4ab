"""The catalog of job kinds: name -> params model, plus the teacher spec a job asks for.

Pure data, so `POST /v1/jobs` validates without importing `workers` (app.schemas builds one
request model per kind from these); `workers.methods` must name the same kinds (a test checks
the parity).
"""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# curation steps a job may name (workers.curation.filters.FILTERS; a test checks the parity)
FilterName = Literal[
    "not_empty", "not_truncated", "length", "starts_with_text", "blocklist", "refusal",
    "output_repeats_input",
]  # fmt: skip


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TeacherSpec(_Params):
    """Which teacher a job wants and how to sample it. Every value is explicit and stored."""

    model: str | None = Field(
        None, max_length=300, description="model name; only workers serving it take the job"
    )
    temperature: float = Field(0.7, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    max_tokens: int = Field(1024, ge=1, le=32768)
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    top_logprobs: int | None = Field(
        None, ge=0, le=20, description="store top-k token logprobs (soft targets)"
    )


class LabelingParams(_Params):
    """The teacher answers every example of the dataset that lacks an output."""

    relabel: bool = Field(False, description="answer examples that already have an output too")
    example_ids: list[uuid.UUID] | None = Field(
        None, max_length=100_000, description="only these examples (default: all eligible)"
    )
    chunk_size: int | None = Field(None, ge=1, le=10_000, description="prompts per task")
    filters: list[FilterName] | None = Field(None, description="curation steps for answers")


class ExpansionParams(_Params):
    """Self-Instruct: new tasks from demonstrations, curated, then answered."""

    target: int = Field(..., ge=1, le=1_000_000, description="accepted examples wanted")
    demos_per_prompt: int = Field(8, ge=1, le=64)
    seed_demo_fraction: float = Field(
        0.75, ge=0, le=1, description="share of demonstrations drawn from seeds (rest: generated)"
    )
    candidates_per_call: int = Field(10, ge=1, le=100, description="new tasks asked per call")
    calls_per_round: int = Field(16, ge=1, le=4096, description="teacher calls in one round")
    max_rounds: int = Field(1000, ge=1, le=100_000)
    token_budget: int | None = Field(None, ge=1, description="stop once this many tokens used")
    two_stage: bool = Field(
        True, description="answer the kept tasks in a second call without demonstrations"
    )
    parallel_rounds: int = Field(
        4, ge=1, le=64, description="rounds in flight at once (several workers share a job)"
    )
    similarity_threshold: float = Field(0.7, gt=0, le=1, description="ROUGE-L near-dup cut")
    filters: list[FilterName] | None = Field(None, description="curation steps for new tasks")
    answer_filters: list[FilterName] | None = Field(None, description="curation steps for answers")


KINDS: dict[str, type[_Params]] = {
    "labeling": LabelingParams,
    "expansion": ExpansionParams,
}
