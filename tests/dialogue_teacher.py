"""A scripted teacher for dialogue jobs: it plays the simulated user and the assistant.

It tells the roles apart by the system message (the user simulator's prompt opens with "You are
role-playing a human user"), reads the turn from the request ("user message t of T" for a user turn,
the number of user turns for an answer), and writes texts that pass curation: distinct user
questions per turn and answers that do not repeat them. Each text carries a tag, ``s<seed>``
(``c<call>`` without a seed), so conversations differ by their seeds.

It can be told to fail a turn: ``break_user_at=t`` makes the user turn ``t`` break character
(``break_text``, "As an AI language model ..." unless changed), ``bad_answer_at=t`` makes the
assistant's turn ``t`` a refusal (``bad_answer_text``); ``when(opening)`` limits either to the
conversations whose first user turn (or, for a taxonomy opening request, its topic) it accepts.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from tests.scripted_teacher import ScriptedTeacher
from workers.teachers.base import TeacherRequest

SIMULATOR = "You are role-playing a human user"
BREAK_TEXT = "As an AI language model, I can explain the rest of this topic for you."
BAD_ANSWER = "I'm sorry, but I can't help with that."
USER_QUESTIONS = (
    "Thanks! Could you show me a concrete example of that?",
    "Interesting. What mistakes do beginners usually make here?",
    "How would this change for a large project with many people?",
    "Which tools or books would you recommend to go deeper?",
)
_TURN = re.compile(r"user message (\d+) of \d+")
_FIRST_USER = re.compile(r"<user_message>\n(.*?)\n</user_message>", re.DOTALL)
_TOPIC = re.compile(r'conversation about "(.*?)"')


def tag(request: TeacherRequest, call: int) -> str:
    seed = request.sampling.seed
    return f"s{seed}" if seed is not None else f"c{call}"


def user_text(turn: int, mark: str, topic: str | None = None) -> str:
    """What the simulated user says at `turn` (1: the opening of a taxonomy leaf)."""
    if turn == 1:
        return f"I want to learn about {topic}. Where should I start? ({mark})"
    return f"{USER_QUESTIONS[(turn - 2) % len(USER_QUESTIONS)]} ({mark})"


def answer_text(turn: int, mark: str) -> str:
    """What the assistant answers at `turn`."""
    return (
        f"Answer {turn} ({mark}): practise regularly, check each result carefully, and build on "
        "what already works before adding anything new."
    )


class DialogueTeacher(ScriptedTeacher):
    """See the module docstring; counts user and assistant requests."""

    def __init__(
        self,
        model: str = "scripted-model",
        *,
        break_user_at: int | None = None,
        break_text: str = BREAK_TEXT,
        bad_answer_at: int | None = None,
        bad_answer_text: str = BAD_ANSWER,
        when: Callable[[str], bool] | None = None,
        **kw: object,
    ) -> None:
        super().__init__(model, **kw)  # type: ignore[arg-type]
        self.break_user_at = break_user_at
        self.break_text = break_text
        self.bad_answer_at = bad_answer_at
        self.bad_answer_text = bad_answer_text
        self.when = when
        self.user_requests = 0
        self.assistant_requests = 0
        self.respond = self._respond

    def _respond(self, request: TeacherRequest) -> str:
        system = str(request.messages[0]["content"])
        last = str(request.messages[-1]["content"])
        mark = tag(request, self.calls)
        if system.startswith(SIMULATOR):
            self.user_requests += 1
            found = _TURN.search(last)
            turn = int(found.group(1)) if found else 1
            topic_found = _TOPIC.search(last)
            first = _FIRST_USER.search(last)
            opening = topic_found.group(1) if topic_found else (first.group(1) if first else "")
            if turn == self.break_user_at and (self.when is None or self.when(opening)):
                return self.break_text
            return user_text(turn, mark, topic_found.group(1) if topic_found else None)
        self.assistant_requests += 1
        users = [m for m in request.messages if m["role"] == "user"]
        turn = len(users)
        opening = str(users[0]["content"])
        if turn == self.bad_answer_at and (self.when is None or self.when(opening)):
            return self.bad_answer_text
        return answer_text(turn, mark)
