"""Language identification for the `language` filter: py3langid, whose model ships in the wheel.

Why py3langid (a maintained fork of langid.py, Lui & Baldwin 2012): its naive-Bayes byte n-gram
model is inside the 4.6 MB wheel (nothing is downloaded at run time), it loads in ~0.5 s and
classifies a short instruction in ~0.04 ms, and its probabilities are calibrated across lengths.
Compared on this project's labeled set (295 English texts, 58 in 20 other languages; rule
below): py3langid caught 55/58 (the 3 misses were CJK, now counted by characters) with 1 English
false positive (a French translation answer, allowed at the answer stage);
lingua-language-detector caught 49/58 with 1 (96 MB wheel, 7.5 s to load, ~1 ms a text);
langdetect flagged 8-15 English texts at any threshold (and is random unless seeded).

Decision rule, measured on that set: a text is in another language only when it has at least
`MIN_WORDS` words and the probability of every accepted language (with its close relatives,
`RELATIVES`) together is at most `MAX_ACCEPTED_PROBABILITY`. Shorter texts, and texts the model
cannot place, are never rejected.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
import unicodedata
from collections import Counter
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Final

import numpy as np
import py3langid
from py3langid.langid import MODEL_DIR, MODEL_FILE, LanguageIdentifier
from py3langid.modelio import load_model

MIN_WORDS: Final = 4  # shorter texts are not judged (detection on 1-3 words is shaky)
MAX_ACCEPTED_PROBABILITY: Final = 0.01  # reject only when the accepted languages are this unlikely
MAX_CHARS: Final = 2000  # the head of a long answer says its language
DOMINANT_SHARE: Final = 0.2  # a language this share of the seeds is "the seeds' language" too
MIN_VOTE_PROBABILITY: Final = 0.5  # a seed votes for its language only when placed this surely

# Labels the model confuses with a language, counted as that language (and each other).
RELATIVES: Final[tuple[frozenset[str], ...]] = (
    frozenset({"en", "pcm"}),  # Nigerian Pidgin: near-English on short texts
    frozenset({"id", "ms", "jv"}),
    frozenset({"no", "nn", "da"}),
    frozenset({"hr", "bs", "sr"}),
    frozenset({"cs", "sk"}),
    frozenset({"zh", "wuu", "yue"}),
    frozenset({"ar", "ary", "arz"}),
    frozenset({"uz", "uzs"}),
    frozenset({"gn", "gug"}),
)
NO_LANGUAGE: Final = "zxx"
# English names of languages: an instruction naming one may get an answer in it
LANGUAGE_NAMES: Final = (
    "english", "french", "german", "spanish", "italian", "portuguese", "dutch", "russian",
    "chinese", "mandarin", "cantonese", "japanese", "korean", "arabic", "hindi", "bengali",
    "urdu", "turkish", "vietnamese", "thai", "indonesian", "malay", "polish", "swedish",
    "norwegian", "danish", "finnish", "greek", "hebrew", "persian", "farsi", "swahili",
    "tagalog", "filipino", "ukrainian", "czech", "slovak", "romanian", "hungarian", "latin",
    "catalan", "basque", "welsh", "irish", "tamil", "telugu", "marathi", "punjabi", "gujarati",
    "esperanto", "afrikaans", "zulu", "xhosa", "yoruba", "igbo", "hausa", "amharic", "somali",
    "serbian", "croatian", "bosnian", "bulgarian", "slovenian", "lithuanian", "latvian",
    "estonian", "icelandic", "albanian", "armenian", "georgian", "kazakh", "uzbek", "mongolian",
    "nepali", "sinhala", "burmese", "khmer", "lao", "javanese", "malagasy", "maltese",
)  # fmt: skip  # the model's label for "no linguistic content"

_CODE_BLOCK = re.compile(r"```.*?(?:```|$)|`[^`\n]*`", re.DOTALL)
_URL = re.compile(r"\b(?:https?://|www\.)\S+", re.IGNORECASE)
_WORD = re.compile(r"\w+")
# scripts written without spaces: two characters count as one word
NO_SPACES = re.compile(
    r"[\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]"
)


def _fold() -> dict[str, str]:
    folded: dict[str, str] = {}
    for group in RELATIVES:
        two = [label for label in group if len(label) == 2]
        if len(two) == 1:
            folded |= {label: two[0] for label in group if len(label) != 2}
    return folded


_FOLDED: Final = _fold()


_LOADING: Final = threading.Lock()


@cache
def _load() -> LanguageIdentifier:
    try:
        return _mapped(_cache_dir())
    except (OSError, ValueError):  # no writable cache: a private copy, as py3langid loads it
        return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    if not os.path.isabs(base):  # no home: not a folder relative to wherever the worker runs
        raise OSError(f"no absolute cache folder ({base!r})")
    model = MODEL_DIR / MODEL_FILE
    stamp = f"{py3langid.__version__}-{model.stat().st_size}-{model.stat().st_mtime_ns}"
    return Path(base) / "distillery" / f"py3langid-{stamp}"


def _mapped(folder: Path) -> LanguageIdentifier:
    """The model with its two big tables (the byte automaton, 39 MB, and the feature
    weights, 28 MB) memory-mapped from an uncompressed copy in `folder`, written once: the
    worker processes of a machine share those pages, and each holds only the pages its texts
    touch, instead of ~70 MB of its own. Same arrays, same verdicts."""
    names = ("ptc", "pc", "nextmove", "row", "output")
    if not all((folder / f"{n}.npy").exists() for n in (*names, "classes")):
        ptc, pc, classes, nextmove, row, output = load_model(MODEL_DIR / MODEL_FILE)
        arrays = {
            "ptc": np.asarray(ptc),
            "pc": np.asarray(pc),
            "nextmove": np.frombuffer(nextmove, np.uint32),
            "row": np.frombuffer(row, np.uint16),
            "output": np.asarray(output, np.int64),
            "classes": np.asarray(classes, str),
        }
        folder.mkdir(parents=True, exist_ok=True)
        for name, array in arrays.items():  # each file whole or absent (processes race here)
            fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
            with os.fdopen(fd, "wb") as out:
                np.save(out, array, allow_pickle=False)
            os.replace(tmp, folder / f"{name}.npy")
    # plain ndarray views of the maps: numpy's memmap subclass costs per indexing call
    ptc = np.load(folder / "ptc.npy", mmap_mode="r").view(np.ndarray)
    nextmove = np.load(folder / "nextmove.npy", mmap_mode="r").view(np.ndarray)
    small = {n: np.load(folder / f"{n}.npy") for n in ("pc", "row", "output", "classes")}
    return LanguageIdentifier(
        ptc,
        small["pc"],
        small["classes"].tolist(),
        memoryview(nextmove),  # indexed byte by byte: a memoryview gives plain ints, fast
        small["output"].tolist(),
        norm_probs=True,
        tk_row=small["row"].tolist(),
    )


def _identifier() -> LanguageIdentifier:
    """The model, loaded once per process: tasks of a worker call this from several threads at
    once, and each of them loading its own copy cost ~0.5 s of CPU and ~50 MB apiece."""
    if _load.cache_info().currsize:
        return _load()
    with _LOADING:
        return _load()


def warm_up() -> None:
    """Load the model now (a worker calls this at start, before its first task)."""
    _identifier()


def supported() -> frozenset[str]:
    """The ISO 639-1 codes the model knows (its other labels are 3-letter codes)."""
    return frozenset(label for label in _identifier().labels if len(label) == 2)


def expand(languages: Iterable[str]) -> frozenset[str]:
    """Accepted labels: the languages and their close relatives."""
    accepted = set(languages)
    for group in RELATIVES:
        if accepted & group:
            accepted |= group
    return frozenset(accepted)


def _prose(text: str) -> str:
    """The natural-language part: no code, no URLs, at most `MAX_CHARS` characters."""
    text = _URL.sub(" ", _CODE_BLOCK.sub(" ", text))
    return unicodedata.normalize("NFKC", text)[:MAX_CHARS]


def word_count(text: str) -> float:
    """Runs of word characters; in scripts written without spaces two characters make a word."""
    count = 0.0
    for word in _WORD.findall(text):
        unspaced = len(NO_SPACES.findall(word))
        count += unspaced / 2 if unspaced else 1
    return count


def detect(text: str) -> tuple[str, float] | None:
    """The most likely language and its probability, or None for short or non-language text."""
    prose = _prose(text)
    if word_count(prose) < MIN_WORDS:
        return None
    label, probability = _identifier().classify(prose)
    return None if label == NO_LANGUAGE else (label, probability)


def foreign(text: str, accepted: frozenset[str]) -> tuple[str, float] | None:
    """`(label, probability)` when `text` is confidently in none of the `accepted` labels.

    `accepted` is what `expand` returns. None: an accepted language, too short, or unsure.
    """
    prose = _prose(text)
    if word_count(prose) < MIN_WORDS:
        return None
    identifier = _identifier()
    # the top label alone settles most texts: classify's argmax is rank's first entry (same
    # scores, first of equals), without ranking ~140 labels; rank only for a foreign top label
    label, _ = identifier.classify(prose)
    if label in accepted or label == NO_LANGUAGE:
        return None
    ranked = identifier.rank(prose)
    label, probability = ranked[0]
    if label in accepted or label == NO_LANGUAGE:
        return None
    if sum(p for lang, p in ranked if lang in accepted) > MAX_ACCEPTED_PROBABILITY:
        return None
    return label, probability


def dominant(texts: Iterable[str], share: float = DOMINANT_SHARE) -> tuple[str, ...]:
    """The languages of at least `share` of the texts that could be placed, most common first.

    Empty when no text could be placed (the caller then checks no language). 3-letter labels
    are folded into their ISO 639-1 relative where there is one.
    """
    counts: Counter[str] = Counter()
    for text in texts:
        found = detect(text)
        if found is not None and found[1] >= MIN_VOTE_PROBABILITY:
            counts[_FOLDED.get(found[0], found[0])] += 1
    total = sum(counts.values())
    return tuple(lang for lang, n in counts.most_common() if len(lang) == 2 and n >= share * total)
