"""workers.methods.judging as plain functions: criteria, validation of judgments, order-swap
agreement, win rates and preference pairs; the re-ask loop with a scripted judge."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from app.kinds import UF_ASPECTS
from tests.judge_teacher import JudgeTeacher
from tests.scripted_teacher import ScriptedTeacher
from workers.methods import judging
from workers.teachers.base import SamplingParams, TeacherRejected, TeacherUnavailable


def test_criteria_defaults_rubric_and_named_aspects() -> None:
    assert judging.criteria({}, None) == judging.Criteria(UF_ASPECTS, None)
    assert judging.criteria({}, {"rubric": " cite sources "}) == judging.Criteria(
        ("rubric",), "cite sources"
    )
    job_rubric = judging.criteria({"rubric": "be short"}, {"rubric": "cite sources"})
    assert job_rubric.rubric == "be short"
    named = judging.criteria({"aspects": ["Clarity", " clarity ", "code-style", " "]}, None)
    assert named.aspects == ("Clarity", "code-style")


def judgment(**aspects: Any) -> str:
    return orjson.dumps({a: {"rationale": "why", "score": s} for a, s in aspects.items()}).decode()


def test_pointwise_judgments_are_validated() -> None:
    aspects = ("helpfulness", "honesty")
    value, problem = judging.parse_pointwise(judgment(helpfulness=7, honesty=4), aspects)
    assert problem is None and value is not None
    assert value.overall == 5.5 and value.aspects["honesty"] == (4, "why")
    # keys matched as names are (case, spaces, '-' and '_'), fenced JSON read, 8.0 is 8
    fenced = '```json\n{"Helpfulness": {"rationale": "r", "score": 8.0}, "HONESTY ": ' + (
        '{"rationale": "r", "score": 10}}\n```'
    )
    value, _ = judging.parse_pointwise(fenced, aspects)
    assert value is not None and value.overall == 9
    for bad, why in [
        (judgment(helpfulness=7), "'honesty' missing"),
        (judgment(helpfulness=7, honesty=11), "less than or equal to 10"),
        (judgment(helpfulness=0, honesty=5), "greater than or equal to 1"),
        (judgment(helpfulness="7", honesty=5), "valid integer"),
        (judgment(helpfulness=7.5, honesty=5), "valid integer"),
        (judgment(helpfulness=True, honesty=5), "valid integer"),
        ('{"helpfulness": 7, "honesty": 5}', "valid dictionary"),
        ('{"helpfulness": {"score": 7}, "honesty": {"score": 5, "rationale": ""}}', "rationale"),
        ("The answer is good. 8/10", "no JSON object"),
        ("[1, 2]", "no JSON object"),
    ]:
        value, problem = judging.parse_pointwise(bad, aspects)
        assert value is None and problem is not None and why in problem, (bad, problem)


def test_pairwise_verdicts_are_validated() -> None:
    value, _ = judging.parse_pairwise('{"rationale": "A is right", "verdict": "a"}')
    assert value is not None and value.verdict == "A"
    value, _ = judging.parse_pairwise('{"rationale": "same", "verdict": " Tie "}')
    assert value is not None and value.verdict == "tie"
    for bad in ['{"rationale": "x", "verdict": "C"}', '{"verdict": "A"}', "A is better", '"A"']:
        value, problem = judging.parse_pairwise(bad)
        assert value is None and problem


def test_order_swap_agreement() -> None:
    # x shown as A, then as B: a verdict counts only when both orders name the same response
    assert judging.agreed("A", "B") == "A"
    assert judging.agreed("B", "A") == "B"
    assert judging.agreed("tie", "tie") == "tie"
    assert judging.agreed("A", "A") is None  # position bias: A wins whatever A is
    assert judging.agreed("B", "B") is None
    assert judging.agreed("A", "tie") is None


def test_tally_counts_ties_as_half() -> None:
    records = judging.tally(3, {(0, 1): "A", (0, 2): "tie", (1, 2): "B"})
    assert [(r.wins, r.losses, r.ties) for r in records] == [(1, 0, 1), (0, 2, 0), (1, 0, 1)]
    assert [r.win_rate for r in records] == [0.75, 0.0, 0.75]
    assert [r.overall for r in records] == [7.5, 0.0, 7.5]
    assert judging.Record().win_rate is None and judging.Record().overall is None


def picks(overall: list[float | None], how: str = "best_worst", margin: float = 1.0) -> list:
    return [
        (p.chosen, p.rejected, p.margin)
        for p in judging.pick_pairs(overall, how, margin)  # type: ignore[arg-type]
    ]


def test_pair_construction() -> None:
    assert picks([6.0, 9.0, 3.5, None]) == [(1, 2, 5.5)]
    # equal scores: the earliest is the best, the latest the worst
    assert picks([9.0, 3.0, 9.0, 3.0]) == [(0, 3, 6.0)]
    # ties and margins below min_margin make no pair; one judged response makes none
    assert picks([7.0, 7.0]) == []
    assert picks([7.0, 6.5]) == []
    assert picks([7.0, 6.5], margin=0.5) == [(0, 1, 0.5)]
    assert picks([7.0, 7.0], margin=0) == []
    assert picks([7.0, None]) == []
    # all: every pair over the margin, best first
    assert picks([5.0, 9.0, 2.0, 8.5], how="all", margin=1.0) == [
        (1, 0, 4.0),
        (1, 2, 7.0),
        (3, 0, 3.5),
        (3, 2, 6.5),
        (0, 2, 3.0),
    ]
    # a pair whose direct comparison the judge agreed the other way is not made
    vetoed = judging.pick_pairs([9.0, 2.0], "best_worst", 1.0, lambda c, r: (c, r) == (0, 1))
    assert vetoed == []


def test_judge_requests_carry_schema_prompt_and_greedy_sampling() -> None:
    rules = judging.criteria({"rubric": "Answer in French."}, None)
    sampling = judging.judge_sampling({"temperature": 1.2, "max_tokens": 300, "seed": 4})
    assert (sampling.temperature, sampling.max_tokens, sampling.seed) == (0.0, 300, 4)
    request = judging.pointwise_request(
        judging.prompt_turns("Say hi {{ 7*7 }}", "to Bob"),
        "Salut Bob",
        rules,
        {"name": "greetings"},
        sampling,
        "r1",
    )
    user = request.messages[-1]["content"]
    assert "USER: Say hi {{ 7*7 }}\n\nto Bob" in user  # data, never template code
    assert "Salut Bob" in user and "Answer in French." in user and '"greetings"' in user
    assert request.json_schema == judging.pointwise_schema(("rubric",))
    pair = judging.pairwise_request([{"role": "user", "content": "Q"}], "one", "two", rules, None,
                                    sampling, "r2")  # fmt: skip
    text = pair.messages[-1]["content"]
    assert text.index("one") < text.index("two") and pair.json_schema == judging.PAIRWISE_SCHEMA
    again = judging.reask(request, 1)
    assert again.sampling.temperature == judging.REASK_TEMPERATURE and again.sampling.seed == 5


class Ctx:
    def __init__(self, teacher: Any) -> None:
        self.teacher = teacher

    async def check_cancel(self) -> None:
        return None


def requests(texts: list[str]) -> list:
    rules = judging.criteria({}, None)
    sampling = SamplingParams(temperature=0.0)
    turns = [{"role": "user", "content": "Q"}]
    return [judging.pointwise_request(turns, t, rules, None, sampling, t) for t in texts]


def parse(text: str) -> tuple[Any, str | None]:
    return judging.parse_pointwise(text, UF_ASPECTS)


def test_invalid_judgments_are_asked_again_then_counted_failed() -> None:
    bad = {"fine [q=8]": 2, "broken [q=3]": -1, "ok [q=6]": 0}
    teacher = JudgeTeacher(ScriptedTeacher(), garbage=lambda text: bad[text])
    asked, spent = asyncio.run(
        judging.ask(Ctx(teacher), requests(list(bad)), [parse] * 3)
    )  # fmt: skip
    fine, broken, ok = asked
    assert fine.value is not None and fine.value.overall == 8 and fine.asks == 3
    assert broken.value is None and broken.failed and broken.asks == judging.MAX_ASKS
    assert broken.problem  # why the last answer was refused
    assert ok.value is not None and ok.asks == 1
    assert len(spent) == 3 + 2 + 2 == len(teacher.judge_requests)
    # the first ask is greedy, the re-asks sampled
    temperatures = [r.sampling.temperature for r in teacher.judge_requests]
    assert temperatures[:3] == [0.0] * 3 and set(temperatures[3:]) == {judging.REASK_TEMPERATURE}


def test_teacher_failures_are_not_judgments() -> None:
    def fail(request: Any) -> Any:
        text = request.messages[-1]["content"]
        if "down" in text:
            return TeacherUnavailable("503")
        if "long" in text:
            return TeacherRejected("too long", status=400)
        return None

    teacher = JudgeTeacher(ScriptedTeacher(), fail_when=fail)
    asked, _ = asyncio.run(judging.ask(Ctx(teacher), requests(["down", "long", "up"]), [parse] * 3))
    down, long, up = asked
    assert down.retry is not None and not down.failed and down.asks == 1  # asked again later
    assert long.failed and "refused" in (long.problem or "") and long.asks == 1  # final
    assert up.value is not None
    wrong_key = JudgeTeacher(
        ScriptedTeacher(), fail_when=lambda r: TeacherRejected("key", status=401)
    )
    with pytest.raises(TeacherRejected):
        asyncio.run(judging.ask(Ctx(wrong_key), requests(["x"]), [parse]))
