"""Reading seed files for `distillery seeds push`: JSONL, JSON, CSV, or a Hugging Face
`datasets` folder written by `save_to_disk` (its Arrow files, read with pyarrow).

Every row is validated here with the server's own schema (`app.schemas.ExampleIn`) before
anything is sent; the first bad row is reported with its line (or item, or row) and field.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

FIELDS = ("instruction", "input", "output", "messages", "metadata")  # ExampleIn's (a test checks)
JSON_COLUMNS = ("messages", "metadata")  # CSV cells holding JSON


class SeedFileError(Exception):
    """A seed file that cannot be read or holds a row the server would refuse."""


@dataclass(frozen=True)
class Row:
    where: str  # "line 3", "item 2", "row 7": how the user finds it in the file
    data: dict[str, Any]


def read_rows(path: Path, split: str | None = None) -> list[Row]:
    """The rows of a seed file, by its form: a folder is a `datasets` folder, else by suffix
    (`.jsonl`/`.ndjson`, `.json`, `.csv`; anything else is read as JSONL)."""
    if path.is_dir():
        return list(_hf_rows(path, split))
    if not path.is_file():
        raise SeedFileError(f"{path}: no such file or folder")
    suffix = path.suffix.lower()
    data = path.read_bytes()
    if suffix == ".json":
        return list(_json_rows(path, data))
    if suffix in (".csv", ".tsv"):
        return list(_csv_rows(path, data, "\t" if suffix == ".tsv" else ","))
    return list(_jsonl_rows(path, data))


def validate(path: Path, rows: list[Row]) -> None:
    """Check every row with the server's schema; the first bad one raises, naming it."""
    from app.schemas import ExampleIn  # pydantic models of the API: only this command needs them

    if not rows:
        raise SeedFileError(f"{path}: no examples in the file")
    for row in rows:
        try:
            ExampleIn.model_validate(row.data)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"])
            msg = first["msg"].removeprefix("Value error, ")
            where = f"{row.where}: {field}: {msg}" if field else f"{row.where}: {msg}"
            raise SeedFileError(f"{path}: {where}") from None


def chunks(rows: list[Row], max_bytes: int, max_rows: int) -> Iterator[tuple[bytes, int]]:
    """JSONL bodies of at most `max_bytes` and `max_rows` rows each, with their row counts."""
    buf: list[bytes] = []
    size = 0
    for row in rows:
        line = orjson.dumps(row.data) + b"\n"
        if len(line) > max_bytes:
            raise SeedFileError(
                f"{row.where}: {len(line)} bytes, more than a chunk may hold ({max_bytes}); "
                "raise --chunk-bytes (the server's limit is DISTILLERY_MAX_BODY_BYTES)"
            )
        if buf and (size + len(line) > max_bytes or len(buf) >= max_rows):
            yield b"".join(buf), len(buf)
            buf, size = [], 0
        buf.append(line)
        size += len(line)
    if buf:
        yield b"".join(buf), len(buf)


def _object(path: Path, where: str, value: Any) -> Row:
    if not isinstance(value, dict):
        raise SeedFileError(f"{path}: {where}: expected a JSON object, got {type(value).__name__}")
    return Row(where, value)


def _jsonl_rows(path: Path, data: bytes) -> Iterator[Row]:
    for lineno, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise SeedFileError(f"{path}: line {lineno}: not valid JSON: {exc}") from None
        yield _object(path, f"line {lineno}", value)


def _json_rows(path: Path, data: bytes) -> Iterator[Row]:
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise SeedFileError(f"{path}: not valid JSON: {exc}") from None
    if isinstance(value, dict) and set(value) == {"examples"}:
        value = value["examples"]
    if not isinstance(value, list):
        raise SeedFileError(f'{path}: expected a list of examples or {{"examples": [...]}}')
    for i, item in enumerate(value, start=1):
        yield _object(path, f"item {i}", item)


def _csv_rows(path: Path, data: bytes, delimiter: str) -> Iterator[Row]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SeedFileError(f"{path}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = next(reader, None)
    if not header:
        raise SeedFileError(f"{path}: empty file (expected a header row: instruction,input,output)")
    columns = [c.strip() for c in header]
    unknown = [c for c in columns if c not in FIELDS]
    if unknown:
        raise SeedFileError(
            f"{path}: line 1: unknown column {unknown[0]!r} (columns: {', '.join(FIELDS)})"
        )
    start = reader.line_num + 1
    for cells in reader:
        where = f"line {start}"
        start = reader.line_num + 1
        if not any(c.strip() for c in cells):
            continue
        if len(cells) != len(columns):
            raise SeedFileError(
                f"{path}: {where}: {len(cells)} cells, the header has {len(columns)}"
            )
        row: dict[str, Any] = {}
        for column, cell in zip(columns, cells, strict=True):
            if cell == "":
                continue  # an empty cell is an absent field (no input, no output yet)
            if column in JSON_COLUMNS:
                try:
                    row[column] = json.loads(cell)
                except ValueError:
                    raise SeedFileError(f"{path}: {where}: {column}: not valid JSON") from None
            else:
                row[column] = cell
        yield Row(where, row)


def _hf_rows(path: Path, split: str | None) -> Iterator[Row]:
    """A `save_to_disk` folder: one Dataset (state.json) or a DatasetDict (dataset_dict.json)."""
    folder = path
    if (path / "dataset_dict.json").is_file():
        splits = json.loads((path / "dataset_dict.json").read_text())["splits"]
        chosen = split or ("train" if "train" in splits else splits[0] if len(splits) == 1 else "")
        if chosen not in splits:
            raise SeedFileError(
                f"{path}: choose a split with --split ({', '.join(splits)})"
                if not split
                else f"{path}: no split {split!r} ({', '.join(splits)})"
            )
        folder = path / chosen
    elif split:
        raise SeedFileError(f"{path}: --split is for a DatasetDict folder; this one has no splits")
    state_file = folder / "state.json"
    if not state_file.is_file():
        raise SeedFileError(
            f"{path}: not a file, and not a folder written by datasets' save_to_disk "
            "(no state.json or dataset_dict.json)"
        )
    import pyarrow as pa

    files = [f["filename"] for f in json.loads(state_file.read_text())["_data_files"]]
    number = 0
    for name in files:
        with pa.memory_map(str(folder / name)) as source:
            table = pa.ipc.open_stream(source).read_all()
        unknown = [c for c in table.column_names if c not in FIELDS]
        if unknown:
            raise SeedFileError(
                f"{path}: unknown column {unknown[0]!r} (columns: {', '.join(FIELDS)}; "
                "rename or remove it with datasets first)"
            )
        for record in table.to_pylist():
            number += 1
            yield Row(f"row {number}", {k: v for k, v in record.items() if v is not None})
