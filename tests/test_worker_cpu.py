"""What the worker's CPU and memory savings must not change: the commit-time recheck's verdicts,
the language model's verdicts when it is memory-mapped, and a cancel seen by the next check."""

from __future__ import annotations

import asyncio
import random
import uuid
from pathlib import Path

import pytest
from py3langid.langid import MODEL_FILE, LanguageIdentifier
from sqlalchemy import event, update

from app.config import Settings
from app.models import Job
from app.state import Database
from tests.scripted_teacher import ScriptedTeacher
from tests.test_queue import tasks_of
from tests.worker_proc import add_job, item_payloads
from workers import runner as runner_mod
from workers.curation import language
from workers.curation.dedup import DedupConfig, NearDupIndex, shorten
from workers.curation.types import DUPLICATE
from workers.methods import expansion
from workers.runner import Runner

WORDS = [
    "sea",
    "poem",
    "write",
    "short",
    "story",
    "about",
    "the",
    "a",
    "cat",
    "dog",
    "river",
    "list",
    "five",
    "ways",
    "to",
    "cook",
    "rice",
]


def _texts(rng: random.Random, n: int) -> list[str]:
    out = []
    for _ in range(n):
        if out and rng.random() < 0.4:  # a near copy (or an exact one) of an earlier text
            words = rng.choice(out).split()
            if rng.random() < 0.7:
                words[rng.randrange(len(words))] = rng.choice(WORDS)
            out.append(" ".join(words).capitalize() + rng.choice([".", "", "!"]))
        else:
            out.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))))
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_recheck_finds_what_checking_one_by_one_finds(seed: int) -> None:
    """The batched recheck names the same items, reasons, scores and matches as
    `NearDupIndex.check` and `max_similarity` item by item (the former implementation)."""
    rng = random.Random(seed)
    texts = _texts(rng, 400)
    rows, items = texts[::2], list(enumerate(texts[1::2]))
    config = DedupConfig()
    found = expansion.recheck_against(items, config)(rows)
    index = NearDupIndex.from_rows(rows, config)
    expected = {}
    for item, text in items:
        rejection = index.check(text)
        if rejection is None:
            continue
        score, position = index.max_similarity(text)
        head = "same words as" if rejection.reason == DUPLICATE else f"rouge_l={score:.3f} with"
        match = shorten(index.text(position))
        detail = f'{head} an example stored by a parallel round: "{match}"'
        expected[item] = (rejection.reason, detail)
    assert len(expected) > 20  # the case has near copies and copies to find
    assert found == expected


def test_the_mapped_language_model_gives_the_packaged_models_verdicts(tmp_path: Path) -> None:
    """The memory-mapped copy is written once, then read: same rankings as py3langid's own
    load, for English and other languages."""
    mapped = language._mapped(tmp_path)
    written = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    assert {"ptc.npy", "nextmove.npy"} <= set(written)
    again = language._mapped(tmp_path)
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == written
    reference = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    texts = [
        "Write a short poem about the sea and the wind in the evening.",
        "Bonjour, comment allez-vous aujourd'hui, mon ami ?",
        "Wie geht es dir heute, mein Freund? Das Wetter ist schön.",
        "Это тестовое предложение на русском языке для проверки.",
        "这是一个用来测试语言识别的中文句子",
        "def f(x):\n    return x * 2  # double it",
        "",
    ]
    for text in texts:
        assert mapped.rank(text) == reference.rank(text) == again.rank(text)


def test_the_language_model_loads_without_a_writable_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cache folder that cannot be made: the model is loaded as py3langid loads it."""
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    language._load.cache_clear()
    try:
        found = language.detect("Write a short poem about the sea and the wind.")
        assert found is not None and found[0] == "en"
    finally:
        language._load.cache_clear()


async def test_checks_at_once_share_one_read_and_a_later_check_sees_a_cancel(
    database: Database, settings: Settings
) -> None:
    """The checks a pipelined round makes at the same time cost one read of the job; a check
    made after that read ended reads again, and sees a cancel."""
    job_id = await add_job(database, item_payloads(2, 2))
    [task] = await tasks_of(database, job_id)
    claimed = runner_mod.queue.ClaimedTask(
        id=task.id, job_id=job_id, dataset_id=uuid.uuid4(), skill_id=None, seq=0,
        attempt=1, max_attempts=5, kind="echo", params={}, teacher={}, payload={},
        lease_expires_at=task.created_at, reclaimed_from=None,
    )  # fmt: skip
    runner = Runner(db=database, settings=settings, teacher=ScriptedTeacher(), methods={})
    ctx = runner_mod._Context(runner, claimed)
    reads = []

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        if statement.startswith("SELECT jobs.cancel_requested"):
            reads.append(statement)

    event.listen(database.engine.sync_engine, "before_cursor_execute", count)
    try:
        await asyncio.gather(*(ctx.check_cancel() for _ in range(8)))
        assert len(reads) == 1
        await ctx.check_cancel()
        assert len(reads) == 2
        async with database.transaction() as session:
            await session.execute(update(Job).where(Job.id == job_id).values(cancel_requested=True))
        results = await asyncio.gather(
            *(ctx.check_cancel() for _ in range(3)), return_exceptions=True
        )
        assert all(isinstance(r, runner_mod.JobCancelled) for r in results)
        assert len(reads) == 3
    finally:
        event.remove(database.engine.sync_engine, "before_cursor_execute", count)
