"""The client's commands: `distillery datasets|skills|seeds|jobs ...` and `distillery export`.

Results go to stdout (an id alone where a script wants one, a table otherwise); progress bars
and live displays go to stderr; an error is one red line on stderr and exit 1.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from app.client import seeds as seed_files
from app.client import watch as job_watch
from app.client.http import DEFAULT_URL, Api, ClientError, fail

P = ParamSpec("P")
R = TypeVar("R")

out = Console(soft_wrap=True, highlight=False)
err = Console(stderr=True, highlight=False)

UrlOpt = Annotated[
    str,
    typer.Option("--url", envvar="DISTILLERY_URL", help="the service", show_default=True),
]
KeyOpt = Annotated[
    str | None,
    typer.Option("--api-key", envvar="DISTILLERY_API_KEY", help="bearer key (with auth on)"),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print the server's JSON")]
DatasetArg = Annotated[str, typer.Argument(help="dataset id (or its name)")]

datasets_cli = typer.Typer(no_args_is_help=True, help="Datasets on the service (client).")
skills_cli = typer.Typer(no_args_is_help=True, help="Skill specs on the service (client).")
seeds_cli = typer.Typer(no_args_is_help=True, help="Seed examples (client).")
jobs_cli = typer.Typer(no_args_is_help=True, help="Jobs on the service (client).")


def reflow(doc: str | None) -> str:
    """A docstring as help text: its paragraphs each on one line (the terminal wraps them)."""
    paragraphs = inspect.cleandoc(doc or "").split("\n\n")
    return "\n\n".join(" ".join(p.split()) for p in paragraphs)


def command(app: typer.Typer, name: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Register a command with its docstring reflowed as help."""

    def register(function: Callable[P, R]) -> Callable[P, R]:
        app.command(name, help=reflow(function.__doc__))(function)
        return function

    return register


def handled(command: Callable[P, R]) -> Callable[P, R]:
    """Turn `ClientError` and bad files into one red line and exit 1."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except (ClientError, seed_files.SeedFileError) as exc:
            fail(str(exc))

    return wrapper


def resolve_dataset(api: Api, ref: str) -> str:
    """A dataset id from an id or a name."""
    try:
        return str(uuid.UUID(ref))
    except ValueError:
        pass
    for dataset in api.pages("/v1/datasets"):
        if dataset["name"] == ref:
            return str(dataset["id"])
    raise ClientError(f"no dataset named {ref!r}")


def parse_pairs(pairs: list[str] | None, option: str) -> dict[str, Any]:
    """`k=v` options: v as JSON when it parses (`5`, `true`, `[1,2]`), else the string;
    dotted keys nest (`filters.length.max=200`)."""
    result: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            fail(f"{option} {pair!r}: expected KEY=VALUE", code=2)
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        node = result
        *parents, leaf = key.strip().split(".")
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                fail(f"{option} {pair!r}: {part} is already set to a value", code=2)
            node = child
        node[leaf] = value
    return result


def _print_json(value: Any) -> None:
    out.print_json(data=value)


# datasets -----------------------------------------------------------------------------------


def _counts(dataset: dict[str, Any]) -> str:
    counts = dataset.get("counts") or {}
    parts = [
        f"{origin} {status} {n}"
        for origin, by_status in sorted(counts.items())
        for status, n in sorted(by_status.items())
    ]
    return ", ".join(parts) or "empty"


@command(datasets_cli, "create")
@handled
def datasets_create(
    name: str,
    description: Annotated[str, typer.Option(help="what the dataset is for")] = "",
    license: Annotated[
        str | None,
        typer.Option(help="the data's license, a Hugging Face id (apache-2.0, cc-by-4.0 ...)"),
    ] = None,
    url: UrlOpt = DEFAULT_URL,
    api_key: KeyOpt = None,
) -> None:
    """Create a dataset; prints its id. The license goes in its dataset card."""
    body: dict[str, Any] = {"name": name, "description": description}
    if license is not None:
        body["license"] = license
    with Api(url, api_key) as api:
        dataset = api.post("/v1/datasets", body)
    out.print(dataset["id"])


@command(datasets_cli, "list")
@handled
def datasets_list(
    url: UrlOpt = DEFAULT_URL, api_key: KeyOpt = None, as_json: JsonOpt = False
) -> None:
    """The datasets, with their examples counted."""
    with Api(url, api_key) as api:
        rows = list(api.pages("/v1/datasets"))
    if as_json:
        _print_json(rows)
        return
    table = Table("id", "name", "examples", "by origin and status", "created")
    for d in rows:
        table.add_row(
            d["id"], d["name"], str(d.get("total_examples") or 0), _counts(d), d["created_at"][:19]
        )
    out.print(table)


@command(datasets_cli, "show")
@handled
def datasets_show(
    dataset: DatasetArg, url: UrlOpt = DEFAULT_URL, api_key: KeyOpt = None, as_json: JsonOpt = False
) -> None:
    """One dataset with its examples counted by origin and status."""
    with Api(url, api_key) as api:
        row = api.get(f"/v1/datasets/{resolve_dataset(api, dataset)}")
    if as_json:
        _print_json(row)
        return
    table = Table.grid(padding=(0, 2))
    for key in ("id", "name", "description", "created_at", "total_examples"):
        table.add_row(f"[bold]{key}[/bold]", str(row.get(key) or ""))
    table.add_row("[bold]examples[/bold]", _counts(row))
    out.print(table)


@command(datasets_cli, "delete")
@handled
def datasets_delete(dataset: DatasetArg, url: UrlOpt = DEFAULT_URL, api_key: KeyOpt = None) -> None:
    """Delete a dataset with its examples (its jobs must be finished or cancelled first)."""
    with Api(url, api_key) as api:
        dataset_id = resolve_dataset(api, dataset)
        api.delete(f"/v1/datasets/{dataset_id}")
    out.print(f"deleted {dataset_id}")


# skills -------------------------------------------------------------------------------------


@command(skills_cli, "create")
@handled
def skills_create(
    file: Annotated[Path, typer.Argument(help="the skill spec, YAML or JSON")],
    url: UrlOpt = DEFAULT_URL,
    api_key: KeyOpt = None,
) -> None:
    """Create a skill from a YAML or JSON file (name, description, domain, guidelines, rubric,
    output_format, taxonomy); prints its id."""
    import yaml

    try:
        spec = yaml.safe_load(file.read_text(encoding="utf-8"))  # JSON is YAML too
    except OSError as exc:
        raise ClientError(f"{file}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ClientError(f"{file}: not valid YAML or JSON: {' '.join(str(exc).split())}") from None
    if not isinstance(spec, dict):
        raise ClientError(f"{file}: expected a mapping of fields (name, description, ...)")
    with Api(url, api_key) as api:
        skill = api.post("/v1/skills", spec)
    out.print(skill["id"])


@command(skills_cli, "list")
@handled
def skills_list(
    url: UrlOpt = DEFAULT_URL, api_key: KeyOpt = None, as_json: JsonOpt = False
) -> None:
    """The skills."""
    with Api(url, api_key) as api:
        rows = list(api.pages("/v1/skills"))
    if as_json:
        _print_json(rows)
        return
    table = Table("id", "name", "domain", "description")
    for s in rows:
        table.add_row(s["id"], s["name"], s.get("domain") or "", (s.get("description") or "")[:60])
    out.print(table)


# seeds --------------------------------------------------------------------------------------


@command(seeds_cli, "push")
@handled
def seeds_push(
    dataset: DatasetArg,
    file: Annotated[
        Path, typer.Argument(help="JSONL, JSON, CSV, or a `datasets` save_to_disk folder")
    ],
    split: Annotated[
        str | None, typer.Option(help="the split of a DatasetDict folder [default: train]")
    ] = None,
    chunk_bytes: Annotated[
        int,
        typer.Option(
            min=1024,
            help="most bytes per request (keep under the server's DISTILLERY_MAX_BODY_BYTES)",
        ),
    ] = 8 * 1024 * 1024,
    chunk_rows: Annotated[
        int,
        typer.Option(
            min=1,
            help="most examples per request (keep under the server's "
            "DISTILLERY_MAX_EXAMPLES_PER_UPLOAD)",
        ),
    ] = 10_000,
    url: UrlOpt = DEFAULT_URL,
    api_key: KeyOpt = None,
) -> None:
    """Add seed examples from FILE; prints how many were inserted and how many were duplicates.

    Every row is checked here first with the server's schema: a bad one is reported with its
    line (JSONL, CSV), item (JSON) or row (datasets folder) and field, and nothing is sent.
    JSON is a list of examples or {"examples": [...]}; CSV has a header row naming the fields
    (instruction,input,output; metadata and messages cells hold JSON).

    Large files go in chunks, each stored all or nothing. If a chunk fails midway (the network,
    the server), the chunks before it are stored: run the same command again. Rerunning is
    safe: examples already stored are counted as duplicates, never stored twice.
    """
    rows = seed_files.read_rows(file, split)
    seed_files.validate(file, rows)
    batches = list(seed_files.chunks(rows, chunk_bytes, chunk_rows))
    inserted = duplicates = sent = 0
    with Api(url, api_key, timeout=300.0) as api:
        dataset_id = resolve_dataset(api, dataset)
        with Progress(
            TextColumn("seeds"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
            transient=True,
            disable=len(batches) < 2,
        ) as progress:
            task = progress.add_task("push", total=len(rows))
            for body, count in batches:
                try:
                    result = api.request(
                        "POST",
                        f"/v1/datasets/{dataset_id}/seeds",
                        content=body,
                        headers={"content-type": "application/x-ndjson"},
                    ).json()
                except ClientError as exc:
                    if sent:
                        raise ClientError(
                            f"{exc} (after {sent} of {len(rows)} examples were stored; "
                            "rerun the command: stored ones count as duplicates)"
                        ) from None
                    raise
                inserted += result["inserted"]
                duplicates += result["duplicates"]
                sent += count
                progress.update(task, completed=sent)
    out.print(f"inserted {inserted}, duplicates {duplicates}")


# jobs ---------------------------------------------------------------------------------------


def _watch_and_exit(api: Api, job_id: str) -> None:
    view = job_watch.watch(api, job_id, err)
    out.print(view.summary())
    raise typer.Exit(job_watch.EXIT_CODES.get(view.status, 1))


@command(jobs_cli, "start")
@handled
def jobs_start(
    dataset: DatasetArg,
    kind: Annotated[
        str, typer.Option(help="labeling, expansion, evol, curation, dialogue, feedback, scoring")
    ],
    skill: Annotated[str | None, typer.Option(help="skill id")] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param", help="KEY=VALUE job parameter (VALUE as JSON if it parses; dotted keys nest)"
        ),
    ] = None,
    teacher: Annotated[
        list[str] | None,
        typer.Option(
            "--teacher", help="KEY=VALUE teacher setting (temperature=0.2, max_tokens=64, ...)"
        ),
    ] = None,
    priority: Annotated[int | None, typer.Option(help="-100..100")] = None,
    watch: Annotated[bool, typer.Option("--watch", help="show it live until it ends")] = False,
    url: UrlOpt = DEFAULT_URL,
    api_key: KeyOpt = None,
) -> None:
    """Start a job; prints its id. With --watch, shows it live, prints its final line and
    exits 0 if it succeeded, 1 if it failed, 2 if it was cancelled."""
    body: dict[str, Any] = {"kind": kind}
    params = parse_pairs(param, "--param")
    teacher_config = parse_pairs(teacher, "--teacher")
    with Api(url, api_key) as api:
        body["dataset_id"] = resolve_dataset(api, dataset)
        if skill:
            body["skill_id"] = skill
        if params:
            body["params"] = params
        if teacher_config:
            body["teacher"] = teacher_config
        if priority is not None:
            body["priority"] = priority
        job = api.post("/v1/jobs", body)
        if not watch:
            out.print(job["id"])
            return
        _watch_and_exit(api, job["id"])


@command(jobs_cli, "watch")
@handled
def jobs_watch(job: str, url: UrlOpt = DEFAULT_URL, api_key: KeyOpt = None) -> None:
    """Show a job live (accepted / target, candidates, rejections by reason, tokens/s, teacher
    in flight, ETA, health) until it ends; prints its final line and exits 0 if it succeeded,
    1 if it failed, 2 if it was cancelled."""
    with Api(url, api_key) as api:
        _watch_and_exit(api, job)


@command(jobs_cli, "list")
@handled
def jobs_list(
    dataset: Annotated[str | None, typer.Option(help="only this dataset's jobs")] = None,
    status: Annotated[str | None, typer.Option(help="queued, running, succeeded, ...")] = None,
    url: UrlOpt = DEFAULT_URL,
    api_key: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The jobs, oldest first."""
    with Api(url, api_key) as api:
        dataset_id = resolve_dataset(api, dataset) if dataset else None
        rows = list(api.pages("/v1/jobs", dataset_id=dataset_id, status=status))
    if as_json:
        _print_json(rows)
        return
    table = Table(
        "id", "kind", "status", "accepted / total", "rejected", "failed", "health", "created"
    )
    for j in rows:
        p = j["progress"]
        table.add_row(
            j["id"],
            j["kind"],
            j["status"],
            f"{p['accepted']} / {p['total']}",
            str(p["rejected"]),
            str(p["failed"]),
            j["health"]["state"],
            j["created_at"][:19],
        )
    out.print(table)


@command(jobs_cli, "cancel")
@handled
def jobs_cancel(job: str, url: UrlOpt = DEFAULT_URL, api_key: KeyOpt = None) -> None:
    """Cancel a job; what was accepted stays."""
    with Api(url, api_key) as api:
        row = api.post(f"/v1/jobs/{job}/cancel")
    out.print(f"{row['id']}: cancel requested ({row['status']})")


@command(jobs_cli, "report")
@handled
def jobs_report(
    job: str, url: UrlOpt = DEFAULT_URL, api_key: KeyOpt = None, as_json: JsonOpt = False
) -> None:
    """The curation report: kept, rejected by reason, tokens, throughput, diversity."""
    with Api(url, api_key) as api:
        report = api.get(f"/v1/jobs/{job}/report")
    if as_json:
        _print_json(report)
        return
    table = Table(
        title=f"job {report['job_id']} ({report['kind']}, {report['status']})", show_header=False
    )
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row("candidates", str(report["candidates"]))
    table.add_row("kept", str(report["accepted"]))
    table.add_row("pending", str(report["pending"]))
    table.add_row("rejected", str(report["rejected"]))
    for reason, n in sorted(report["rejected_by_reason"].items(), key=lambda kv: -kv[1]):
        table.add_row(f"  {reason}", str(n))
    table.add_row("failed", str(report["failed"]))
    tokens = report["tokens"]
    table.add_row(
        "tokens",
        f"{tokens['total']} ({tokens['prompt']} prompt, {tokens['completion']} completion)",
    )
    wall = report.get("wall_seconds")
    table.add_row("wall time", f"{wall:.1f} s" if wall is not None else "-")
    epm = report.get("examples_per_minute")
    table.add_row("examples / minute", f"{epm:.1f}" if epm is not None else "-")
    if wall:
        table.add_row("tokens / second", f"{tokens['total'] / wall:.1f}")
    for cause, n in sorted(report.get("teacher_errors", {}).items()):
        table.add_row(f"teacher error {cause}", str(n))
    diversity = report["diversity"]
    table.add_row(
        "distinct-1 / distinct-2", f"{diversity['distinct_1']:.3f} / {diversity['distinct_2']:.3f}"
    )
    words = ", ".join(w["word"] for w in diversity["leading_words"][:8])
    table.add_row("leading words", words or "-")
    if report.get("stop_reason"):
        table.add_row("stop reason", str(report["stop_reason"]))
    out.print(table)


# export -------------------------------------------------------------------------------------


def _write_atomically(path: Path, chunks: Any, on_chunk: Callable[[bytes], None]) -> int:
    """Write `chunks` to PATH.part, fsync, rename to PATH; the .part is removed on any failure,
    so a file at PATH is always whole. Returns the bytes written."""
    part = path.with_name(path.name + ".part")
    written = 0
    try:
        with part.open("wb") as f:
            for chunk in chunks:
                f.write(chunk)
                written += len(chunk)
                on_chunk(chunk)
            f.flush()
            os.fsync(f.fileno())
        part.replace(path)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself survives a crash
    finally:
        os.close(directory)
    return written


def export_command(
    dataset: DatasetArg,
    output: Annotated[Path, typer.Option("-o", "--output", help="the file to write")],
    format: Annotated[
        str,
        typer.Option(
            "--format", help="alpaca, messages, sharegpt, prompt_completion, preference, kto, kd"
        ),
    ] = "alpaca",
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            help="KEY=VALUE query parameter of the export (status=all, metadata=true, "
            "job_id=..., min_score=7, encoding=parquet, ...)",
        ),
    ] = None,
    card: Annotated[
        bool,
        typer.Option(
            "--card", help="also write the dataset card (Hugging Face README.md) beside the file"
        ),
    ] = False,
    url: UrlOpt = DEFAULT_URL,
    api_key: KeyOpt = None,
) -> None:
    """Download a dataset's examples to a file, with a progress bar (bytes and rows).

    The download goes to FILE.part and is renamed to FILE only once it is complete and on disk:
    an interrupted download never leaves a file that looks whole (the .part is removed). The
    export is streamed from the database and cannot resume midway: rerun the command and it
    starts cleanly from the beginning.
    """
    try:
        params = {
            "format": format,
            **{k: _query_value(v) for k, v in parse_pairs(param, "--param").items()},
        }
        with Api(url, api_key, timeout=300.0) as api:
            dataset_id = resolve_dataset(api, dataset)
            rows = 0
            with (
                Progress(
                    TextColumn("export"),
                    DownloadColumn(),
                    TransferSpeedColumn(),
                    TextColumn("{task.fields[rows]} rows"),
                    TimeElapsedColumn(),
                    console=err,
                    transient=True,
                ) as progress,
                api.stream("GET", f"/v1/datasets/{dataset_id}/export", params=params) as response,
            ):
                task = progress.add_task("export", total=None, rows=0)
                jsonl = "ndjson" in response.headers.get("content-type", "")

                def seen(chunk: bytes) -> None:
                    nonlocal rows
                    if jsonl:
                        rows += chunk.count(b"\n")
                    progress.update(task, advance=len(chunk), rows=rows)

                size = _write_atomically(output, response.iter_bytes(), seen)
            if card:
                text = api.request("GET", f"/v1/datasets/{dataset_id}/card").content
                card_path = output.parent / "README.md"
                _write_atomically(card_path, [text], lambda _: None)
    except (ClientError, seed_files.SeedFileError) as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"{output}: {exc.strerror or exc}")
    # rows where the format has them (JSONL); the bytes are on the progress bar
    out.print(f"wrote {rows} rows to {output}" if jsonl else f"wrote {size} bytes to {output}")
    if card:
        out.print(f"wrote the dataset card to {card_path}")


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        raise ClientError(f"--param: nested values are not query parameters: {value!r}")
    return str(value)
