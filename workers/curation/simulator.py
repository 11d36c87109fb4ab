"""The simulated user's turns of a dialogue: is the user still a user?

A dialogue job has the teacher play both sides (UltraChat, Ding et al. 2023): the assistant, and
a user simulator prompted to stay in character. The simulator's usual failure is to slip into
the assistant's voice: it answers instead of asking, offers help, says it is an AI, or writes
both sides with role labels. `check_user_turn` is the curation step of a simulated user turn;
it returns the first problem found, or None:

- `empty`: no letter or digit;
- `truncated`: the teacher stopped at its token limit;
- `breaks_character`: a role label at the start of a line ("User:", "Assistant:", "### Human",
  "<|assistant|>", "[INST]"), talk about being an AI ("as an AI language model", "I'm an AI
  assistant", "I am your assistant"; `patterns.DISCLAIMER_ANYWHERE` and more), the assistant's
  service phrases ("How can I help you?", "I hope this helps", "Let me know if you have any
  other questions"), or an answer: a turn that opens like one ("Sure!", "Certainly,", "Great
  question", "Here's how ...", "I'd be happy to ...") and asks nothing (no question mark) in
  at least `ANSWER_WORDS` words;
- `copies_turn`: ROUGE-L F >= `COPY_THRESHOLD` with the assistant's turn before it, or with the
  user's own turn before that (a simulator stuck in a loop).

Pure: plain text in, :class:`Rejection` out. The assistant's turns go through the answer filters
(`filters.ANSWER_FILTERS`) instead.
"""

from __future__ import annotations

import re
from typing import Final

from workers.curation import patterns, types
from workers.curation.dedup import rouge_l
from workers.curation.types import Rejection

ANSWER_WORDS: Final = 25  # an answer-like opening with no question is an answer from here on
COPY_THRESHOLD: Final = 0.8  # ROUGE-L F with the previous turn: a copy

_ROLES = r"(?:user|assistant|human|ai|a\.i\.|system|gpt|chatgpt|bot|chatbot)"
ROLE_LABEL: Final = re.compile(
    # "User:", "**Assistant:**", "### Human", "> AI:" at the start of a line
    rf"(?im)^[ \t>*_#-]*{_ROLES}[ \t]*(?:\*\*|__)?[ \t]*(?::|\*\*:|$)"
    # chat-template markers: <|user|>, <|im_start|>, <user_message>, </assistant>, [INST]
    r"|<\|?/?(?:user|assistant|system|im_start|im_end|eot_id|start_header_id)(?:_message)?\|?>"
    r"|\[/?inst\]"
)
AS_ASSISTANT: Final = re.compile(
    r"\b(?:i'm|i am) (?:your|an|the|a|just an?|only an?) (?:\w+ )?assistant\b"
    r"|\bhow (?:can|may|could) i (?:help|assist) you\b"
    r"|\b(?:is there )?anything else (?:that )?i can (?:help|assist|do for you)\b"
    r"|\bi hope (?:this|that) (?:helps|was helpful|answers your question)\b"
    r"|\blet me know if you (?:have|need) any (?:other |more |further |additional )?"
    r"(?:questions|help|assistance|clarification)\b"
    r"|\bfeel free to (?:ask|reach out)\b"
    r"|\b(?:i'm|i am) (?:always )?(?:happy|glad|here) to (?:help|assist)\b"
)
ANSWER_OPENING: Final = re.compile(
    r"^(?:sure|certainly|of course|absolutely|definitely|no problem)\b[!,.:]"
    r"|^(?:that's an? |what an? |an? )?(?:great|good|excellent|interesting) question\b"
    r"|^(?:i'd|i would) be (?:happy|glad|delighted) to\b"
    r"|^(?:to answer your question|let me explain|allow me to explain)\b"
    r"|^here(?:'s| is| are) (?:how|what|why|a (?:quick |brief |short |simple |detailed )?"
    r"(?:breakdown|overview|summary|explanation|guide|step|list|rundown)|an (?:overview|"
    r"explanation|example)|some (?:tips|ideas|examples|steps|options))\b"
)


def check_user_turn(
    text: str,
    *,
    previous_assistant: str | None = None,
    previous_user: str | None = None,
    finish_reason: str | None = None,
) -> Rejection | None:
    """The first reason the simulated user turn `text` must not be kept, or None."""
    if not any(ch.isalnum() for ch in text):
        return Rejection(types.EMPTY, "user turn has no letter or digit")
    if finish_reason == "length":
        return Rejection(types.TRUNCATED, "user turn: finish_reason=length")
    if found := ROLE_LABEL.search(text):
        return Rejection(types.BREAKS_CHARACTER, f"role label {found.group(0).strip()!r}")
    normal = patterns.normalise(text)
    body = normal.lstrip("*_#>-•:!¡¿\"' ")
    if found := patterns.DISCLAIMER_ANYWHERE.search(body) or AS_ASSISTANT.search(body):
        return Rejection(types.BREAKS_CHARACTER, f"speaks as the assistant: {found.group(0)!r}")
    opening = ANSWER_OPENING.match(body)
    if opening and "?" not in body and len(body.split()) >= ANSWER_WORDS:
        return Rejection(
            types.BREAKS_CHARACTER, f"answers instead of asking: opens {opening.group(0)!r}"
        )
    for other, whose in ((previous_assistant, "assistant"), (previous_user, "user")):
        if other:
            score = rouge_l(text, other)
            if score >= COPY_THRESHOLD:
                return Rejection(
                    types.COPIES_TURN, f"rouge_l={score:.3f} with the {whose}'s previous turn"
                )
    return None
