"""What a task hands back, as plain data: defined here, filled by ``workers.methods``, stored by
``app.queue.complete_task`` in one transaction with the task's completion."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from app.soft_targets import SoftTargets

# "candidate": a response generated or gathered to be judged (feedback jobs); it is not training
# data by itself (default exports leave it out), it is what preference pairs are made of
ExampleStatus = Literal["accepted", "rejected", "pending", "candidate"]

__all__ = ["ExampleOut", "ExampleStatus", "PairOut", "TaskOutcome"]


@dataclass(slots=True)
class PairOut:
    """A judged pair: the teacher prefers ``chosen`` to ``rejected`` (responses to one prompt).

    Each side is this task's example by its ``item_index`` (int) or an example already in the
    dataset by its id (str). A side that is not stored as accepted or candidate (a duplicate,
    say) drops the pair.
    """

    prompt_id: str
    chosen: int | str
    rejected: int | str
    margin: float
    mode: str
    chosen_score: float | None = None
    rejected_score: float | None = None


@dataclass(slots=True)
class ExampleOut:
    """One candidate the task produced; ``item_index`` is unique within the task."""

    item_index: int
    instruction: str
    input: str = ""
    output: str | None = None
    status: ExampleStatus = "accepted"
    reject_reason: str | None = None
    reject_detail: str | None = None
    messages: list[dict[str, Any]] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    raw_output: str | None = None
    usage: dict[str, Any] | None = None
    sampling: dict[str, Any] | None = None
    prompt_id: str | None = None
    prompt_version: str | None = None
    scores: dict[str, Any] | None = None
    source_id: str | None = None  # the example whose prompt this one answers (labeling)
    soft_targets: SoftTargets | None = None  # the teacher's token distributions (white-box KD)
    rationale: str | None = None  # the teacher's reasoning, apart from its final answer (output)
    topic: str | None = None  # the taxonomy leaf path "topic/subtopic" it was generated for
    # the row's id when the method chooses it (a uuid7 string), so that rows of this task or of
    # a later one can name it (evol: a lineage's parent_id); None: the queue gives one
    id: str | None = None


@dataclass(slots=True)
class TaskOutcome:
    """What a finished task hands back; stored with the task's completion in one transaction."""

    examples: list[ExampleOut] = field(default_factory=list)
    completed: int = 0  # progress units the task finished (job.completed += this)
    failed: int = 0  # progress units that failed for good (job.failed += this)
    followups: list[dict[str, Any]] = field(default_factory=list)  # payloads of new tasks
    prompt_tokens: int = 0
    completion_tokens: int = 0
    teacher_seconds: float = 0.0
    stop_reason: str | None = None  # job-level, e.g. "target reached"; stored on the job
    summary: dict[str, Any] = field(default_factory=dict)  # stored on task.result
    # the system prompt the teacher calls carried; stored on the job (exports with system=true)
    system_prompt: str | None = None
    # a cap on accepted examples (an exact target): at commit, under the job's lock, at most
    # min(max_accepted, job.total - job.accepted) stay accepted; the rest are stored as rejected
    # "over_target"; `completed` then counts the examples stored accepted (not those the commit
    # rejected: over the cap, near duplicates found by `recheck`, exact duplicates)
    max_accepted: int | None = None
    # a quota per taxonomy leaf (curation): (topic, quota): at commit, under the job's lock, at
    # most quota - (the job's accepted examples of that topic) of this task's stay accepted; the
    # rest are stored as rejected "over_target", as with `max_accepted` (both may apply)
    max_accepted_topic: tuple[str, int] | None = None
    # a taxonomy the teacher proposed (curation, ``app.taxonomy.Taxonomy`` as a dict): stored on
    # the job's skill unless the skill has one by then (a user's edit is never overwritten)
    taxonomy: dict[str, Any] | None = None
    # the job's total once a task knows it (curation: the sum of the leaves' quotas, known after
    # the taxonomy is proposed): replaces job.total
    total: int | None = None
    # a last near-duplicate check at commit, under the dataset's lock, against the examples other
    # tasks stored since `recheck_since` (what this task's pool snapshot may have missed when
    # rounds run in parallel): called with their instructions, it returns the
    # item indexes to store as rejected instead of accepted, each with its (reason, detail):
    # "duplicate" (same words) or "near_duplicate" (the detail names the match and its ROUGE-L)
    recheck: Callable[[list[str]], dict[int, tuple[str, str]]] | None = None
    recheck_since: dt.datetime | None = None
    # ids (as strings) of examples stored since `recheck_since` that the task's curation saw
    # already: the recheck skips them (what it reads under the lock stays what it must check)
    recheck_skip: frozenset[str] = frozenset()
    # the teacher's tokenizer identity (name, vocab_size, sha256, chat_template ...), stored on
    # the job by the first task that reports it (soft targets are only meaningful with it)
    tokenizer: dict[str, Any] | None = None
    # judgments of examples already in the dataset (feedback): example id -> its ``scores``
    score_updates: dict[str, dict[str, Any]] = field(default_factory=dict)
    # soft targets of examples already in the dataset (scoring: the teacher's distribution over
    # text it did not write): example id -> its targets; stored keyed by the example, replacing
    # what it had only when ``replace_soft_targets`` (a rescore)
    soft_targets: dict[str, SoftTargets] = field(default_factory=dict)
    replace_soft_targets: bool = False
    # preference pairs between this task's examples and/or existing ones (feedback)
    pairs: list[PairOut] = field(default_factory=list)
