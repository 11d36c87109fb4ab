"""Export: the three JSONL formats, filters, provenance and streaming in batches."""

from __future__ import annotations

import uuid

import httpx
import orjson
import pytest

from app.config import Settings
from app.export import (
    chat_messages,
    filename,
    to_alpaca,
    to_messages,
    to_prompt_completion,
    to_sharegpt,
)
from app.hashing import content_hash
from app.models import Example, Job
from app.state import Database
from tests.conftest import LiveServer
from tests.factories import make_dataset, seed_items, upload_seeds
from tests.test_api_datasets import assert_error


def lines(response: httpx.Response) -> list[dict]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-ndjson"
    return [orjson.loads(line) for line in response.content.splitlines()]


ROW = {"instruction": "Add", "input": "2 and 3", "output": "5", "messages": None}


def test_format_functions() -> None:
    assert to_alpaca(ROW) == {"instruction": "Add", "input": "2 and 3", "output": "5"}
    assert to_messages(ROW) == {
        "messages": [
            {"role": "user", "content": "Add\n\n2 and 3"},
            {"role": "assistant", "content": "5"},
        ]
    }
    assert to_sharegpt({**ROW, "input": ""}) == {
        "conversations": [{"from": "human", "value": "Add"}, {"from": "gpt", "value": "5"}]
    }
    convo = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    assert chat_messages({**ROW, "messages": convo})[-1] == {"role": "assistant", "content": "5"}
    assert to_sharegpt({**ROW, "messages": convo})["conversations"][0] == {
        "from": "system",
        "value": "s",
    }
    assert filename("my data/set?", "alpaca") == "my-data-set-alpaca.jsonl"
    assert filename("///", "messages") == "dataset-messages.jsonl"


CHAT = [
    {"role": "system", "content": "be kind"},
    {"role": "user", "content": "first question"},
    {"role": "assistant", "content": "first answer"},
    {"role": "user", "content": "second question"},
    {"role": "assistant", "content": "second answer"},
    {"role": "user", "content": "last question"},
]
CHAT_ROW = {"instruction": "first question", "input": "", "output": "last answer", "messages": CHAT}


def test_alpaca_conversations_in_llama_factory_form() -> None:
    """instruction = the last user turn, output = its answer, system, history = earlier pairs."""
    assert to_alpaca(CHAT_ROW) == {
        "instruction": "last question",
        "input": "",
        "output": "last answer",
        "system": "be kind",
        "history": [["first question", "first answer"], ["second question", "second answer"]],
    }
    # the answer stored in the conversation itself; no system message, no history
    two_turns = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    assert to_alpaca({**CHAT_ROW, "output": "a", "messages": two_turns}) == {
        "instruction": "q",
        "input": "",
        "output": "a",
    }
    # a turn of one speaker split in two messages is one turn; an unanswered one has no output
    split = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    assert to_alpaca({**CHAT_ROW, "output": None, "messages": split})["instruction"] == "a\n\nb"
    # single-turn rows keep their fields; system only when asked for
    assert to_alpaca(ROW, "") == {"instruction": "Add", "input": "2 and 3", "output": "5",
                                  "system": ""}  # fmt: skip
    assert to_alpaca(ROW, "SYS") == {
        "instruction": "Add",
        "input": "2 and 3",
        "output": "5",
        "system": "SYS",
    }
    # a conversation's own system message is what its teacher saw: it wins over the job's
    assert to_alpaca(CHAT_ROW, "SYS")["system"] == "be kind"


def test_prompt_completion_forms() -> None:
    assert to_prompt_completion(ROW) == {"prompt": "Add\n\n2 and 3", "completion": "5"}
    convo = to_prompt_completion(CHAT_ROW)
    assert convo["prompt"] == CHAT
    assert convo["completion"] == [{"role": "assistant", "content": "last answer"}]
    with_system = to_prompt_completion(ROW, "SYS")
    assert with_system == {
        "prompt": [
            {"role": "system", "content": "SYS"},
            {"role": "user", "content": "Add\n\n2 and 3"},
        ],
        "completion": [{"role": "assistant", "content": "5"}],
    }
    pending = to_prompt_completion({**CHAT_ROW, "output": None})
    assert pending == {"prompt": CHAT, "completion": []}
    assert to_messages(ROW, "SYS")["messages"][0] == {
        "role": "system",
        "content": "SYS",
    }
    assert to_messages(ROW)["messages"][0]["role"] == "user"
    assert to_prompt_completion(ROW, "")["prompt"] == [
        {"role": "user", "content": "Add\n\n2 and 3"}
    ]
    assert to_sharegpt(ROW, "SYS")["conversations"][0] == {
        "from": "system",
        "value": "SYS",
    }


async def add_generated(
    database: Database,
    dataset_id: str,
    n: int,
    status: str = "accepted",
    system_prompt: str | None = None,
) -> str:
    """A job with `n` generated examples (written as a worker would)."""
    from app.models import DEFAULT_TENANT_ID

    async with database.transaction() as session:
        job = Job(
            tenant_id=DEFAULT_TENANT_ID,
            dataset_id=uuid.UUID(dataset_id),
            kind="expansion",
            status="running",
            system_prompt=system_prompt,
        )
        session.add(job)
        await session.flush()
        for i in range(n):
            digest = content_hash(f"gen {status} {i}", "", f"out {i}")
            session.add(
                Example(dataset_id=uuid.UUID(dataset_id), origin="generated", status=status,
                        instruction=f"gen {status} {i}", output=f"out {i}", content_hash=digest,
                        dedup_key=digest if status != "rejected" else None, job_id=job.id,
                        method="expansion", prompt_id="expansion/answer", prompt_version="v1",
                        teacher_backend="openai", teacher_model="m",
                        reject_reason="refusal" if status == "rejected" else None,
                        reject_detail="starts like a refusal" if status == "rejected" else None)
            )  # fmt: skip
    return str(job.id)


async def test_formats_filters_and_provenance(client: httpx.Client, database: Database) -> None:
    ds = make_dataset(client, "My Set")
    upload_seeds(client, ds["id"], seed_items(3) + seed_items(2, with_output=False, prefix="Q"))
    job_id = await add_generated(database, ds["id"], 4)
    await add_generated(database, ds["id"], 2, status="rejected")
    url = f"/v1/datasets/{ds['id']}/export"

    response = client.get(url)
    assert response.headers["content-disposition"] == 'attachment; filename="My-Set-alpaca.jsonl"'
    rows = lines(response)
    assert len(rows) == 7  # accepted only: 3 seeds + 4 generated
    assert all(set(r) == {"instruction", "input", "output"} for r in rows)

    messages = lines(client.get(url, params={"format": "messages", "origin": "generated"}))
    assert len(messages) == 4
    assert messages[0]["messages"][1] == {"role": "assistant", "content": "out 0"}
    sharegpt = lines(client.get(url, params={"format": "sharegpt", "origin": "seed"}))
    assert [c["from"] for c in sharegpt[0]["conversations"]] == ["human", "gpt"]

    assert len(lines(client.get(url, params={"status": "rejected"}))) == 2
    assert len(lines(client.get(url, params={"status": "pending"}))) == 2
    assert len(lines(client.get(url, params={"status": "all"}))) == 11
    by_job = lines(client.get(url, params={"job_id": job_id, "status": "all", "metadata": True}))
    assert len(by_job) == 4
    meta = by_job[0]["metadata"]
    assert (
        meta["job_id"] == job_id and meta["method"] == "expansion" and meta["teacher_model"] == "m"
    )
    assert lines(client.get(url, params={"job_id": str(uuid.uuid4())})) == []

    assert_error(client.get(url, params={"format": "csv"}), 422, "validation_error")
    assert_error(client.get(f"/v1/datasets/{uuid.uuid4()}/export"), 404, "not_found")


async def test_system_prompts_and_rejection_metadata(
    client: httpx.Client, database: Database
) -> None:
    """`system=true` adds the system prompt the teacher saw (the job's; a conversation's own
    wins; seeds have none) in every format; `metadata=true` carries the rejection detail."""
    ds = make_dataset(client)
    convo = [{"role": "system", "content": "own"}, {"role": "user", "content": "hi"},
             {"role": "assistant", "content": "hello"}]  # fmt: skip
    upload_seeds(client, ds["id"], [{"instruction": "seed q", "output": "seed a"},
                                    {"messages": convo}])  # fmt: skip
    await add_generated(database, ds["id"], 2, system_prompt="SYS")
    await add_generated(database, ds["id"], 1, status="rejected", system_prompt="SYS")
    url = f"/v1/datasets/{ds['id']}/export"

    alpaca = lines(client.get(url, params={"system": True}))
    assert {r["instruction"]: r["system"] for r in alpaca} == {
        "seed q": "",
        "hi": "own",
        "gen accepted 0": "SYS",
        "gen accepted 1": "SYS",
    }
    assert "system" not in lines(client.get(url, params={"origin": "generated"}))[0]
    for fmt, first in (("messages", lambda r: r["messages"][0]),
                       ("sharegpt", lambda r: r["conversations"][0]),
                       ("prompt_completion", lambda r: r["prompt"][0])):  # fmt: skip
        rows = lines(client.get(url, params={"format": fmt, "system": True, "metadata": True}))
        firsts = {r["metadata"]["origin"] + str(i): first(r) for i, r in enumerate(rows)}
        assert [f.get("content", f.get("value")) for f in firsts.values()] == [
            "seed q", "own", "SYS", "SYS"
        ], fmt  # fmt: skip
    plain = lines(client.get(url, params={"format": "prompt_completion", "origin": "generated"}))
    assert plain[0] == {"prompt": "gen accepted 0", "completion": "out 0"}

    rejected = lines(client.get(url, params={"status": "rejected", "metadata": True}))
    meta = rejected[0]["metadata"]
    assert meta["reject_reason"] == "refusal"
    assert meta["reject_detail"] == "starts like a refusal"
    assert meta["source_id"] is None and meta["superseded_by"] is None


@pytest.fixture
def tiny_batches(settings: Settings) -> Settings:
    return settings.model_copy(update={"export_batch_rows": 7})


def test_streams_in_batches_in_order(tiny_batches: Settings) -> None:
    server = LiveServer(tiny_batches).start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            ds = make_dataset(client)
            upload_seeds(client, ds["id"], seed_items(50))
            with client.stream("GET", f"/v1/datasets/{ds['id']}/export") as response:
                chunks = list(response.iter_raw())
            rows = [orjson.loads(x) for x in b"".join(chunks).splitlines()]
            assert len(rows) == 50
            listed = client.get(f"/v1/datasets/{ds['id']}/examples", params={"limit": 50}).json()[
                "data"
            ]
            assert [r["instruction"] for r in rows] == [e["instruction"] for e in listed]
    finally:
        server.stop()


def test_conversations_and_json_columns_round_trip(client: httpx.Client) -> None:
    ds = make_dataset(client)
    convo = [{"role": "system", "content": "be kind"}, {"role": "user", "content": "hi"},
             {"role": "assistant", "content": "hello"}]  # fmt: skip
    upload_seeds(client, ds["id"], [{"messages": convo, "metadata": {"source": "chat", "n": 1}}])
    rows = lines(
        client.get(
            f"/v1/datasets/{ds['id']}/export", params={"format": "messages", "metadata": True}
        )
    )
    assert rows[0]["messages"] == convo
    assert rows[0]["metadata"]["metadata"] == {"source": "chat", "n": 1}
    sharegpt = lines(client.get(f"/v1/datasets/{ds['id']}/export", params={"format": "sharegpt"}))
    assert [c["from"] for c in sharegpt[0]["conversations"]] == ["system", "human", "gpt"]
