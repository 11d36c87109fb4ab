"""Pattern sets of the refusal and non-text filters: regexes over normalised words and stems.

Both work on `normalise(text)` (NFKC, casefolded, straight quotes and apostrophes, single
spaces), so "I’M UNABLE" and "i'm unable" are one form. Patterns are built from slots (who,
negation, verb; verb, window, medium) rather than listing phrases, so rewordings match.

Refusals (`refusal`): an assistant declining (`I + negation + verb of helping or producing`,
"must decline", "against my guidelines", "not appropriate for me to", ...) counts only where
it dominates the text: in its first `HEAD_CHARS` characters, or anywhere in a text of at most
`SHORT_WORDS` words, and never inside quotation marks or brackets (a letter that quotes "I
can't come" is an answer). Talk about being an AI ("as an AI language model, ...", "I don't
have personal opinions", "my knowledge cutoff") counts anywhere. An answer that is only "I
don't know" / "N/A" / "It depends." / "TBD" / "Answer:" / "[insert bio here]" is a
non-answer. An inability bounded in time ("I can't reply until Monday") is not a refusal.

Non-text tasks (`non_text`): instructions are stemmed (Snowball English), so "draw", "drawing",
"drew" and "drawn", or "photo", "photos" and "photographs", are one form. A task is non-text
when it asks to produce a medium (a production verb at the head of a clause with a medium in
its object: "generate an image", "make a bar chart"), starts with a drawing or recording verb
("sketch a cat", "film a tutorial"; not "draw a conclusion", "sketch out a plan"), asks to
sing, play music, listen or watch, refers to supplied material ("this photo", "the chart
below", "the attached PDF", "the spreadsheet I sent", "using the screenshot", "Figure 2"),
asks to act on the user's papers ("upload the report", "scan the receipt"), or to a URL.
"in words" / "ASCII art" make it text.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Final

import snowballstemmer

_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u02bc": "'", "\u00b4": "'",
                         "`": "'", "\u201c": '"', "\u201d": '"', "\u201e": '"',
                         "\u00ab": '"', "\u00bb": '"'})  # fmt: skip


def normalise(text: str) -> str:
    """NFKC, casefold, straight quotes, whitespace collapsed to single spaces."""
    return " ".join(unicodedata.normalize("NFKC", text).translate(_QUOTES).casefold().split())


def _any(*alternatives: str) -> str:
    return "(?:" + "|".join(alternatives) + ")"


# ------------------------------------------------------------------------------- refusals
HEAD_CHARS: Final = 120  # a refusal this early in a text dominates it
SHORT_WORDS: Final = 30  # ... and anywhere in a text this short

_SUBJECT = r"\b(?:i|we)"
_ADVERBS = (
    r"(?:(?:really|simply|just|truly|currently|therefore|unfortunately|sadly|regrettably|"
    r"respectfully|politely|still|honestly|ultimately|also|definitely|certainly|absolutely|"
    r"afraid|so|very|now|,) )*"
)
_VERB = _any(
    r"help(?! but\b)", "assist", "aid", "support", "provide", "offer", "give", "share",
    "supply", "comply", "fulfil+", "satisfy", "honou?r", "accommodate", "grant", "complete",
    "do", "perform", "carry out", "answer", "respond", "reply", "address", "engage",
    "participate", "take part", "discuss", "comment", "create", "generate", "produce",
    "write", "compose", "draft", "develop", "craft", "design", "code", "program", "invent",
    "fabricate", "impersonate", "pretend", "role-?play", "continue", "proceed", "go along",
    "be (?:of )?(?:any )?(?:help|assistance|service|use)", "be involved", "condone",
    "endorse", "encourage", "promote", "facilitate", "enable", "recommend", "advise",
    "predict", "forecast", "guess", "guarantee", "access", "browse", "view", "see", "open",
    "display", "show", "play", "hear", "listen", "watch", "draw", "execute", "run",
    "process", "handle", "translate", "summari[sz]e", "disclose", "reveal", "divulge",
    "repeat", "think of", "include", "set", "come up with", "put together", "go (?:any )?further",
    "walk", "guide", "teach", "instruct", "look up", "drop", "ignore", "disregard", "bypass",
    "break", "override", "set aside", "abandon",
    r"(?:explain|describe|tell)(?!(?: you)? how (?:\w+ )?(?:much|happy|glad|grateful|"
    r"beautiful|amazing|good|proud|excited|sorry|lucky|relieved)| the feeling| in words)",
)  # fmt: skip
_NEGATION = _any(
    r"can ?not", "can't", "cant", "could not", "couldn't", "won't", "will not", "wont",
    "would not", "wouldn't", "shall not", "shan't", "should not", "shouldn't", "must not",
    "may not",
    r"(?:am|'m|are|'re) (?:not |un)(?:able|allowed|permitted|authori[sz]ed|willing|"
    r"going|comfortable|designed|programmed|equipped|capable|in a position) to",
    r"(?:am|'m|are|'re) not going to",
    r"(?:do not|don't|dont) (?:think (?:i|we) (?:can|could|should)|feel comfortable)",
    r"(?:do not|don't|dont) have the (?:ability|capability|capacity|means|permission) to",
    r"(?:'d|would) (?:prefer|rather) not(?: to)?",
    "refuse to", "decline to",
    r"have no (?:way|means|ability) (?:to|of)",
)  # fmt: skip
_AND_NEGATION = r"(?:(?:and|or) (?:will not|won't|would not|wouldn't|should not|shouldn't) )?"
_BE_DOING = (  # "I won't be writing that joke"
    r"(?:be (?:writ|help|assist|provid|creat|generat|produc|shar|answer|respond|draft|"
    r"compos|engag|participat|fulfill|complet|offer|supply)ing\b)"
)
_NOT_ENOUGH = (  # "I can't recommend it enough" praises; "I can't reply until Monday" is a date
    r"(?![^.!?\n]*\b(?:enough|until|till|before)\b)"
)

REFUSAL_AT_HEAD: Final = re.compile(
    "|".join(
        [
            # an apology opening the text, then a negation in the same sentence
            r"^(?:i'm |i am |i )?(?:so |very |really |truly |terribly )?(?:sorry|apologi[sz]e|"
            r"my apologies|apologies)\b[^.!?\n]{0,80}?\b(?:can't|cannot|can not|won't|"
            r"will not|wouldn't|unable|not able|(?:do not|don't) have access|not possible|"
            r"not allowed|not permitted)",
            rf"{_SUBJECT} ?{_ADVERBS}{_NEGATION} {_ADVERBS}{_AND_NEGATION}"
            rf"(?:be able to )?{_ADVERBS}(?:{_VERB}\b|{_BE_DOING}){_NOT_ENOUGH}",
            rf"{_SUBJECT} ?(?:must|have to|need to|'ll have to|will have to|'d have to|"
            r"would have to|(?:am |'m )going to have to|(?:am |'m )compelled to) "
            rf"{_ADVERBS}(?:decline|refuse|pass|refrain)\b",
            r"\b(?:it|that|this)\b[^.!?\n]{0,20}\b(?:not (?:be )?(?:possible|appropriate|"
            r"ethical|responsible|right)|impossible|inappropriate|unethical|irresponsible) "
            r"for me\b",
            r"\b(?:that|this|it|which)(?:'s| is|) ?(?:not|isn't) (?:something|a request|a task|"
            r"a thing) (?:that )?(?:i|we)\b",
            r"\b(?:beyond|outside) (?:what|the scope of what) (?:i|we) "
            r"(?:can|am able to|'m able to|am allowed to|'m allowed to)\b",
            r"\b(?:isn't|is not) something (?:i|we)(?:'m| am|'re| are)? (?:can|could|will|would|"
            r"able|willing|comfortable|prepared|going|allowed|permitted)\b",
            r"\b(?:that|this)(?:'s| is) not (?:possible|appropriate|something i can do)\b",
            rf"{_SUBJECT} ?(?:'m|am|are|'re) (?:not comfortable|uncomfortable)\b",
            rf"{_SUBJECT} (?:do not|don't|dont) feel comfortable\b",
            r"\b(?:this|that|your|the) request (?:goes against|violates|is against|"
            r"conflicts with|breaches|falls outside)",
            r"\b(?:conflicts? with|contrary to|in (?:violation|breach) of|not (?:in line|"
            r"consistent|compatible) with) (?:my|our) (?:\w+ )?(?:programming|guidelines|"
            r"principles|polic(?:y|ies)|rules|terms|ethics|values)\b",
            r"\b(?:against|violates?|breach(?:es)?|outside) (?:my|our|the|openai's|"
            r"anthropic's) (?:\w+ )?(?:programming|guidelines|principles|polic(?:y|ies)|"
            r"rules|terms|ethics)\b",
            rf"{_SUBJECT} ?(?:was|am|'m|were|are|'re) (?:not )?(?:programmed|designed|built) to\b",
        ]
    )
)

_AI = (
    r"(?:ai|a\.i\.|artificial intelligence|(?:large )?language model|llm|chat ?bot|bot|"
    r"text-based (?:ai|model|assistant|program|system)|(?:ai|virtual|digital) assistant|"
    r"computer program)"
    r"(?: (?:language |text |chat )?(?:model|assistant|system|chatbot|program))?"
)
_NOT_A_ROLE = (
    r"(?! (?:researcher|engineer|scientist|developer|company|startup|expert|ethicist|ethics|"
    r"enthusiast|professional|specialist|course|class|student|teacher|policy|lab|team|"
    r"product|project|tool|ethicist|consultant|writer|journalist|lawyer))"
)
DISCLAIMER_ANYWHERE: Final = re.compile(
    "|".join(
        [
            rf"\b(?:as|being) an? {_AI}{_NOT_A_ROLE}(?=\s*(?:,|i\b|i'm\b|my\b|we\b|it\b))",
            rf"\b(?:i'm|i am) (?:just |only |merely |simply |but )?an? {_AI}\b{_NOT_A_ROLE}",
            r"\bi (?:don't|do not|cannot|can't) (?:have|possess|form) (?:any )?(?:personal "
            r"(?:opinions|views|feelings|beliefs|preferences|experiences|memories)|feelings "
            r"or|emotions|consciousness|a (?:physical )?body|real-time|internet access|"
            r"browsing|memory of|the ability to (?:browse|access|see|hear|remember|feel|"
            r"experience|make|search|call|send|view|set|place)|access to (?:the internet|real-time|"
            r"current|live|your|personal|external|the web|browsing|external))",
            r"\b(?:my|the) (?:knowledge|training) (?:cutoff|cut-off|cut off)\b",
            r"\bas of my (?:last )?(?:knowledge|training) (?:update|cutoff|cut-off)\b",
            r"\bi ?(?:cannot|can't|am unable to|'m unable to|am not able to|'m not able to) "
            r"(?:browse|access|search|surf) (?:the )?(?:internet|web|online)\b",
            r"\bi ?(?:cannot|can't|am unable to|'m unable to|am not able to|'m not able to) "
            r"(?:make|place|receive|take) (?:phone |voice |video )?calls\b",
        ]
    )
)

_ABOUT_IT = r"(?: (?:about|of) (?:that|this|it|the answer))?"
NON_ANSWER: Final = re.compile(
    r"^(?:(?:sorry|hmm+|well|honestly),? )?"
    r"(?:i (?:don't|do not) know(?: the answer)?|(?:i'm |i am )?(?:not (?:sure|certain)|unsure)"
    rf"{_ABOUT_IT}|i have no idea|no idea|n/?a|not applicable|no answer|no comment|idk|"
    r"no response|none given|tbd|tba|tbc|to be (?:determined|decided|announced|confirmed)|"
    r"todo|unanswerable|i (?:can't|cannot) (?:answer|say)(?: that| this| for (?:sure|certain))?|"
    r"i (?:don't|do not) have (?:an|the|a good) answer(?: (?:for|to) (?:that|this|it))?|"
    r"i (?:don't|do not) have enough (?:information|info|context|data|details)"
    r"(?: to (?:answer|respond|say)(?: that| this| it)?)?|"
    r"(?:it|that) (?:all |really |just )?depends(?: on (?:the |your )?(?:person|people|"
    r"situation|context|circumstances|case|many factors|a lot of factors|you))?|"
    rf"(?:let me think|i'll have to think|i need to think){_ABOUT_IT}|"
    r"(?:(?:that's|that is|what) an? )?(?:great|good|interesting|excellent) question|"
    r"there are (?:many|several|lots of|various|a lot of) (?:possibilities|options|"
    r"possible answers|answers)|"
    # a label with nothing after it, or a placeholder in brackets
    r"(?:answer|output|response|result|solution|reply)\s*:|"
    r"[\[(<{] *(?:no|insert|your|placeholder|blank|empty|add|todo)\b[^\])>}]*[\])>}])"
    r"(?:,? sorry)?[.!]*$"
)

# Quoted or bracketed spans: a refusal inside one is content, not the answer's own voice.
_QUOTED = re.compile(
    r'"[^"\n]*"|\([^()\n]*\)|\[[^\[\]\n]*\]|(?<![\w\'])\'(?:[^\'\n]|(?<=\w)\'(?=\w))+\'(?!\w)'
)


def _unquoted(normal: str) -> str:
    """The text with quoted and bracketed spans blanked (same length, so offsets hold)."""
    return _QUOTED.sub(lambda m: " " * len(m.group(0)), normal)


def refusal(text: str) -> str | None:
    """What makes `text` a refusal, disclaimer or non-answer, or None."""
    normal = normalise(text)
    body = normal.lstrip("*_#>-•:!¡¿ ")  # markdown and bullets before the first word
    if NON_ANSWER.match(body):
        return f"non-answer {body[:40]!r}"
    visible = _unquoted(body)
    if found := DISCLAIMER_ANYWHERE.search(visible):
        return f"disclaimer {found.group(0)!r}"
    short = len(visible.split()) <= SHORT_WORDS
    for found in REFUSAL_AT_HEAD.finditer(visible):
        if short or found.start() < HEAD_CHARS:
            return f"refusal {found.group(0)!r}"
    return None


# ------------------------------------------------------------------------------ non-text
_STEMMER = snowballstemmer.stemmer("english")
_IRREGULAR: Final = {"drew": "draw", "drawn": "draw", "sang": "sing", "sung": "sing",
                     "took": "take", "taken": "take", "sent": "send", "shot": "shoot",
                     "pics": "pic", "photos": "photo", "vids": "video",
               # kept apart from a medium's stem: "animals" is not "anim"(ation), "a record" is
               # data ("recordz") unless it is a recording
               "animal": "animal", "animals": "animal", "record": "recordz", "records": "recordz",
               "recorded": "record", "recording": "record", "recordings": "record",
               # a person is not their medium: "what should a photographer include"; a
               # mapping (data) is not a map
               "photographer": "photographer", "photographers": "photographer",
               "illustrator": "illustrator", "illustrators": "illustrator",
               "animator": "animator", "animators": "animator", "recorder": "recorder",
               "recorders": "recorder", "mapping": "mapping", "mappings": "mapping"}  # fmt: skip
_TOKEN = re.compile(r"https?://\S+|www\.\S+|[a-z0-9]+(?:[-'][a-z0-9]+)*|[.!?;:,]")


@lru_cache(maxsize=65536)
def _stem(word: str) -> str:
    return _IRREGULAR.get(word) or _STEMMER.stemWord(word)


def stems(text: str) -> str:
    """The normalised text as stems separated by single spaces (punctuation kept as tokens)."""
    return " ".join(_stem(t) for t in _TOKEN.findall(normalise(text)))


# Media a text model can neither see nor make (stems). Strong: visual or audio by themselves.
_MEDIA = (
    r"(?:qr code|barcod|imag|pictur|pic|photo|photograph|screenshot|draw|sketch|paint|illustr|"
    r"diagram|flowchart|infograph|video|clip|footag|audio|record|podcast|voicemail|gif|anim|x-ray|"
    r"xray|mri|ultrasound|slide|slideshow|logo|icon|map|chart|graph|poster|comic|cartoon|"
    r"meme|thumbnail|selfi|portrait|sculptur|collag|melodi|music|watercolour|watercolor|"
    r"mural|3d|3d model|jingl|ringtone|flyer|brochur|banner|wallpap|sticker|tattoo|sprite|"
    r"pixel-art|pixel art|mockup|wirefram|avatar|emblem|histogram|scatter|heatmap|"
    r"voic memo|voic note|voic messag|voic record)"
)
# Weak: files and pages, or media that are often the topic of a text task.
_MATERIAL = (
    r"(?:figur|film|movi|song|file|pdf|spreadsheet|document|attach|websit|webpag|link|url|csv|"
    r"excel)"
)
# A medium followed by one of these is a topic, not a medium ("video game", "image classifier").
_TOPIC = (
    r"(?:script|review|titl|caption|descript|idea|concept|name|prompt|lyric|transcript|"
    r"summari|outlin|list|plan|brief|proposal|pitch|taglin|slogan|text|stori|critiqu|essay|"
    r"analysi|data|structur|class|librari|databas|algorithm|theori|queri|api|function|code|"
    r"game|book|industri|festiv|genr|critic|permiss|format|size|extens|path|system|manag|"
    r"server|style|classifi|process|compress|editor|softwar|app|tool|model|recognit|"
    r"generat|design|engin|platform|servic|sensor|camera|format|codec|histori|technolog|"
    r"journal|artist|lover|maker|director|star|studio|theater|theatr|credit|license|right)"
)
_MEDIUM = rf"{_MEDIA}(?! {_TOPIC}\b)"
_STOP = r"(?:of|in|for|to|with|on|about|from|by|and|or|that|which|who|as|at|than|,|\.)"
_NOT_STOP = rf"(?!{_STOP} )\S+ "
_HEAD = (
    r"(?:^|[.!?;:,] |\b(?:then|also|pleas|kind|now|first|next|final|me|us) |"
    r"\b(?:can|could|would|will) you (?:pleas )?|\b(?:i want|i'd like|i would like|"
    r"i need) you to |\bhelp me |\blet's |\blet us |\btri to |\byour task is to |"
    r"\byou (?:should|must|need to|have to) )"
)
_AND_HEAD = rf"(?:{_HEAD}|\band )"  # "... and draw a cat", but "video and film as media"
_PRODUCE = (
    r"(?:creat|make|generat|produc|design|draw|sketch|paint|render|plot|build|construct|"
    r"illustr|record|recordz|film|shoot|take|edit|crop|resiz|retouch|colour|color|anim|compos|give|"
    r"show|send|provid)"
)
_DRAW = (
    r"(?:draw|sketch|paint|doodl|colour|color|film|photograph|videotap|trace|sing|hum|whistl|"
    r"danc|plot|anim)"
)
_FIGURATIVE = (
    r"(?:on|upon|from|up|out|attent|conclus|comparison|compar|parallel|distinct|infer|"
    r"lesson|analog|contrast|connect|insight|inspir|idea|plan|strategi|outlin|proposal|"
    r"argument|charact|vivid|clear|bleak|rosi|grim|compel|word|line between|a line between|"
    r"stori|narrat|novel|revenge|scheme|cours|a conclus|a comparison|a parallel|a distinct|"
    r"a lesson|an analog|a contrast|a plan|"
    r"an outlin|a rough|a vivid|a clear|a bleak|a rosi|a grim|a compel|a brief|a quick plan)"
)
_PERCEIVE = (
    r"(?:look at|view|see|check|examin|inspect|analyz|analys|review|rate|critiqu|evalu|assess|"
    r"describ|identifi|transcrib|caption|edit|crop|convert|turn|fix|enhanc|restor|label|count)"
)
_DEIXIS = (
    r"(?:this|these|those|here(?: is| are|'s)? (?:a|an|the|my|some)|"
    r"the (?:follow|abov|below|attach|upload|enclos|accompani|"
    r"given|provid|shown|display|preced|next|previous|includ|link|embed|sampl|two|three|"
    r"first|second|last))"
)
NON_TEXT_MADE: Final = re.compile(  # over stems: output a text model cannot make
    "|".join(
        [
            # produce a medium: "generate an image", "make a bar chart", "give me a map"
            rf"{_AND_HEAD}{_PRODUCE} (?:{_NOT_STOP}){{0,4}}{_MEDIUM}\b",
            # a drawing, filming or singing verb heading a clause, not "draw a conclusion"
            rf"{_HEAD}{_DRAW}(?: (?!{_FIGURATIVE}\b)|$)",
            rf"\band {_DRAW} (?:a|an|the|me|us|my|our|your|some|this|these|it|them)\b"
            rf"(?! {_FIGURATIVE}\b)",
            rf"{_HEAD}illustr (?:a|an|some|me)\b(?! (?:point|concept|case|situat|scenario|"
            r"principl|idea|exampl|differ|argument|theme)\b)",
        ]
    )
)
NON_TEXT_SEEN: Final = re.compile(  # over stems: input a text model cannot see
    "|".join(
        [
            # a clause headed by (one `_HEAD` scan for all four, it is the costly part):
            rf"{_HEAD}(?:"
            # perceiving: "listen to ...", "watch the ..."
            r"(?:listen|watch|hear)(?! out\b| for\b)|"
            # acts on the user's papers: "upload the report", "scan the receipt" (not
            # "download a file in Python": code moves files, so only papers the user has)
            r"(?:upload|download|fax|photocopi|scan|print|laminat) (?:the|my|our|this|these|"
            rf"those|your|that) (?:{_NOT_STOP}){{0,2}}(?:document|report|receipt|invoic|form|"
            r"letter|contract|photo|pictur|ticket|card|copi|sheet|spreadsheet|poster|flyer|"
            rf"brochur|slide|handout|pass|cv|resum|passport|certif|diploma|badg|bill)\b"
            rf"(?! {_TOPIC}\b)|(?:upload|fax|photocopi|laminat) (?:my|our) |"
            # performing music: "play a short drum beat", "perform a song"
            rf"(?:play|perform|strum) (?:{_NOT_STOP}){{0,4}}(?:song|tune|melodi|beat|chord|"
            r"music|riff|drum|piano|guitar|violin|jingl|lullabi|rhythm)\b|"
            # places a text model cannot go
            r"(?:go to|visit|click|brows|navig|download|open) (?:the |this |that |a |my )?"
            r"(?:\S+ )?(?:websit|webpag|site|page|link|url|file|pdf|spreadsheet|document|folder|"
            r"attach|app)\b)",
            # perceive supplied media: "look at my screenshot"
            rf"\b{_PERCEIVE} (?:at )?(?:the|my|our|your) (?:{_NOT_STOP}){{0,2}}{_MEDIUM}\b",
            # supplied material: "this photo", "the attached PDF", "in the picture", "... below"
            rf"\b{_DEIXIS} (?:{_NOT_STOP}){{0,2}}(?:{_MEDIUM}|{_MATERIAL}(?! {_TOPIC}\b))\b",
            rf"\b(?:in|on|from|at|use|refer to|base on|accord to) the (?:{_NOT_STOP}){{0,1}}"
            rf"(?:{_MEDIUM}|pdf|csv|attach)\b(?! (?:by|of|call|titl|known|name)\b)",
            # a numbered part of a paper or deck: "refer to Figure 2", "see Table 3"
            r"\b(?:figur|fig|tabl|exhibit|slide|panel|plate|appendix|chart|diagram) ?\.? \d+\b",
            rf"\b(?:{_MEDIA}|{_MATERIAL}) (?:\S+ )?"
            r"(?:below|abov|here|attach|provid|link|includ|display)\b",
        ]
    )
)
NON_TEXT_WORDS: Final = re.compile(  # over the normalised words: tense and URLs matter
    "|".join(
        [
            r"\b(?:attached|uploaded|enclosed)\b",
            r"\b(?:this|the|my|our|these) (?:\S+ )?(?:scanned|photocopied|screenshotted)\b",
            r"\b(?:i|we)(?:'ve| have| just| am| 'm)? (?:sent you|shared|attached|uploaded|"
            r"attaching|uploading|forwarded you|emailed you)\b",
            r"https?://|\bwww\.|\b[a-z0-9-]+\.(?:com|org|net|io|edu|gov|co\.uk)\b",
            r"\b(?:aloud|out loud|record yourself|take a (?:photo|picture|pic|selfie|screenshot|"
            r"video))\b",
        ]
    )
)
# "... in words", "as a Markdown table", "ASCII art": the medium is made of text after all
_IN_WORDS = re.compile(
    r"\b(?:in|with|use|through|as|into) (?:a |an )?(?:\S+ )?(?:word|prose|ascii|emoji|"
    r"markdown|json)\b|\b(?:as|into) (?:a |an )?(?:\S+ )?(?:text|tabl|list)\b|"
    r"\bverbal\b|\btextual\b|\bascii\b"
)
_IDIOMS = re.compile(r"\bbig pictur\b|\bpictur-perfect\b|\bpictur perfect\b")
# a programming task: its URLs and downloads are strings and calls the code handles, not places
# the model must go ("parse the query string of https://...", "download a file in Python")
_CODE = re.compile(
    r"\b(?:python|javascript|typescript|java|golang|rust|ruby|php|kotlin|swift|sql|bash|shell|"
    r"powershell|regex|regular expression|function|method|class|script|code|program|api|curl|"
    r"wget|requests|library|module|pars(?:e|es|ing|er)|endpoint|scrap(?:e|er|ing)|crawler)\b"
)
# ... unless the task is to consume what is there: "visit https://... and review the code"
_CONSUME = re.compile(
    r"\b(?:visit|go to|brows\w*|click|navigat\w*|check out|read|summari[sz]\w*|review|"
    r"look at|watch|listen)\b"
)
_PLACE = re.compile(r"https?://|\bwww\.|\.(?:com|org|net|io|edu|gov)\b|\b(?:download|open)\b")


def non_text(text: str) -> str | None:
    """What marks `text` as a task a text-only model cannot do, or None."""
    stemmed = _IDIOMS.sub(" ", stems(text))
    found = NON_TEXT_SEEN.search(stemmed) or NON_TEXT_WORDS.search(normalise(text))
    if found is None and not _IN_WORDS.search(stemmed):
        found = NON_TEXT_MADE.search(stemmed)
    if found is not None and _PLACE.search(found.group(0)):
        words = normalise(text)
        if _CODE.search(words) and not _CONSUME.search(words):
            return None
    return None if found is None else found.group(0).strip(" ,.;:!?")
