"""Dialogue: multi-turn conversations, the teacher playing both the user and the assistant.

UltraChat (Ding et al. 2023): a user simulator and the assistant alternate from an opening
question; the survey's multi-turn dialogue skill (Xu et al. 2024). Input: a task's
``conversations``, each an opening and its number ``n`` among the conversations of that
opening: ``opening_id``, a prompt of the dataset whose instruction and input are the first user
turn, or ``topic``, a taxonomy leaf path (with its ``description``) whose first user turn the
simulator writes. Output: one example per conversation, ``messages`` the whole conversation
(system excluded: the job records it, as labeling does), ``instruction`` the first user turn,
``output`` the last assistant turn, ``meta`` ``{"turns", "opening_id", "persona",
"truncated_at"}`` (a cut conversation adds ``cut_reason``, ``cut_detail`` and the ``cut_turn``
the teacher wrote), ``topic`` the leaf path.

Turns: the simulator (``dialogue/user`` as system, the conversation so far in ``dialogue/next``;
``dialogue/opening`` for a leaf) writes a user turn, checked by
:func:`workers.curation.simulator.check_user_turn`; the teacher as the assistant (the skill's
system prompt, as labeling) answers, through the answer filters (``params.filters``). Until
``params.turns`` assistant turns. A failed turn ends the conversation at the last good assistant
turn (``on_failure: truncate``; fewer than ``min_turns`` good turns: rejected ``too_few_turns``)
or rejects it with the turn's reason (``reject``). Turns are sequential within a conversation;
all conversations of a task run at once, each awaiting one teacher call per turn, so the
backend's concurrency bound, not the method, sets how full the teacher is.

Teacher failures are never rejections (``workers.methods.common``): a conversation one of whose
calls failed (retryable) is dropped whole and redone from its start by a follow-up task; a call
the teacher refused for good (HTTP 400/413/422, e.g. the conversation outgrew its context) is a
failed turn with reason ``teacher_refused``. With a ``seed`` in the teacher spec, every call is
seeded by conversation, turn and role, so the conversations of one opening differ and a redone
one is the same.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from workers.curation import decontamination
from workers.curation.filters import FilterConfig
from workers.curation.simulator import check_user_turn
from workers.curation.types import TOO_FEW_TURNS, Candidate, Rejection
from workers.methods.base import ExampleOut, MethodContext, TaskInput, TaskOutcome
from workers.methods.common import (
    TEACHER_REFUSED,
    answer_messages,
    curate_answer,
    filter_config,
    job_benchmarks,
    retry_followup,
    sampling_from,
    soft_targets_of,
    to_retry,
    usage_totals,
)
from workers.prompts import render, skill_system_prompt
from workers.teachers.base import (
    Generation,
    SamplingParams,
    TeacherBadResponse,
    TeacherError,
    TeacherRequest,
    TeacherResult,
)

PROMPT_ID = "dialogue"
PROMPT_VERSION = "v1"
DEFAULT_PERSONA = (
    "a curious learner who wants to understand the subject well and asks follow-up questions"
)
CANCEL_CHECK_SECONDS = 1.0  # conversations share one cancel check at most this often
_SEED_STRIDE = 100  # seed offsets: conversation n * stride + 2 * turn + role (turns <= 20)


@dataclass
class _Failure:
    """The turn that ended a conversation: its number, whose it was, why, and what was said."""

    turn: int
    role: str
    rejection: Rejection
    text: str | None


@dataclass
class _Conversation:
    index: int  # its place in the task's payload (item index)
    item: dict[str, Any]
    opening: str | None  # the first user turn (a dataset prompt), None for a taxonomy leaf
    messages: list[dict[str, str]] = field(default_factory=list)
    good: int = 0  # assistant turns kept
    failure: _Failure | None = None
    retry: TeacherError | None = None  # a teacher call failed (retryable): redone from the start
    last_assistant_raw: str | None = None
    targets: Any = None  # soft targets of the last kept assistant turn (top_logprobs)
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def n(self) -> int:
        return int(self.item.get("n", 0))


class _CancelGuard:
    """One ``check_cancel`` for all conversations of a task, at most every few seconds."""

    def __init__(self, ctx: MethodContext, every: float = CANCEL_CHECK_SECONDS) -> None:
        self._ctx = ctx
        self._every = every
        self._last = time.monotonic()
        self._lock = asyncio.Lock()

    async def __call__(self) -> None:
        if time.monotonic() - self._last < self._every:
            return
        async with self._lock:
            if time.monotonic() - self._last < self._every:
                return
            await self._ctx.check_cancel()  # raises JobCancelled
            self._last = time.monotonic()


class _Dialogues:
    """The conversations of one task and what they share: prompts, sampling, curation."""

    def __init__(
        self,
        task: TaskInput,
        ctx: MethodContext,
        config: FilterConfig,
        guard: _CancelGuard,
    ) -> None:
        params = task.params
        self.task = task
        self.ctx = ctx
        self.config = config
        self.guard = guard
        self.turns = int(params.get("turns", 4))
        self.filters = params.get("filters")
        self.persona = params.get("persona") or DEFAULT_PERSONA
        self.system = skill_system_prompt(task.skill)
        self.skill = task.skill or {}
        self.top_logprobs = task.teacher.get("top_logprobs")
        self.results: list[TeacherResult] = []
        self._user_systems: dict[str, str] = {}

    def user_system(self, topic: str) -> str:
        """The simulator's system prompt for a conversation about `topic` ("" for none)."""
        if topic not in self._user_systems:
            self._user_systems[topic] = render(
                "dialogue/user", PROMPT_VERSION, persona=self.persona, skill=self.skill, topic=topic
            )
        return self._user_systems[topic]

    def sampling(self, conv: _Conversation, turn: int = 0, role: int = 0) -> SamplingParams:
        """The job's sampling, seeded (when it has a seed) by conversation, turn and role."""
        offset = conv.n * _SEED_STRIDE + 2 * turn + role
        return sampling_from(self.task.teacher, seed_offset=offset)

    async def converse(self, conv: _Conversation) -> None:
        """Run one conversation until `turns` assistant turns, a failed turn or a teacher
        failure; what happened is left on `conv`."""
        if conv.opening is not None:
            conv.messages.append({"role": "user", "content": conv.opening})
        elif not await self.user_turn(conv, 1):
            return
        for turn in range(1, self.turns + 1):
            if turn > 1 and not await self.user_turn(conv, turn):
                return
            if not await self.assistant_turn(conv, turn):
                return

    async def user_turn(self, conv: _Conversation, turn: int) -> bool:
        """The simulator's turn `turn`; False when the conversation ends here."""
        item = conv.item
        names = item["topic"].split("/") if item.get("topic") else None
        system = self.user_system(" / ".join(names) if names else "")
        if not conv.messages:
            ask = render(
                "dialogue/opening",
                PROMPT_VERSION,
                names=names or [],
                description=item.get("description") or "",
            )
        else:
            ask = render(
                "dialogue/next", PROMPT_VERSION, messages=conv.messages, turn=turn, turns=self.turns
            )
        request = TeacherRequest(
            messages=[{"role": "system", "content": system}, {"role": "user", "content": ask}],
            sampling=self.sampling(conv, turn, 0),
            request_id=f"{self.task.task_id}:{conv.index}:{turn}:user",
        )
        generation = await self.call(conv, turn, "user", request)
        if generation is None:
            return False
        text = generation.text.strip()
        previous = {m["role"]: m["content"] for m in conv.messages}  # the last of each role
        rejection = check_user_turn(
            text,
            previous_assistant=previous.get("assistant"),
            previous_user=previous.get("user"),
            finish_reason=generation.finish_reason,
        )
        if rejection is not None:
            conv.failure = _Failure(turn, "user", rejection, text)
            return False
        conv.messages.append({"role": "user", "content": text})
        return True

    async def assistant_turn(self, conv: _Conversation, turn: int) -> bool:
        """The teacher's answer to the last user turn; False when the conversation ends here."""
        request = TeacherRequest(
            messages=answer_messages(self.system, "", "", conv.messages),
            sampling=self.sampling(conv, turn, 1),
            top_logprobs=self.top_logprobs,
            request_id=f"{self.task.task_id}:{conv.index}:{turn}:assistant",
        )
        generation = await self.call(conv, turn, "assistant", request)
        if generation is None:
            return False
        text = generation.text
        question = conv.messages[-1]["content"]
        candidate = Candidate(question, "", text, raw=text, finish_reason=generation.finish_reason)
        rejection = curate_answer(candidate, self.filters, self.config)
        if rejection is not None:
            conv.failure = _Failure(turn, "assistant", rejection, text)
            return False
        conv.messages.append({"role": "assistant", "content": text})
        conv.good += 1
        conv.last_assistant_raw = text
        if generation.logprobs is not None:  # white-box: the final answer's distributions
            conv.targets = soft_targets_of(generation.logprobs, "generation")
        return True

    async def call(
        self, conv: _Conversation, turn: int, role: str, request: TeacherRequest
    ) -> Generation | None:
        """One teacher call; None when the conversation ends (a retryable failure marks it
        for a redo, a refusal is a failed turn; other final errors raise)."""
        await self.guard()
        [result] = await self.ctx.teacher.generate([request])
        self.results.append(result)
        conv.prompt_tokens += result.usage.prompt_tokens
        conv.completion_tokens += result.usage.completion_tokens
        if to_retry([result]):  # raises a final error that is not about this request
            conv.retry = result.error or TeacherBadResponse("no generation returned")
            return None
        if result.error is not None:  # refused for good, for this request alone
            detail = f"{type(result.error).__name__}: {result.error.message}"
            conv.failure = _Failure(turn, role, Rejection(TEACHER_REFUSED, detail), None)
            return None
        return result.generations[0]

    def example(self, conv: _Conversation) -> ExampleOut:
        """The stored form of a finished conversation (accepted, cut, or rejected)."""
        params = self.task.params
        failure = conv.failure
        kept = list(conv.messages)
        while kept and kept[-1]["role"] == "user":  # a cut ends at the last good answer
            kept.pop()
        meta: dict[str, Any] = {
            "turns": conv.good,
            "opening_id": conv.item.get("opening_id"),
            "persona": params.get("persona"),
            "truncated_at": None,
        }
        status, reason, detail = "accepted", None, None
        messages = kept
        raw = conv.last_assistant_raw
        if failure is not None:
            said = f"turn {failure.turn} ({failure.role}): {failure.rejection.reason}"
            if failure.rejection.detail:
                said += f": {failure.rejection.detail}"
            full = list(conv.messages)
            if failure.text is not None:
                full.append({"role": failure.role, "content": failure.text})
            if params.get("on_failure") == "reject":
                status, reason, detail, messages = "rejected", failure.rejection.reason, said, full
            elif conv.good < int(params.get("min_turns", 1)):
                status, reason, messages = "rejected", TOO_FEW_TURNS, full
                detail = f"{conv.good} good assistant turns < min_turns; {said}"
            if status == "rejected" and failure.text is not None:
                raw = failure.text  # what failed (a cut conversation keeps it in cut_turn)
            else:
                meta.update(
                    truncated_at=failure.turn,
                    cut_reason=failure.rejection.reason,
                    cut_detail=failure.rejection.detail,
                    cut_turn=None if failure.text is None else full[-1],
                )
        first_user = next((m["content"] for m in messages if m["role"] == "user"), None)
        output = (
            messages[-1]["content"] if messages and messages[-1]["role"] == "assistant" else None
        )
        return ExampleOut(
            item_index=conv.index,
            instruction=first_user or conv.opening or conv.item.get("topic") or "",
            output=output,
            status=status,  # type: ignore[arg-type]
            reject_reason=reason,
            reject_detail=detail,
            messages=messages or None,
            meta=meta,
            raw_output=raw,
            usage={
                "prompt_tokens": conv.prompt_tokens,
                "completion_tokens": conv.completion_tokens,
            },
            sampling=self.sampling(conv).as_dict(),
            prompt_id=PROMPT_ID,
            prompt_version=PROMPT_VERSION,
            soft_targets=conv.targets if status == "accepted" else None,
            topic=conv.item.get("topic"),
        )


async def run(task: TaskInput, ctx: MethodContext) -> TaskOutcome:
    items: list[dict[str, Any]] = list(task.payload["conversations"])
    ids = list(dict.fromkeys(str(i["opening_id"]) for i in items if i.get("opening_id")))
    rows = {row["id"]: row for row in await ctx.fetch_examples(ids)} if ids else {}
    openings = {
        rid: render("labeling", "v1", instruction=row["instruction"], input=row["input"])
        for rid, row in rows.items()
    }
    config = await asyncio.to_thread(filter_config, task.params, list(openings.values()))
    conversations: list[_Conversation] = []
    missing = 0
    for index, item in enumerate(items):
        opening_id = item.get("opening_id")
        if opening_id is not None and str(opening_id) not in openings:
            missing += 1  # the prompt is gone from the dataset: nothing to open with
            continue
        opening = openings[str(opening_id)] if opening_id is not None else None
        conversations.append(_Conversation(index=index, item=item, opening=opening))
    await ctx.check_cancel()
    dialogues = _Dialogues(task, ctx, config, _CancelGuard(ctx))
    running = [asyncio.ensure_future(dialogues.converse(c)) for c in conversations]
    try:
        await asyncio.gather(*running)
    except BaseException:  # a cancel, a final teacher error, a lost lease: stop them all
        for future in running:
            future.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        raise
    await ctx.check_cancel()
    again = [c for c in conversations if c.retry is not None]
    done = [c for c in conversations if c.retry is None]
    examples = [dialogues.example(c) for c in done]
    benchmarks = await job_benchmarks(task, ctx)
    await asyncio.to_thread(reject_contaminated_turns, examples, benchmarks)
    followups = []
    if again:
        retry = retry_followup(task.payload, len(again), again[0].retry)
        followups.append({"conversations": [c.item for c in again], "retry": retry})
    prompt_tokens, completion_tokens, teacher_seconds = usage_totals(dialogues.results)
    failed = sum(1 for e in examples if e.reject_reason == TEACHER_REFUSED)
    accepted = [e for e in examples if e.status == "accepted"]
    return TaskOutcome(
        examples=examples,
        completed=len(examples) - failed,
        failed=failed + missing,
        followups=followups,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        teacher_seconds=teacher_seconds,
        summary={
            "conversations": len(items),
            "missing": missing,
            "retried": len(again),
            "accepted": len(accepted),
            "truncated": sum(1 for e in accepted if e.meta.get("truncated_at")),
            "teacher_calls": len(dialogues.results),
            "languages": list(config.languages or ()),
        },
        system_prompt=dialogues.system,
    )


def reject_contaminated_turns(
    examples: list[ExampleOut], index: decontamination.Index | None
) -> None:
    """Reject as `contaminated` every accepted conversation one of whose turns (a user turn with
    the answer to it) matches an item of the job's benchmarks; the detail names the turn."""
    if index is None:
        return
    for example in examples:
        if example.status != "accepted" or not example.messages:
            continue
        turns = example.messages
        for number, start in enumerate(range(0, len(turns) - 1, 2), 1):
            user, answer = turns[start]["content"], turns[start + 1]["content"]
            rejection = decontamination.check_candidate(Candidate(user, "", answer), index)
            if rejection is not None:
                example.status = "rejected"
                example.reject_reason = rejection.reason
                example.reject_detail = f"turn {number}: {rejection.detail}"
                break
