"""Curation: what decides whether a candidate example is kept. Pure functions over plain data.

Self-Instruct (Wang et al. 2022) keeps a machine-written instruction only if it passes simple
heuristics and is not too similar (ROUGE-L >= 0.7) to any instruction already in the pool.
This package holds those steps, plus answer-stage checks and decontamination. Nothing here
touches the database or the network: the runner loads the state (the pool of a dataset,
benchmark texts) and passes it in.

Steps, in the order a runner applies them, and the reason string each rejection carries
(stable: stored with the example, counted in the job report):

- parsing (in `workers.methods`) ........ `unparseable`
- `filters.not_empty` .................... `empty`
- `filters.not_truncated` ................ `truncated` (finish_reason "length")
- `filters.length` ....................... `too_short`, `too_long`
- `filters.starts_with_text` ............. `bad_start`
- `filters.non_text` ..................... `non_text` (stems and phrases, `patterns`)
- `filters.refusal` ...................... `refusal` (refusals, disclaimers, non-answers)
- `filters.language` ..................... `wrong_language` (py3langid, `language`)
- `filters.blocklist` (on request) ....... `blocklist` (Self-Instruct's word list)
- `filters.output_repeats_input` ......... `repeats_input`
- `decontamination.check_candidate` ...... `contaminated`
- `dedup.dedupe_batch` / `NearDupIndex` .. `duplicate` (same words), `near_duplicate`

Modules: `types` (Candidate, Rejection, reason constants), `filters` (registry `FILTERS`,
`apply_filters`, default lists per stage), `patterns` (refusal and non-text regexes over
normalised words and stems), `language` (language identification),
`dedup` (exact ROUGE-L with prefix-filter candidates that miss no
match), `decontamination` (benchmark leaks, exact
or lightly edited; the matching is `app.contamination`).
"""

from __future__ import annotations
