"""The web page at /ui: server-rendered views of datasets, jobs, reports and examples.

Read-only: every page is a GET that changes nothing; the only POSTs are login and logout.
Templates are Jinja with autoescaping on (user data is never marked safe); charts are SVG
computed here and drawn by the templates; every asset is served by the app (no CDN).
"""
