"""Dataset cards: a Hugging Face README.md (YAML header + markdown) describing a dataset.

Everything on the card is read from what is stored: examples' provenance (teacher, method,
prompt version), jobs (kind, parameters, the frozen skill, the benchmarks they checked
against), rejected examples by reason, soft targets and preference pairs. The YAML header is
written by ``yaml.safe_dump`` (any dataset name is quoted safely); names in the markdown body
are flattened to one line.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import threading
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from jinja2 import StrictUndefined
from jinja2.sandbox import SandboxedEnvironment
from py3langid.langid import MODEL_FILE, LanguageIdentifier
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app import contamination, job_counters
from app.models import Benchmark, Dataset, Example, Job, PreferencePair, SoftTarget

MEDIA_TYPE = "text/markdown; charset=utf-8"
TEMPLATE = Path(__file__).parent / "templates" / "dataset_card.md.jinja"
LANGUAGE_SAMPLE = 400  # accepted examples read to detect the languages
LANGUAGE_MIN_SHARE = 0.1  # a language must hold this share of the sample to be listed
LANGUAGE_MIN_PROBABILITY = 0.5  # a text counts for its language when placed this surely
LANGUAGE_ALIASES = {"pcm": "en"}  # Nigerian Pidgin: py3langid's label for near-English
# Hugging Face's size buckets (`size_categories`), by the upper bound of each
SIZE_BUCKETS: tuple[tuple[int, str], ...] = (
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
    (100_000_000, "10M<n<100M"),
    (1_000_000_000, "100M<n<1B"),
    (10_000_000_000, "1B<n<10B"),
    (100_000_000_000, "10B<n<100B"),
    (1_000_000_000_000, "100B<n<1T"),
)
EXAMPLE_FORMATS = ("alpaca", "messages", "sharegpt", "prompt_completion")
PAIR_FORMATS = ("preference", "kto")
# job params shown elsewhere on the card (the skill) or too long to repeat
HIDDEN_PARAMS = ("skill_spec", "skill_from_dataset")


def size_category(n: int) -> str:
    """Hugging Face's `size_categories` bucket for `n` rows."""
    for bound, name in SIZE_BUCKETS:
        if n < bound:
            return name
    return "n>1T"


def yaml_header(data: dict[str, Any]) -> str:
    """`data` as a YAML block that reads back equal and holds no line a card parser could take
    for the header's end; non-ASCII text is escaped when written as is it would not be."""
    text: str = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=10_000)
    lines = re.split(r"\r\n|\r|\n", text)
    if yaml.safe_load(text) != data or any(line.startswith(("---", "...")) for line in lines):
        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=False, width=10_000)
    return text


def one_line(value: Any) -> str:
    """A value as one markdown-safe line: no newlines, no table pipes, no stray backticks."""
    text = " ".join(str(value).split())
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("`", "'").replace("<", "&lt;")


def fenced(text: str, lang: str = "") -> str:
    """`text` in a code fence longer than any run of backticks inside it."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{lang}\n{text}\n{fence}"


@dataclass
class JobCounts:
    accepted: int = 0
    rejected: int = 0
    pending: int = 0
    candidate: int = 0
    by_reason: Counter[str] = field(default_factory=Counter)

    @property
    def candidates(self) -> int:
        return self.accepted + self.rejected + self.pending + self.candidate


_LOCK = threading.Lock()


@functools.cache
def _identifier() -> LanguageIdentifier:
    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def detect_languages(texts: list[str]) -> list[str]:
    """Language codes (py3langid's, ISO 639-1 where one exists) holding at least
    LANGUAGE_MIN_SHARE of the texts placed with some confidence, most common first."""
    identify = _identifier()
    found: Counter[str] = Counter()
    for text in texts:
        if len(text.split()) < 4:  # too short to place
            continue
        with _LOCK:  # the identifier keeps per-call state
            lang, probability = identify.classify(text[:2000])
        if probability >= LANGUAGE_MIN_PROBABILITY:
            found[LANGUAGE_ALIASES.get(lang, lang)] += 1
    total = sum(found.values())
    return [lang for lang, n in found.most_common() if n / total >= LANGUAGE_MIN_SHARE]


async def _counts_by_job(
    session: AsyncSession, dataset_id: uuid.UUID
) -> dict[uuid.UUID | None, JobCounts]:
    rows = await session.execute(
        select(Example.job_id, Example.status, Example.reject_reason, func.count())
        .where(Example.dataset_id == dataset_id)
        .group_by(Example.job_id, Example.status, Example.reject_reason)
    )
    counts: dict[uuid.UUID | None, JobCounts] = defaultdict(JobCounts)
    for job_id, status, reason, n in rows:
        entry = counts[job_id]
        if status == "rejected":
            entry.rejected += n
            entry.by_reason[reason or "unknown"] += n
        elif status in ("accepted", "pending", "candidate"):
            setattr(entry, status, getattr(entry, status) + n)
    return counts


async def _provenance(session: AsyncSession, dataset_id: uuid.UUID) -> list[dict[str, Any]]:
    rows = await session.execute(
        select(
            Example.job_id,
            Example.teacher_backend,
            Example.teacher_model,
            Example.method,
            Example.prompt_id,
            Example.prompt_version,
            func.count(),
        )
        .where(Example.dataset_id == dataset_id, Example.teacher_model.is_not(None))
        .group_by(
            Example.job_id,
            Example.teacher_backend,
            Example.teacher_model,
            Example.method,
            Example.prompt_id,
            Example.prompt_version,
        )
    )
    return [
        {
            "job_id": r[0],
            "backend": r[1] or "unknown",
            "model": r[2],
            "method": r[3] or "",
            "prompt": f"{r[4]}@{r[5]}" if r[4] else "",
            "examples": r[6],
        }
        for r in rows
    ]


def _skill(job: Job) -> dict[str, str] | None:
    spec = job.params.get("skill_spec") or job.params.get("skill_from_dataset")
    if not isinstance(spec, dict):
        return None
    return {k: str(v) for k, v in spec.items() if k != "taxonomy" and v}


def _tokens(job: Job) -> int:
    return job.prompt_tokens + job.completion_tokens


async def build_card_context(
    *, session: AsyncSession, dataset: Dataset, base_url: str
) -> dict[str, Any]:
    """Everything the card says about `dataset`, as plain data."""
    jobs = (
        await session.scalars(
            select(Job).where(Job.dataset_id == dataset.id).order_by(Job.created_at, Job.id)
        )
    ).all()
    await job_counters.load(session, jobs)
    counts = await _counts_by_job(session, dataset.id)
    provenance = await _provenance(session, dataset.id)
    soft = (
        await session.execute(
            select(func.count(), func.max(SoftTarget.k), func.sum(SoftTarget.positions)).where(
                SoftTarget.dataset_id == dataset.id
            )
        )
    ).one()
    pairs = await session.scalar(
        select(func.count())
        .select_from(PreferencePair)
        .where(PreferencePair.dataset_id == dataset.id)
    )
    sample = (
        await session.execute(
            select(Example.instruction, Example.output)
            .where(Example.dataset_id == dataset.id, Example.status == "accepted")
            .order_by(Example.id)
            .limit(LANGUAGE_SAMPLE)
        )
    ).all()
    languages = await asyncio.to_thread(
        detect_languages, [f"{r.instruction}\n{r.output or ''}" for r in sample]
    )

    bench_ids = {b for job in jobs for b in job.params.get("decontaminate") or []}
    names: dict[str, str] = {}
    if bench_ids:
        found = await session.execute(
            select(Benchmark.id, Benchmark.name).where(
                Benchmark.tenant_id == dataset.tenant_id,
                Benchmark.id.in_([uuid.UUID(b) for b in bench_ids]),
            )
        )
        names = {str(i): n for i, n in found}

    total = JobCounts()
    for entry in counts.values():
        total.accepted += entry.accepted
        total.rejected += entry.rejected
        total.pending += entry.pending
        total.candidate += entry.candidate
        total.by_reason.update(entry.by_reason)

    job_rows = []
    for job in jobs:
        entry = counts.get(job.id, JobCounts())
        params = {k: v for k, v in job.params.items() if k not in HIDDEN_PARAMS}
        answered = sorted({(p["backend"], p["model"]) for p in provenance if p["job_id"] == job.id})
        job_rows.append(
            {
                "id": str(job.id),
                "kind": job.kind,
                "status": job.status,
                "stop_reason": job.stop_reason or "",
                "created_at": job.created_at.isoformat(),
                "teacher_model": job.teacher.get("model") or "any (the worker's)",
                "teachers": [f"{m} ({b})" for b, m in answered],
                "prompts": sorted(
                    {p["prompt"] for p in provenance if p["job_id"] == job.id and p["prompt"]}
                ),
                "sampling": {
                    k: v for k, v in job.teacher.items() if k != "model" and v is not None
                },
                "params": fenced(json.dumps(params, indent=2, sort_keys=True), "json"),
                "skill": _skill(job),
                "counts": entry,
                "tokens": _tokens(job),
                "benchmarks": [
                    names.get(b, f"{b} (deleted since)")
                    for b in job.params.get("decontaminate") or []
                ],
            }
        )

    teachers: dict[tuple[str, str], int] = Counter()
    for p in provenance:
        teachers[(p["model"], p["backend"])] += p["examples"]
    accepted = total.accepted
    url = f"{base_url.rstrip('/')}/v1/datasets/{dataset.id}/export"
    formats = list(EXAMPLE_FORMATS) if accepted else []
    if pairs:
        formats += PAIR_FORMATS
    if soft[0]:
        formats.append("kd")
    seeds = counts.get(None, JobCounts())
    kinds = {job.kind for job in jobs}
    tags = ["synthetic", "distillation", "distillery"]
    if pairs:
        tags.append("dpo")
    if soft[0]:
        tags.append("soft-targets")
    header: dict[str, Any] = {
        "pretty_name": dataset.name,
        "license": dataset.license or "unknown",
        "language": languages,
        "size_categories": [size_category(accepted)],
        "task_categories": ["text-generation"],
        "tags": tags,
    }
    if not languages:
        del header["language"]
    return {
        "header": yaml_header(header),
        "name": one_line(dataset.name),
        "description": dataset.description.strip(),
        "id": str(dataset.id),
        "accepted": accepted,
        "total": total,
        "seeds": seeds,
        "languages": languages,
        "jobs": job_rows,
        "kinds": sorted(kinds),
        "teachers": [
            {"model": m, "backend": b, "examples": n} for (m, b), n in sorted(teachers.items())
        ],
        "contaminated": total.by_reason.get("contaminated", 0),
        "decontaminated_jobs": [j for j in job_rows if j["benchmarks"]],
        "ngram": contamination.DEFAULT_N,
        "min_recall": contamination.Config().min_recall,
        "soft_targets": {"examples": soft[0], "k": soft[1] or 0, "positions": soft[2] or 0},
        "pairs": pairs or 0,
        "exports": [
            {
                "format": fmt,
                "url": f"{url}?format={fmt}",
                "file": f"{fmt}.jsonl",
                "loader": "json",
            }
            for fmt in formats
        ],
        "kd_parquet": f"{url}?format=kd&encoding=parquet" if soft[0] else None,
    }


def _environment() -> SandboxedEnvironment:
    env = SandboxedEnvironment(
        autoescape=False,  # markdown, not HTML; values are flattened with `one_line`
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["line"] = one_line
    env.filters["fenced"] = fenced
    return env


_TEMPLATE_SOURCE: str | None = None


def render_card(context: dict[str, Any]) -> str:
    global _TEMPLATE_SOURCE
    if _TEMPLATE_SOURCE is None:
        _TEMPLATE_SOURCE = TEMPLATE.read_text(encoding="utf-8")
    return _environment().from_string(_TEMPLATE_SOURCE).render(**context)


async def dataset_card(*, session: AsyncSession, dataset: Dataset, base_url: str) -> str:
    """The dataset's Hugging Face card (README.md), as markdown with a YAML header."""
    context = await build_card_context(session=session, dataset=dataset, base_url=base_url)
    return render_card(context)
