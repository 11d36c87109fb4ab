"""Train a student on a distillery ``kd`` export: the teacher's soft targets (top-k token logprobs).

    python examples/kd_train.py --student PATH --data export.jsonl --loss forward_kl --out DIR

``--data`` is what ``GET /v1/datasets/{id}/export?format=kd`` returned: JSONL, or Parquet with
``encoding=parquet`` (a ``.parquet`` file). Each row gives ``messages`` (the prompt as the teacher
saw it), ``completion_token_ids`` and, at each completion position, the teacher's ``top_ids`` /
``top_logprobs`` (k alternatives, most likely first). The student sees the same tokens the
teacher did: its chat template applied to ``messages`` (with the generation prompt), then the
completion's token ids. That is only right when the student's tokenizer IS the teacher's, so the
script refuses to run unless the student's tokenizer identity (vocab size, sha256 of the
tokenizer definition, sha256 of the chat template; computed as distillery's teacher backends
compute it) equals the export's for every row.

Losses (``--loss``), per completion token, averaged over the batch's completion tokens:

- ``forward_kl``: KL(p || q), p the teacher, q the student (Hinton-style soft targets).
- ``reverse_kl``: KL(q || p), MiniLLM's direction at token level: the student is punished for
  putting mass where the teacher puts little.
- ``mix``: ``alpha * forward_kl + (1 - alpha) * CE``, CE the student's cross-entropy on
  ``completion_token_ids`` (the hard labels).

The export holds only the teacher's top k, not its full distribution. ``--tail`` says how the
rest (the "tail", ``1 - sum(exp(top_logprobs))`` of the teacher's mass) is treated:

- ``bucket`` (default): the distributions compared have k + 1 outcomes: the k ids, and one
  "rest" bucket: the teacher's tail mass against the student's mass on every other id (its
  logsumexp over the ids outside the top k). Nothing is renormalised, so a student that leaks
  mass outside the teacher's top k pays for it. The teacher's top-k logprobs are stored to
  within 2**-11, so their probabilities can sum to a hair over 1: they are then scaled to sum to
  1 and the tail is 0. ``reverse_kl`` needs ``log p_rest``, so the tail mass is never taken below
  ``--tail-floor`` (default 1e-4, about the precision of the stored sum).
- ``renorm``: both distributions restricted to the teacher's top k and renormalised there; the
  tail is ignored (cheaper to reason about; the student may put mass outside the top k freely).

Writes the trained student (``save_pretrained``, with the tokenizer) and ``kd_train.json`` (the
resolved settings and the loss of every step) to ``--out``. Needs torch and transformers; the
tokenizer identity comes from distillery's own code (``pip install distillery[hf]`` or run from a
checkout), Parquet needs pyarrow.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

LOSSES = ("forward_kl", "reverse_kl", "mix")
TAILS = ("bucket", "renorm")


class KDDataError(ValueError):
    """The export cannot train this student (wrong tokenizer, malformed rows)."""


@dataclass
class Config:
    student: str
    data: str
    out: str
    loss: str = "forward_kl"
    alpha: float = 0.5  # mix: weight of the KD term; 1 - alpha goes to the hard-label CE
    steps: int = 100
    lr: float = 5e-5
    batch_size: int = 8
    tail: str = "bucket"  # how the teacher's mass outside its top k is treated (see above)
    tail_floor: float = 1e-4  # reverse_kl, bucket: the tail mass is never taken below this
    max_length: int | None = None  # prompt + completion tokens; None: the model's maximum
    seed: int = 0
    device: str = "auto"
    dtype: str = "float32"  # the student's weights while training
    log_every: int = 10
    trust_server_tokenizer: bool = False  # see check_tokenizer


@dataclass
class Row:
    """One training sequence: prompt and completion ids, and the teacher's top k per position."""

    id: str
    input_ids: list[int]
    prompt_length: int
    top_ids: list[list[int]]
    top_logprobs: list[list[float]]

    @property
    def completion_ids(self) -> list[int]:
        return self.input_ids[self.prompt_length :]


@dataclass
class Batch:
    input_ids: torch.Tensor  # [B, L], right padded
    attention_mask: torch.Tensor  # [B, L]
    rows: torch.Tensor  # [N]: the batch row of each completion token
    positions: torch.Tensor  # [N]: the position whose logits predict that token
    targets: torch.Tensor  # [N]: the completion token ids
    top_ids: torch.Tensor  # [N, k]; a padded alternative repeats the position's first id
    top_logprobs: torch.Tensor  # [N, k]; -inf where padded
    valid: torch.Tensor  # [N, k] bool

    def to(self, device: str) -> Batch:
        return Batch(**{name: getattr(self, name).to(device) for name in self.__dataclass_fields__})


@dataclass
class History:
    steps: list[dict[str, float]] = field(default_factory=list)


# --- reading an export ------------------------------------------------------------------------


def read_export(path: Path) -> list[dict[str, Any]]:
    """The rows of a ``kd`` export: JSONL, or Parquet when the file ends in ``.parquet``."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()  # type: ignore[no-any-return]
    rows = []
    with path.open("rb") as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise KDDataError(f"{path}: line {number} is not JSON: {exc}") from exc
    return rows


def student_identity(tokenizer: Any, name: str) -> dict[str, Any]:
    """The student's tokenizer identity, computed as distillery's teacher backends compute a
    local tokenizer's (``workers.teachers.tokenization``)."""
    from workers.teachers.tokenization import local_tokenizer_info

    return local_tokenizer_info(tokenizer, name)


def check_tokenizer(
    rows: Sequence[dict[str, Any]], identity: dict[str, Any], *, trust_server: bool = False
) -> None:
    """Refuse unless every row's tokenizer identity is the student's: vocab size, sha256 of the
    definition, sha256 of the chat template (when the export gives it).

    An identity the teacher's server reported (``source: "server"``, vLLM's GET
    /tokenizer_info) hashes the served settings, not the tokenizer files: its sha256 cannot be
    compared with a local tokenizer's. Such an export is refused unless ``trust_server``; then
    the vocab size (when given) and the chat template's sha256 are still compared."""
    for row in rows:
        exported = row.get("tokenizer") or {}
        rid = row.get("id")
        if exported.get("sha256") is None:
            raise KDDataError(f"row {rid}: the export gives no tokenizer identity (sha256)")
        keys = ["vocab_size", "sha256", "chat_template_sha256"]
        if exported.get("source") == "server":
            if not trust_server:
                raise KDDataError(
                    f"row {rid}: the teacher's tokenizer identity came from its server "
                    f"({exported.get('name')!r}, source: server), whose sha256 cannot be "
                    "compared with a local tokenizer's; set DISTILLERY_TEACHER__TOKENIZER on "
                    "the worker to record the local identity, or pass --trust-server-tokenizer "
                    "to compare only the vocab size and the chat template"
                )
            keys.remove("sha256")
        for key in keys:
            theirs = exported.get(key)
            if theirs is None and key != "sha256":
                continue
            if theirs != identity.get(key):
                raise KDDataError(
                    f"the student's tokenizer is not the teacher's: {key} is "
                    f"{identity.get(key)!r} for the student ({identity.get('name')}), "
                    f"{theirs!r} in the export (row {rid}, teacher tokenizer "
                    f"{exported.get('name')!r}); train a student that shares the teacher's "
                    "tokenizer and chat template"
                )


def prepare_rows(
    rows: Sequence[dict[str, Any]], tokenizer: Any, vocab: int, max_length: int
) -> tuple[list[Row], int]:
    """Tokenised training rows (completions cut to ``max_length``), and how many were cut.

    The prompt's ids are the chat template rendered as the teacher's backends render it
    (``workers.teachers.tokenization.render_ids``: the text, then its ids)."""
    from workers.teachers.tokenization import render_ids

    prepared, cut = [], 0
    for row in rows:
        rid = str(row.get("id"))
        ids = list(row.get("completion_token_ids") or [])
        top_ids = list(row.get("top_ids") or [])
        top_lps = list(row.get("top_logprobs") or [])
        if not ids:
            continue
        if len(top_ids) != len(ids) or len(top_lps) != len(ids):
            raise KDDataError(
                f"row {rid}: {len(ids)} completion tokens but {len(top_ids)} top_ids and "
                f"{len(top_lps)} top_logprobs positions"
            )
        for t, (alt_ids, alt_lps) in enumerate(zip(top_ids, top_lps, strict=True)):
            if len(alt_ids) != len(alt_lps):
                raise KDDataError(f"row {rid}, position {t}: top_ids and top_logprobs differ")
        if max(ids) >= vocab or max((max(a, default=0) for a in top_ids), default=0) >= vocab:
            raise KDDataError(f"row {rid}: a token id is outside the student's vocabulary")
        if not row.get("messages"):
            raise KDDataError(f"row {rid}: no messages (the prompt)")
        prompt = render_ids(tokenizer, row["messages"], add_generation_prompt=True)
        keep = max_length - len(prompt)
        if keep <= 0:
            cut += 1
            continue
        if keep < len(ids):
            cut += 1
            ids, top_ids, top_lps = ids[:keep], top_ids[:keep], top_lps[:keep]
        prepared.append(Row(rid, prompt + ids, len(prompt), top_ids, top_lps))
    return prepared, cut


def collate(rows: Sequence[Row], pad_id: int) -> Batch:
    """Right-padded inputs and the completion tokens' targets, flattened over the batch."""
    length = max(len(r.input_ids) for r in rows)
    k = max(1, max(len(alts) for r in rows for alts in r.top_ids))
    input_ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    attention = torch.zeros((len(rows), length), dtype=torch.long)
    where, targets, top_ids, top_lps = [], [], [], []
    for b, row in enumerate(rows):
        input_ids[b, : len(row.input_ids)] = torch.tensor(row.input_ids)
        attention[b, : len(row.input_ids)] = 1
        for t, token in enumerate(row.completion_ids):
            where.append((b, row.prompt_length - 1 + t))  # these logits predict `token`
            targets.append(token)
            alts = [int(i) for i in row.top_ids[t]]
            lps = [-math.inf if v is None else float(v) for v in row.top_logprobs[t]]
            first = alts[0] if alts else token
            top_ids.append(alts + [first] * (k - len(alts)))
            top_lps.append(lps + [-math.inf] * (k - len(lps)))
    index = torch.tensor(where, dtype=torch.long)
    top_lp = torch.tensor(top_lps, dtype=torch.float32)
    return Batch(
        input_ids=input_ids,
        attention_mask=attention,
        rows=index[:, 0],
        positions=index[:, 1],
        targets=torch.tensor(targets, dtype=torch.long),
        top_ids=torch.tensor(top_ids, dtype=torch.long),
        top_logprobs=top_lp,
        valid=torch.isfinite(top_lp),
    )


# --- the losses -------------------------------------------------------------------------------


def teacher_buckets(top_logprobs: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(p over the top k [N, k], p_rest [N]): probabilities scaled down when the rounded top k
    sums to more than 1, so that p and p_rest sum to 1."""
    p = torch.where(valid, top_logprobs.exp(), torch.zeros_like(top_logprobs))
    total = p.sum(-1)
    p = p / total.clamp(min=1.0)[:, None]
    return p, (1.0 - p.sum(-1)).clamp(min=0.0)


def student_buckets(
    logits: torch.Tensor, top_ids: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(log q over the top k [N, k], log q_rest [N]): the student's log probabilities of the
    teacher's top ids and of all other ids together (a logsumexp outside the top k)."""
    logits = logits.float()
    log_z = logits.logsumexp(-1)
    log_q = logits.gather(-1, top_ids) - log_z[:, None]
    outside = logits.scatter(-1, top_ids, -math.inf)
    log_rest = (outside.logsumexp(-1) - log_z).clamp(min=-100.0)  # top k == vocab: no tail
    return log_q, log_rest


def kd_loss(
    logits: torch.Tensor,
    batch: Batch,
    *,
    direction: str,
    tail: str = "bucket",
    tail_floor: float = 1e-4,
) -> torch.Tensor:
    """Per-token KL between teacher and student (``direction``: "forward" = KL(p||q),
    "reverse" = KL(q||p)) over the teacher's top k, the tail as ``tail`` says; the mean over
    the tokens that have alternatives (a position the teacher gave none of is left out)."""
    valid = batch.valid
    log_q, log_q_rest = student_buckets(logits, batch.top_ids)
    p, p_rest = teacher_buckets(batch.top_logprobs, valid)
    zero = torch.zeros_like(log_q)
    if tail == "renorm":
        log_p = torch.where(valid, (p / p.sum(-1, keepdim=True)).log(), zero)
        # -1e4, not -inf: a position without alternatives must not make NaN gradients
        log_q = torch.where(valid, log_q, torch.full_like(log_q, -1e4)).log_softmax(-1)
        log_q = torch.where(valid, log_q, zero)
        if direction == "forward":
            terms = torch.where(valid, log_p.exp() * (log_p - log_q), zero).sum(-1)
        else:
            terms = torch.where(valid, log_q.exp() * (log_q - log_p), zero).sum(-1)
    else:
        log_p = torch.where(valid, p.clamp(min=1e-45).log(), zero)
        log_q = torch.where(valid, log_q, zero)
        if direction == "forward":
            top = torch.where(valid, p * (log_p - log_q), zero).sum(-1)
            rest = torch.xlogy(p_rest, p_rest) - p_rest * log_q_rest
        else:
            top = torch.where(valid, log_q.exp() * (log_q - log_p), zero).sum(-1)
            rest = log_q_rest.exp() * (log_q_rest - p_rest.clamp(min=tail_floor).log())
        terms = top + rest
    counted = valid.any(-1)
    return torch.where(counted, terms, torch.zeros_like(terms)).sum() / counted.sum().clamp(min=1)


def step_loss(model: Any, batch: Batch, config: Config) -> tuple[torch.Tensor, dict[str, float]]:
    """The loss ``config.loss`` on one batch, and its parts for the log."""
    out = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
    logits = out.logits[batch.rows, batch.positions]  # [N, V]: the completion positions
    parts: dict[str, torch.Tensor] = {}
    if config.loss == "reverse_kl":
        parts["kd"] = kd_loss(
            logits, batch, direction="reverse", tail=config.tail, tail_floor=config.tail_floor
        )
        loss = parts["kd"]
    else:
        parts["kd"] = kd_loss(logits, batch, direction="forward", tail=config.tail)
        loss = parts["kd"]
        if config.loss == "mix":
            parts["ce"] = F.cross_entropy(logits.float(), batch.targets)
            loss = config.alpha * parts["kd"] + (1 - config.alpha) * parts["ce"]
    return loss, {name: float(value.detach()) for name, value in parts.items()}


# --- training ---------------------------------------------------------------------------------


def batches(rows: list[Row], size: int, seed: int) -> Iterator[list[Row]]:
    """Shuffled batches, epoch after epoch."""
    order = list(range(len(rows)))
    shuffle = random.Random(seed)
    while True:
        shuffle.shuffle(order)
        for start in range(0, len(order), size):
            yield [rows[i] for i in order[start : start + size]]


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def train(config: Config) -> History:
    """Load the student, check the export against its tokenizer, train, save; the step log."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if config.loss not in LOSSES:
        raise KDDataError(f"--loss must be one of {', '.join(LOSSES)}")
    if config.tail not in TAILS:
        raise KDDataError(f"--tail must be one of {', '.join(TAILS)}")
    if not 0 <= config.alpha <= 1:
        raise KDDataError("--alpha must be between 0 and 1")
    if config.steps < 1 or config.batch_size < 1:
        raise KDDataError("--steps and --batch-size must be at least 1")
    dtype = getattr(torch, config.dtype, None)
    if not isinstance(dtype, torch.dtype):
        raise KDDataError(f"--dtype: {config.dtype!r} is not a torch dtype")
    torch.manual_seed(config.seed)
    tokenizer = AutoTokenizer.from_pretrained(config.student)
    rows = read_export(Path(config.data))
    if not rows:
        raise KDDataError(f"{config.data}: no rows")
    identity = student_identity(tokenizer, config.student)
    check_tokenizer(rows, identity, trust_server=config.trust_server_tokenizer)
    device = resolve_device(config.device)
    # typed Any: transformers' own annotations are unions mypy cannot narrow here
    model: Any = AutoModelForCausalLM.from_pretrained(config.student, dtype=dtype)
    model.to(device).train()
    vocab = int(model.get_output_embeddings().weight.shape[0])
    max_length: int = config.max_length or model.config.max_position_embeddings or 4096
    prepared, cut = prepare_rows(rows, tokenizer, vocab, max_length)
    if not prepared:
        raise KDDataError(f"{config.data}: no row with completion tokens fits {max_length}")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.0)
    history = History()
    feed = batches(prepared, config.batch_size, config.seed)
    started = time.perf_counter()
    print(
        f"kd_train: {len(prepared)} rows ({cut} cut to {max_length} tokens), loss {config.loss}, "
        f"tail {config.tail}, {config.steps} steps on {device}",
        file=sys.stderr,
    )
    for step in range(1, config.steps + 1):
        batch = collate(next(feed), pad).to(device)
        loss, parts = step_loss(model, batch, config)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        record = {"step": step, "loss": float(loss.detach()), **parts}
        record["tokens"] = int(batch.targets.numel())
        history.steps.append(record)
        if step % config.log_every == 0 or step == config.steps:
            print(json.dumps(record), file=sys.stderr)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    summary = {
        "config": asdict(config),
        "rows": len(prepared),
        "rows_cut": cut,
        "seconds": time.perf_counter() - started,
        "steps": history.steps,
    }
    (out / "kd_train.json").write_text(json.dumps(summary, indent=1))
    return history


def parse_args(argv: Sequence[str] | None) -> Config:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    defaults = Config(student="", data="", out="")
    parser.add_argument("--student", required=True, help="the student: a transformers folder/name")
    parser.add_argument("--data", required=True, help="a kd export: .jsonl or .parquet")
    parser.add_argument("--out", required=True, help="folder for the trained student")
    parser.add_argument("--loss", choices=LOSSES, default=defaults.loss)
    parser.add_argument("--alpha", type=float, default=defaults.alpha, help="mix: KD weight")
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--tail", choices=TAILS, default=defaults.tail)
    parser.add_argument("--tail-floor", type=float, default=defaults.tail_floor)
    parser.add_argument("--max-length", type=int, default=None)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--device", default=defaults.device, help="auto, cpu, cuda, cuda:1...")
    parser.add_argument("--dtype", default=defaults.dtype, help="float32, bfloat16, float16")
    parser.add_argument("--log-every", type=int, default=defaults.log_every)
    parser.add_argument(
        "--trust-server-tokenizer",
        action="store_true",
        help="accept an identity the teacher's server reported (its sha256 is not comparable)",
    )
    args = parser.parse_args(argv)
    return Config(**{k.replace("-", "_"): v for k, v in vars(args).items()})


def main(argv: Sequence[str] | None = None) -> History:
    """Command-line entry point; a refused export exits with status 2 and the reason."""
    config = parse_args(argv)
    try:
        return train(config)
    except KDDataError as exc:
        print(f"kd_train: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc


if __name__ == "__main__":
    main()
