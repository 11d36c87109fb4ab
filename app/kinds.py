"""The catalog of job kinds: name -> params model, plus the teacher spec a job asks for.

Pure data, so `POST /v1/jobs` validates without importing `workers` (app.schemas builds one
request model per kind from these); `workers.methods` must name the same kinds (a test checks
the parity).
"""

from __future__ import annotations

import types
import typing
import uuid
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    WithJsonSchema,
    model_validator,
)

# curation steps a job may name (workers.curation.filters.FILTERS; a test checks the parity)
FilterName = Literal[
    "not_empty", "not_truncated", "length", "starts_with_text", "blocklist", "non_text",
    "language", "refusal", "output_repeats_input",
]  # fmt: skip

# ISO 639-1 codes the `language` filter can tell apart (workers.curation.language; a test checks)
LANGUAGE_CODES = frozenset((
    "af", "am", "an", "ar", "as", "az", "ba", "be", "bg", "bn", "br", "bs", "ca", "cs", "cy", "da",
    "de", "dz", "el", "en", "eo", "es", "et", "eu", "fa", "fi", "fo", "fr", "fy", "ga", "gd", "gl",
    "gu", "ha", "he", "hi", "hr", "ht", "hu", "hy", "id", "ig", "is", "it", "ja", "jv", "ka", "kk",
    "km", "kn", "ko", "ku", "ky", "la", "lb", "lg", "ln", "lo", "lt", "lv", "mg", "mk", "ml", "mn",
    "mr", "ms", "mt", "my", "ne", "nl", "nn", "no", "oc", "om", "or", "pa", "pl", "ps", "pt", "qu",
    "ro", "ru", "rw", "sa", "se", "si", "sk", "sl", "sn", "so", "sq", "sr", "st", "sv", "sw", "ta",
    "te", "tg", "th", "tk", "tl", "tr", "tt", "ug", "uk", "ur", "uz", "vi", "vo", "wa", "xh", "yo",
    "zh", "zu"
))  # fmt: skip


def _language_code(code: str) -> str:
    if code not in LANGUAGE_CODES:
        raise ValueError(f"unknown language code {code!r}: use ISO 639-1, e.g. 'en', 'de'")
    return code


# the schema lists the codes too, so clients (and fuzzers) see what is accepted
LanguageCode = Annotated[
    str,
    AfterValidator(_language_code),
    WithJsonSchema({"type": "string", "enum": sorted(LANGUAGE_CODES)}),
]
LANGUAGES = (
    "ISO 639-1 codes the instructions and answers must be in (`language` filter, reason "
    "`wrong_language`); default: the dominant language of the dataset's seeds"
)


# JSON has no UUID type: ids come as strings, which strict mode alone would refuse
Id = Annotated[uuid.UUID, Strict(False)]


def integral(value: Any) -> Any:
    """5.0 -> 5 (an integer to JSON Schema); anything else as it is, for strict validation."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _is_int(annotation: Any) -> bool:
    """`int` or `int | None`."""
    if annotation is int:
        return True
    args = typing.get_args(annotation)
    return (
        typing.get_origin(annotation) in (typing.Union, types.UnionType)
        and int in args
        and set(args) <= {int, type(None)}
    )


DECONTAMINATE = (
    "benchmark ids: candidates matching their items are rejected `contaminated`; the tenant's "
    "default benchmarks are added, and the list is stored on the job"
)


class _Params(BaseModel):
    """Strictly typed: `"relabel": "yes"`, `"target": "100"` or `"target": true` are 422, never
    coerced (a typo must not relabel a dataset). As JSON Schema has it, floats take integers and
    integers take 5.0 (not 5.5); use :data:`Id` for UUIDs (strings in JSON)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _integral_floats(cls, data: Any) -> Any:
        if isinstance(data, dict):
            ints = {n for n, f in cls.model_fields.items() if _is_int(f.annotation)}
            fix = {
                k: int(v)
                for k, v in data.items()
                if k in ints and isinstance(v, float) and v.is_integer()
            }
            if fix:
                data = {**data, **fix}
        return data


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
        None,
        ge=0,
        le=100,
        description="store the teacher's top-k token logprobs with token ids at every generated "
        "position (soft targets, `format=kd` export); vLLM serves up to its `--max-logprobs` "
        "(default 20), OpenAI's API up to 20",
    )


UF_ASPECTS = ("helpfulness", "honesty", "instruction_following", "truthfulness")
"""UltraFeedback's aspects: what a judge scores when neither the job nor the skill names any."""


class JudgeSpec(_Params):
    """The teacher as a quality filter of answers: each accepted answer is scored 1-10 per
    aspect (pointwise); one whose overall score (the mean) is below `min_score` is rejected
    `low_score`, its judgment kept in `scores`."""

    min_score: float = Field(
        ..., ge=1, le=10, description="the bar an answer's overall score must reach"
    )
    rubric: str | None = Field(
        None, max_length=20_000, description="what a good answer is (default: the skill's rubric)"
    )
    aspects: list[str] | None = Field(
        None,
        min_length=1,
        max_length=10,
        description="aspects scored 1-10 (default: the rubric as one aspect, else UltraFeedback's)",
    )


JUDGE = "judge the answers and reject those below `min_score` (`low_score`)"
RATIONALE = (
    "ask the teacher for its reasoning and its final answer as separate fields; both are stored "
    "(exports place the reasoning with `rationale=think|field`)"
)
EVOL_OPERATIONS = (
    "add_constraints", "deepen", "concretize", "increase_reasoning", "complicate_input", "breadth",
)  # fmt: skip
EvolOperation = Literal[
    "add_constraints", "deepen", "concretize", "increase_reasoning", "complicate_input", "breadth",
]  # fmt: skip


class LabelingParams(_Params):
    """The teacher answers every prompt of the dataset that has no answer yet (one answer per
    prompt: a seed's own output or an accepted labeled example)."""

    relabel: bool = Field(
        False, description="answer every prompt again; the new answer replaces the current one"
    )
    example_ids: list[Id] | None = Field(
        None,
        max_length=100_000,
        description="only these prompts (default: all eligible); an answer's id means its prompt",
    )
    chunk_size: int | None = Field(None, ge=1, le=10_000, description="prompts per task")
    filters: list[FilterName] | None = Field(None, description="curation steps for answers")
    languages: list[LanguageCode] | None = Field(
        None, min_length=1, max_length=20, description=LANGUAGES
    )
    decontaminate: list[Id] = Field(default_factory=list, max_length=100, description=DECONTAMINATE)
    judge: JudgeSpec | None = Field(None, description=JUDGE)
    rationale: bool = Field(False, description=RATIONALE)


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
    languages: list[LanguageCode] | None = Field(
        None, min_length=1, max_length=20, description=LANGUAGES
    )
    answer_filters: list[FilterName] | None = Field(None, description="curation steps for answers")
    decontaminate: list[Id] = Field(default_factory=list, max_length=100, description=DECONTAMINATE)
    judge: JudgeSpec | None = Field(None, description=JUDGE)
    rationale: bool = Field(False, description=RATIONALE)


class ScoringParams(_Params):
    """Teacher-forced scoring: the teacher's logprob of every response token of the dataset's
    examples (typically a student's samples uploaded as examples) and its top-k there, tokenized
    with the teacher's tokenizer and chat template. Exported by `format=kd`."""

    top_logprobs: int = Field(20, ge=1, le=100, description="alternatives kept per position (k)")
    example_ids: list[Id] | None = Field(
        None,
        max_length=100_000,
        description="only these examples (default: every accepted example with a response)",
    )
    rescore: bool = Field(
        False, description="score examples that have soft targets again (replacing them)"
    )
    chunk_size: int | None = Field(None, ge=1, le=10_000, description="examples per task")


class FeedbackParams(_Params):
    """The teacher as judge: per prompt, gather candidate responses (teacher samples, the
    responses already in the dataset, or both), judge them, keep preference pairs."""

    example_ids: list[Id] | None = Field(
        None,
        max_length=100_000,
        description="only the prompts of these examples (default: every prompt of the dataset)",
    )
    origin: Literal["seed", "generated"] | None = Field(
        None, description="only prompts of seed examples, or of generated ones"
    )
    samples: int = Field(
        2, ge=0, le=16, description="teacher samples per prompt (stored as `candidate` examples)"
    )
    temperatures: list[float] | None = Field(
        None,
        min_length=1,
        max_length=16,
        description="sampling temperatures, cycled over the samples (default: the teacher's)",
    )
    existing: bool = Field(
        True, description="judge the responses the dataset already holds for each prompt too"
    )
    mode: Literal["pointwise", "pairwise"] = Field(
        "pointwise",
        description="pointwise: each response scored 1-10 per aspect; pairwise: A vs B, asked "
        "in both orders, counted only when they agree",
    )
    rubric: str | None = Field(
        None, max_length=20_000, description="what a good answer is (default: the skill's rubric)"
    )
    aspects: list[str] | None = Field(
        None,
        min_length=1,
        max_length=10,
        description="aspects scored 1-10 (default: the rubric as one aspect, else UltraFeedback's)",
    )
    pairs: Literal["best_worst", "all"] = Field(
        "best_worst",
        description="one pair per prompt (best vs worst), or every pair over the margin",
    )
    min_margin: float = Field(
        1.0,
        ge=0,
        le=9,
        description="smallest score difference (pointwise, 1-10 scale) or win-rate difference "
        "x 10 (pairwise) a pair needs; ties never make a pair",
    )
    filters: list[FilterName] | None = Field(None, description="curation steps for the samples")
    chunk_size: int | None = Field(None, ge=1, le=1000, description="prompts per task")
    decontaminate: list[Id] = Field(default_factory=list, max_length=100, description=DECONTAMINATE)


class EvolParams(_Params):
    """Evol-Instruct (WizardLM): evolve the dataset's instructions over `generations` rounds,
    in depth (constraints, deepening, concretising, more reasoning steps, a harder input) or in
    breadth (a new instruction of the same domain); failed evolutions are eliminated and the
    lineage goes on from the last good one."""

    generations: int = Field(3, ge=1, le=10, description="evolution rounds per instruction")
    operations: list[EvolOperation] | None = Field(
        None,
        min_length=1,
        description="operations drawn from, uniformly per evolution (default: all six)",
    )
    example_ids: list[Id] | None = Field(
        None,
        max_length=100_000,
        description="the instructions to evolve (default: every accepted root example)",
    )
    answer: bool = Field(True, description="have the teacher answer each evolved instruction")
    equality_check: bool = Field(
        True,
        description="ask the teacher whether each evolution equals its parent (WizardLM's "
        "elimination; `evol_no_new_information`); false: the word-overlap check alone",
    )
    similarity_threshold: float = Field(0.7, gt=0, le=1, description="ROUGE-L near-dup cut")
    filters: list[FilterName] | None = Field(None, description="curation steps for evolutions")
    answer_filters: list[FilterName] | None = Field(None, description="curation steps for answers")
    languages: list[LanguageCode] | None = Field(
        None, min_length=1, max_length=20, description=LANGUAGES
    )
    chunk_size: int | None = Field(None, ge=1, le=10_000, description="lineages per task")
    decontaminate: list[Id] = Field(default_factory=list, max_length=100, description=DECONTAMINATE)
    rationale: bool = Field(False, description=RATIONALE)


class DialogueParams(_Params):
    """Multi-turn conversations (UltraChat): a user simulator and the teacher as the assistant
    alternate for `turns` turns, from each seed instruction (or taxonomy leaf)."""

    turns: int = Field(4, ge=1, le=20, description="assistant turns per conversation")
    conversations_per_prompt: int = Field(1, ge=1, le=100)
    example_ids: list[Id] | None = Field(
        None,
        max_length=100_000,
        description="the opening instructions (default: every prompt of the dataset, i.e. root "
        "example, that is not rejected and that no dialogue job wrote)",
    )
    from_taxonomy: bool = Field(
        False, description="open from the skill's taxonomy leaves instead of the dataset's examples"
    )
    on_failure: Literal["truncate", "reject"] = Field(
        "truncate",
        description="a turn that fails curation ends the conversation at the last good turn "
        "(truncate), or rejects the whole conversation",
    )
    min_turns: int = Field(1, ge=1, le=20, description="fewer good assistant turns: rejected")
    persona: str | None = Field(
        None, max_length=2000, description="who the simulated user is (default: a curious learner)"
    )
    filters: list[FilterName] | None = Field(None, description="curation steps for each turn")
    languages: list[LanguageCode] | None = Field(
        None, min_length=1, max_length=20, description=LANGUAGES
    )
    chunk_size: int | None = Field(None, ge=1, le=10_000, description="conversations per task")
    decontaminate: list[Id] = Field(default_factory=list, max_length=100, description=DECONTAMINATE)


class CurationParams(_Params):
    """Taxonomy-driven generation: per leaf of the skill's taxonomy (topics -> subtopics), new
    instructions until each leaf's quota is met or its budget is spent; dedup is dataset-wide."""

    quota_per_leaf: int = Field(
        20, ge=1, le=100_000, description="accepted examples per leaf (a leaf's own quota wins)"
    )
    propose: bool = Field(
        False,
        description="the teacher proposes the taxonomy first (when the skill has none) and stores "
        "it on the skill",
    )
    review: bool = Field(
        False,
        description="with propose: stop after proposing, so the taxonomy can be edited "
        "(PATCH /v1/skills/{id}) before a second job generates",
    )
    topics: int = Field(8, ge=1, le=100, description="propose: topics")
    subtopics: int = Field(4, ge=1, le=100, description="propose: subtopics per topic")
    calls_per_leaf: int = Field(
        4, ge=1, le=1000, description="teacher calls per leaf and round (candidates_per_call each)"
    )
    candidates_per_call: int = Field(10, ge=1, le=100)
    max_rounds_per_leaf: int = Field(20, ge=1, le=10_000, description="a leaf's budget")
    similarity_threshold: float = Field(0.7, gt=0, le=1, description="ROUGE-L near-dup cut")
    filters: list[FilterName] | None = Field(None, description="curation steps for new tasks")
    answer_filters: list[FilterName] | None = Field(None, description="curation steps for answers")
    languages: list[LanguageCode] | None = Field(
        None, min_length=1, max_length=20, description=LANGUAGES
    )
    decontaminate: list[Id] = Field(default_factory=list, max_length=100, description=DECONTAMINATE)
    rationale: bool = Field(False, description=RATIONALE)


KINDS: dict[str, type[_Params]] = {
    "labeling": LabelingParams,
    "expansion": ExpansionParams,
    "scoring": ScoringParams,
    "feedback": FeedbackParams,
    "evol": EvolParams,
    "dialogue": DialogueParams,
    "curation": CurationParams,
}
