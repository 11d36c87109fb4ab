"""The `distillery` client commands: datasets, skills, seeds, jobs, export, over HTTP only.

It talks to a running service at `--url` / `DISTILLERY_URL` with `--api-key` /
`DISTILLERY_API_KEY`; it never opens the database and never imports `workers`.
"""
