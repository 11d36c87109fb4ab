// distillery UI: live job progress from the job's server-sent events (app/events.py).
// The page is rendered on the server; this script only keeps the numbers of #job-live current
// and swaps in the server-rendered rejections chart when the rejections change.
"use strict";

(function () {
  const live = document.getElementById("job-live");
  if (!live || !window.EventSource) return;

  const whole = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
  const one = new Intl.NumberFormat("en-US", { minimumFractionDigits: 1, maximumFractionDigits: 1 });
  const TERMINAL = ["succeeded", "failed", "cancelled"];
  const MAX_TASK_ROWS = 300;
  let lastReasons = null;
  let taskCount = 0;

  function num(value, fmt) {
    return value === null || value === undefined ? "—" : (fmt || whole).format(value);
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "—";
    if (seconds < 60) return seconds.toFixed(1) + " s";
    let s = Math.round(seconds);
    const m = Math.floor(s / 60);
    s -= m * 60;
    if (m < 60) return m + " min " + String(s).padStart(2, "0") + " s";
    return Math.floor(m / 60) + " h " + String(m % 60).padStart(2, "0") + " min";
  }

  function when(iso) {
    if (!iso) return "—";
    const d = new Date(iso);
    return isNaN(d) ? iso : d.toISOString().replace("T", " ").slice(0, 19) + " UTC";
  }

  function set(field, text) {
    for (const el of document.querySelectorAll('[data-field="' + field + '"]')) {
      el.textContent = text;
    }
  }

  function setState(state, label) {
    live.dataset.state = state;
    document.getElementById("live-state").textContent = label;
  }

  function showStatus(status) {
    for (const el of document.querySelectorAll('[data-field="status"]')) {
      el.textContent = status;
      el.className = "badge status-" + status;
    }
  }

  function showJob(job) {
    showStatus(job.status);
    const bar = document.getElementById("job-progress");
    bar.max = Math.max(job.progress.total, 1);
    bar.value = job.progress.completed;
    set("completed", num(job.progress.completed));
    set("total", num(job.progress.total));
    set("failed", num(job.progress.failed));
    set("started", when(job.started_at));
    set("finished", when(job.finished_at));
    set("stop-reason", job.stop_reason || "—");
    const active = !TERMINAL.includes(job.status);
    for (const el of document.querySelectorAll('[data-field="health-state"]')) {
      el.textContent = job.health.state.replace(/_/g, " ");
      el.className = "badge health-" + job.health.state;
    }
    set("health-message", active ? job.health.message : "");
    for (const el of document.querySelectorAll('[data-field="error"]')) {
      el.textContent = job.error || "";
      el.classList.toggle("hidden", !job.error);
    }
  }

  function showReport(report) {
    set("candidates", num(report.candidates));
    set("accepted", num(report.accepted));
    set("rejected", num(report.rejected));
    set("tokens", num(report.tokens.total));
    const tps = report.tokens_per_second !== undefined ? report.tokens_per_second
      : (report.wall_seconds ? report.tokens.total / report.wall_seconds : null);
    set("tokens-per-second", num(tps, one));
    set("examples-per-minute", num(report.examples_per_minute, one));
    set("wall", duration(report.wall_seconds));
    if (report.in_flight !== undefined) {
      set("in-flight", report.in_flight === null ? "—" : num(report.in_flight));
    }
    const reasons = JSON.stringify(report.rejected_by_reason || {});
    if (reasons !== lastReasons) {
      const first = lastReasons === null;
      lastReasons = reasons;
      if (!first || reasons !== "{}") refreshRejections();
    }
  }

  function refreshRejections() {
    fetch(live.dataset.rejections, { credentials: "same-origin" })
      .then((r) => (r.ok ? r.text() : Promise.reject(r.status)))
      .then((html) => { document.getElementById("rejections").innerHTML = html; })
      .catch(() => {});
  }

  function addTask(row) {
    const body = document.querySelector("#task-log tbody");
    const tr = document.createElement("tr");
    const detail = Object.entries(row.detail || {})
      .filter(([, v]) => v !== null && v !== 0 && v !== false && v !== "")
      .map(([k, v]) => k + "=" + (typeof v === "object" ? JSON.stringify(v) : v))
      .join("  ");
    const time = when(row.created_at);
    for (const text of [row.id, time.slice(11, 19), row.event,
                        row.task_id ? row.task_id.slice(-8) : "—", row.worker || "—", detail]) {
      const td = document.createElement("td");
      td.textContent = text;
      tr.appendChild(td);
    }
    tr.children[0].className = "num muted";
    tr.children[1].title = time;
    tr.children[1].className = "nowrap";
    tr.children[2].className = "event-" + row.event;
    tr.children[3].className = "mono";
    tr.children[5].className = "mono small detail";
    body.insertBefore(tr, body.firstChild);
    while (body.children.length > MAX_TASK_ROWS) body.removeChild(body.lastChild);
    taskCount += 1;
    document.getElementById("task-empty").classList.add("hidden");
    document.getElementById("task-count").textContent = whole.format(taskCount) + " events";
  }

  const source = new EventSource(live.dataset.events);
  source.addEventListener("open", () => {
    if (live.dataset.state !== "finished") setState("live", "live");
  });
  source.addEventListener("progress", (e) => {
    const data = JSON.parse(e.data);
    showJob(data.job);
    showReport(data.report);
    set("eta", data.eta_seconds === null ? "—" : duration(data.eta_seconds));
  });
  source.addEventListener("status", (e) => showStatus(JSON.parse(e.data).to));
  source.addEventListener("task", (e) => addTask(JSON.parse(e.data)));
  source.addEventListener("finished", (e) => {
    const data = JSON.parse(e.data);
    source.close();
    showJob(data.job);
    showReport(data.report);
    set("eta", "—");
    refreshRejections();
    setState("finished", "finished · " + data.job.status);
  });
  source.addEventListener("error", () => {
    if (live.dataset.state === "finished") return;
    if (source.readyState === EventSource.CLOSED) setState("error", "disconnected: reload the page");
    else setState("connecting", "reconnecting…");
  });
})();
