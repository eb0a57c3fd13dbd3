// The operations console: every section reads the public API only, refreshes itself by
// polling (the debate view by the WebSocket), and says "not available here" when an optional
// endpoint is missing. Only an admin sees any of it; the API refuses the rest with 403 anyway.

import { ago, api, badge, credential, duration, el, failure, fill, live, percent, signIn, table } from "./api.js";
import { lineChart } from "./charts.js";

const FAST = 2000;
const SLOW = 5000;

const yes = (ok, good, bad) => badge(ok ? good : bad, ok ? "ok" : "bad");
const time = (at) => (at ? el("time", { dateTime: at, title: at }, ago(at)) : "-");

function button(label, focus, action, attrs = {}) {
  return el(
    "button",
    {
      type: "button",
      "data-focus": focus,
      ...attrs,
      onclick: async (event) => {
        const target = event.currentTarget;
        target.disabled = true;
        try {
          await action();
        } catch (err) {
          target.after(failure(err));
        } finally {
          target.disabled = false;
        }
      },
    },
    label,
  );
}

// Overview: every part's health, maintenance with its switch, the debates in flight.
function overview() {
  const body = document.querySelector("#overview .body");
  const parts = el("div", { id: "health" });
  const switchBox = el("div", { id: "maintenance", className: "card" });
  const load = el("div", { id: "load", className: "card" });
  fill(body, parts, el("div", { className: "cards" }, switchBox, load));

  live(parts, FAST, async () => {
    const [health, db, redis, upstreams] = await Promise.allSettled([
      api("/api/health", { also: [503] }),
      api("/api/health/db", { also: [503] }),
      api("/api/health/redis", { also: [503] }),
      api("/api/system/upstreams"),
    ]);
    const rows = [];
    if (health.status === "fulfilled") {
      const h = health.value;
      rows.push([
        "API",
        yes(h.status === "healthy", "healthy", h.status),
        `version ${h.version}, up ${duration(h.uptime_seconds)}${h.reason ? `; ${h.reason}` : ""}`,
      ]);
      rows.push([
        "Providers",
        yes(h.agents_available > 0, "available", "none available"),
        `${h.agents}; ${h.agents_available} agent(s) available`,
      ]);
    } else rows.push(["API", failure(health.reason), ""]);
    if (db.status === "fulfilled") {
      const d = db.value;
      rows.push([
        "Database",
        yes(d.database === "connected", "healthy", d.database),
        `${d.backend}${d.latency_ms != null ? `, ${d.latency_ms.toFixed(1)} ms` : ""}${d.error ? `; ${d.error}` : ""}`,
      ]);
    } else rows.push(["Database", failure(db.reason), ""]);
    if (redis.status === "fulfilled") {
      const r = redis.value;
      const state =
        r.redis === "not_configured" ? badge("not configured", "info") : yes(r.redis === "connected", "healthy", r.redis);
      rows.push(["Redis", state, r.error ?? r.note ?? (r.latency_ms != null ? `${r.latency_ms.toFixed(1)} ms` : "")]);
    } else rows.push(["Redis", failure(redis.reason), ""]);
    if (upstreams.status === "fulfilled") {
      for (const replica of upstreams.value.gateway?.upstreams ?? []) rows.push(replicaRow(replica));
    } else rows.push(["Replicas (as the gateway sees them)", failure(upstreams.reason), ""]);
    return table(["Part", "State", "Detail"], rows, "Health of every part");
  });

  const refreshSwitch = live(switchBox, FAST, async () => {
    const state = await api("/api/admin/maintenance");
    const toggle = state.enabled
      ? button("Turn maintenance off", "maintenance-toggle", async () => {
          await api("/api/admin/maintenance/disable", { method: "POST" });
          await refreshSwitch();
        })
      : button("Turn maintenance on", "maintenance-toggle", async () => {
          await api("/api/admin/maintenance/enable", {
            method: "POST",
            body: { reason: "maintenance switched on from the operations console" },
          });
          await refreshSwitch();
        });
    return [
      el("h3", {}, "Maintenance mode"),
      el(
        "p",
        { id: "maintenance-state" },
        state.enabled ? badge("ON: new debates are refused", "warn") : badge("off", "ok"),
        state.enabled && state.reason ? ` (${state.reason}, since ${state.since ?? "-"})` : "",
      ),
      toggle,
    ];
  });

  live(load, FAST, async () => {
    const stats = await api("/api/admin/stats");
    return [
      el("h3", {}, "Debates"),
      el(
        "dl",
        { className: "facts" },
        fact("Active", stats.active_debates, "active-debates"),
        fact("Running", stats.running_debates),
        fact("Queued", stats.queued_debates),
        fact("All time", stats.total_debates),
        fact("Active API keys", `${stats.api_keys?.active ?? "-"} of ${stats.api_keys?.total ?? "-"}`),
      ),
    ];
  });
}

function fact(name, value, id) {
  return el("div", { id }, el("dt", {}, name), el("dd", {}, String(value ?? "-")));
}

function replicaRow(replica) {
  let state;
  if (!replica.checked) state = badge("not checked yet", "info");
  else if (!replica.ready) state = badge("not ready", "bad");
  else if (replica.weight < 1) state = badge(`ready, slow start (${Math.round(replica.weight * 100)}% weight)`, "warn");
  else state = badge("ready", "ok");
  const detail = [
    replica.addr,
    replica.ready_for_seconds != null ? `ready for ${duration(replica.ready_for_seconds)}` : null,
    `${replica.inflight} in flight`,
    replica.last_error ? `last error: ${replica.last_error}` : null,
  ].filter(Boolean);
  return [`Replica ${replica.name}`, state, detail.join(", ")];
}

// SLOs: objective, budget left, burn per window, alert state, and charts of the history.
function slos() {
  live("slos", SLOW, async () => {
    const report = await api("/api/slo");
    if (report.error) return failure(new Error(report.error));
    if (!report.slos.length) return el("p", {}, "No SLOs are defined.");
    const cards = await Promise.all(report.slos.map(sloCard));
    return el("div", { className: "slo-list" }, cards);
  });
}

async function sloCard(slo) {
  const remaining = slo.error_budget_remaining_ratio;
  const budget =
    remaining == null
      ? badge("budget unknown (no data yet)", "info")
      : remaining <= 0
        ? badge(`error budget exhausted (${percent(-remaining, 1)} over)`, "bad")
        : badge(`${percent(remaining, 1)} of the error budget left`, remaining > 0.25 ? "ok" : "warn");
  const alerts = slo.alerts.map((alert) =>
    el(
      "li",
      {},
      alert.firing ? badge(`${alert.severity}: firing`, "bad") : badge(`${alert.severity}: not firing`, "ok"),
      ` ${alert.reason}`,
    ),
  );
  const windows = table(
    ["Window", "Error ratio", "Burn rate"],
    slo.windows.map((w) => [w.window, percent(w.error_ratio, 3), w.burn_rate == null ? "-" : `${w.burn_rate.toFixed(2)}x`]),
    "Burn rate per alert window",
  );
  const charts = el("div", { className: "charts" });
  try {
    const history = await api(`/api/slo/history?slo=${encodeURIComponent(slo.slo)}`);
    const points = history.points ?? [];
    const at = (p) => new Date(p.at).getTime();
    const sli = points.filter((p) => p.sli != null).map((p) => [at(p), p.sli * 100]);
    const windowsSeen = [...new Set(points.flatMap((p) => Object.keys(p.burn_rates ?? {})))];
    fill(
      charts,
      lineChart({
        title: `${slo.slo}: SLI over time (${history.source ?? "history"})`,
        series: [{ name: "SLI", points: sli }],
        targets: [{ name: `objective ${slo.objective_percent}%`, value: slo.objective_percent }],
        unit: "%",
      }),
      lineChart({
        title: `${slo.slo}: burn rate over time`,
        series: windowsSeen.map((w) => ({
          name: `burn rate ${w}`,
          points: points.filter((p) => p.burn_rates?.[w] != null).map((p) => [at(p), p.burn_rates[w]]),
        })),
        targets: [{ name: "burn rate 1 (budget spent exactly over the period)", value: 1 }],
        unit: "x",
        yMin: 0,
      }),
    );
  } catch (err) {
    fill(charts, failure(err));
  }
  return el(
    "article",
    { className: "slo card", "data-slo": slo.slo },
    el("h3", {}, slo.slo),
    el("p", {}, slo.description),
    el("p", {}, `Objective ${slo.objective_percent}% over ${slo.period}. `, budget),
    el("ul", { className: "alerts" }, alerts),
    windows,
    charts,
  );
}

// Circuit breakers, each with its reset.
function breakers() {
  const refresh = live("breakers", FAST, async () => {
    const { circuit_breakers: list } = await api("/api/system/circuit-breakers");
    if (!list.length) {
      return el("p", {}, "No agent has a circuit breaker (the built-in offline agents never call out).");
    }
    return table(
      ["Agent", "Provider", "State", "Failures", "Retry in", "Action"],
      list.map((b) => [
        b.agent,
        b.provider,
        b.state === "CLOSED" || b.state === "closed"
          ? badge("closed", "ok")
          : b.state.toLowerCase().startsWith("half")
            ? badge("half open", "warn")
            : badge("open", "bad"),
        `${b.consecutive_failures} of ${b.failure_threshold}`,
        b.retry_in_seconds == null ? "-" : duration(b.retry_in_seconds),
        button(`Reset ${b.agent}`, `reset-${b.agent}`, async () => {
          await api(`/api/system/circuit-breakers/${encodeURIComponent(b.agent)}/reset`, { method: "POST" });
          await refresh();
        }),
      ]),
      "Circuit breakers",
    );
  });
}

// Rate limits (the most refused clients first) and the replicas as the gateway sees them.
function limits() {
  live("limits", SLOW, async () => {
    const [limits, upstreams] = await Promise.allSettled([api("/api/system/rate-limits"), api("/api/system/upstreams")]);
    const parts = [];
    if (limits.status === "fulfilled") {
      const g = limits.value.gateway ?? {};
      const limit = (l) => (l ? `${l.per_minute}/min, burst ${l.burst}` : "off");
      parts.push(
        el("h3", {}, "Rate limits"),
        el(
          "p",
          {},
          `Default: ${limit(g.default)}. `,
          g.shared ? yes(g.backend === "up", "shared through Redis", `Redis ${g.backend}`) : badge("per gateway (not shared)", "info"),
        ),
        g.routes?.length
          ? table(["Method", "Route", "Limit"], g.routes.map((r) => [r.method, r.route, limit(r.limit)]), "Per-route limits")
          : null,
        g.top_limited_clients?.length
          ? table(["Client", "Refused"], g.top_limited_clients.map((c) => [c.client, String(c.refused)]), "Most refused clients")
          : el("p", {}, "No client has been refused."),
      );
    } else parts.push(el("h3", {}, "Rate limits"), failure(limits.reason));
    if (upstreams.status === "fulfilled") {
      const g = upstreams.value.gateway ?? {};
      parts.push(
        el("h3", {}, "Replicas"),
        el("p", {}, `${g.ready} of ${g.total} ready. `, g.draining ? badge("gateway draining", "warn") : ""),
        table(
          ["Replica", "State", "Detail"],
          (g.upstreams ?? []).map(replicaRow),
          `Replicas behind ${upstreams.value.source ?? "the gateway"}`,
        ),
      );
    } else parts.push(el("h3", {}, "Replicas"), failure(upstreams.reason));
    return parts;
  });
}

function errors() {
  live("errors", SLOW, async () => {
    const { errors: list, scope } = await api("/api/system/errors");
    if (!list.length) return el("p", {}, badge("no recent errors", "ok"), ` (${scope})`);
    return table(
      ["When", "Kind", "Agent", "Debate", "Message"],
      list.map((e) => [time(e.at), e.kind, e.agent ?? "-", e.debate_id ?? "-", e.message]),
      `Recent errors (${scope})`,
    );
  });
}

// DR: the drill history as a chart of RTO and RPO against their targets, and a drill run now.
function dr() {
  const body = document.querySelector("#dr .body");
  const run = el("div", { id: "drill-run", className: "card", "aria-live": "polite" });
  const history = el("div", { id: "drill-history" });
  fill(body, run, history);
  const refreshHistory = live(history, SLOW, async () => {
    const { drills } = await api("/api/drills?limit=50");
    if (!drills.length) return el("p", {}, "No drill has run yet.");
    const newest = drills[0];
    const at = (d) => new Date(d.finished_at ?? d.started_at).getTime();
    const measured = [...drills].reverse();
    const backup = newest.report?.backup_created_at;
    return [
      el(
        "p",
        {},
        backup ? `Newest backup a drill restored: created ${ago(backup)} (${newest.backup_id ?? "-"}).` : "No backup age known yet.",
      ),
      el(
        "div",
        { className: "charts" },
        lineChart({
          title: "Drill RTO against its target (seconds)",
          series: [{ name: "RTO", points: measured.filter((d) => d.rto_seconds != null).map((d) => [at(d), d.rto_seconds]) }],
          targets: [{ name: `RTO target ${newest.rto_target_seconds} s`, value: newest.rto_target_seconds }],
          unit: " s",
          yMin: 0,
        }),
        lineChart({
          title: "Drill RPO against its target (seconds)",
          series: [
            { name: "RPO", kind: "b", points: measured.filter((d) => d.rpo_seconds != null).map((d) => [at(d), d.rpo_seconds]) },
          ],
          targets: [{ name: `RPO target ${newest.rpo_target_seconds} s`, value: newest.rpo_target_seconds }],
          unit: " s",
          yMin: 0,
        }),
      ),
      table(
        ["Finished", "Result", "RTO", "RPO"],
        drills
          .slice(0, 10)
          .map((d) => [
            time(d.finished_at ?? d.started_at),
            yes(d.status === "passed", d.status, d.status),
            `${duration(d.rto_seconds)} (target ${duration(d.rto_target_seconds)})`,
            `${duration(d.rpo_seconds)} (target ${duration(d.rpo_target_seconds)})`,
          ]),
        "Recent drills",
      ),
    ];
  });

  let following = null;
  const showRun = (state, note) => {
    const r = state?.run;
    const start = button("Run a drill now", "drill-start", async () => {
      try {
        const started = await api("/api/drills/run", { method: "POST" });
        showRun(started);
      } catch (err) {
        if (err.status === 409 && err.body?.run) showRun(err.body, "A drill was already running; following it.");
        else throw err;
      }
      follow();
    });
    if (!r) {
      fill(run, el("h3", {}, "Run a drill now"), note ? el("p", {}, note) : null, start);
      return;
    }
    const stateBadge =
      r.state === "running" ? badge("running", "info") : r.state === "passed" ? badge("passed", "ok") : badge(r.state, "bad");
    const progress = el("progress", { max: r.steps_total || 1, value: r.steps_done || 0 });
    const report = r.report
      ? el(
          "p",
          { id: "drill-result" },
          `RTO ${duration(r.report.rto_seconds)} (target ${duration(r.report.rto_target_seconds)}), RPO ${duration(r.report.rpo_seconds)} (target ${duration(r.report.rpo_target_seconds)})`,
        )
      : null;
    fill(
      run,
      el("h3", {}, "Run a drill now"),
      note ? el("p", {}, note) : null,
      el("p", { id: "drill-state" }, "Drill ", stateBadge, ` ${r.step ?? ""} (${r.steps_done ?? 0} of ${r.steps_total ?? "?"} steps)`),
      progress,
      r.error ? el("p", { className: "error" }, badge("failed", "bad"), ` ${r.error}`) : null,
      report,
      r.state === "running" ? null : start,
    );
  };
  const follow = () => {
    if (following) return;
    following = setInterval(async () => {
      try {
        const state = await api("/api/drills/run");
        showRun(state);
        if (state.run?.state !== "running") {
          clearInterval(following);
          following = null;
          await refreshHistory();
        }
      } catch (err) {
        clearInterval(following);
        following = null;
        fill(run, el("h3", {}, "Run a drill now"), failure(err));
      }
    }, 1000);
  };
  api("/api/drills/run")
    .then((state) => {
      showRun(state);
      if (state.run?.state === "running") follow();
    })
    .catch((err) => showRun(null, err.status === 404 ? null : failure(err).textContent));
}

// Debates: the active and latest ones, and one debate's live view over the WebSocket.
function debates() {
  const body = document.querySelector("#debates .body");
  const list = el("div", { id: "debate-list" });
  const view = el("div", { id: "debate-view", className: "card", hidden: true });
  fill(body, list, view);
  let socket = null;
  const watch = (debate) => {
    socket?.close(1000);
    const events = el("ol", { className: "events", "aria-live": "polite" });
    const status = el("p", { className: "conn" }, badge("connecting", "info"));
    const close = el("button", { type: "button", className: "secondary", onclick: () => stop() }, "Stop watching");
    view.hidden = false;
    fill(view, el("h3", {}, `Live: ${debate.topic}`), el("p", {}, `Debate ${debate.debate_id}`), status, close, events);
    let lastSeq = 0;
    let stopped = false;
    const stop = () => {
      stopped = true;
      socket?.close(1000);
      view.hidden = true;
    };
    const connect = () => {
      const scheme = location.protocol === "https:" ? "wss" : "ws";
      // Browsers cannot set headers on a WebSocket: the key goes as a subprotocol, not in the URL.
      socket = new WebSocket(`${scheme}://${location.host}/ws`, ["aragora.v1", `aragora.bearer.${credential()}`]);
      const mine = socket;
      mine.onopen = () => {
        fill(status, badge("live", "ok"));
        mine.send(JSON.stringify({ type: "subscribe", debate_id: debate.debate_id, last_seq: lastSeq }));
      };
      mine.onmessage = (message) => {
        const event = JSON.parse(message.data);
        if (event.seq) lastSeq = Math.max(lastSeq, event.seq);
        const line = describe(event);
        if (line) events.append(el("li", { className: `event ${event.type}` }, line));
        if (event.type === "debate_end") fill(status, badge(`finished: ${event.data?.status ?? "ended"}`, "info"));
      };
      mine.onclose = () => {
        if (stopped || mine !== socket) return;
        fill(status, badge("disconnected, reconnecting", "warn"));
        setTimeout(connect, 1000);
      };
    };
    connect();
  };
  live(list, FAST, async () => {
    const [active, recent] = await Promise.all([
      api("/api/debates?status=active&limit=20"),
      api("/api/debates?limit=10"),
    ]);
    const row = (d) => [
      d.topic,
      badge(d.status, { completed: "ok", running: "info", queued: "info", interrupted: "warn" }[d.status] ?? "bad"),
      String(d.rounds),
      time(d.created_at),
      d.consensus_reached == null ? "-" : d.consensus_reached ? "reached" : "not reached",
      button(`Watch`, `watch-${d.debate_id}`, async () => watch(d), { "aria-label": `Watch ${d.topic}` }),
    ];
    const columns = ["Topic", "Status", "Rounds", "Created", "Consensus", "Live view"];
    return [
      el("h3", {}, `Active (${active.total})`),
      active.debates.length ? table(columns, active.debates.map(row), "Active debates") : el("p", {}, "No debate is queued or running."),
      el("h3", {}, "Latest"),
      table(columns, recent.debates.map(row), "Latest debates"),
    ];
  });
}

function describe(event) {
  const d = event.data ?? {};
  const who = event.agent ?? "";
  switch (event.type) {
    case "debate_start":
      return `Debate started: ${d.rounds} round(s) among ${(d.agents ?? []).join(", ")}`;
    case "round_start":
      return `Round ${d.round} of ${d.of}`;
    case "agent_message":
      return el("span", {}, el("strong", {}, `${who} (${d.phase}): `), d.text);
    case "critique":
      return el("span", {}, el("strong", {}, `${who} critiques ${d.target}: `), d.text);
    case "vote":
      return `${who} votes for ${d.choice ?? "nobody"}`;
    case "consensus":
      return `Consensus ${d.reached ? "reached" : "not reached"}${d.winner ? `: ${d.winner}` : ""} (votes ${Object.entries(d.votes ?? {}).map(([k, v]) => `${k} ${v}`).join(", ") || "none"})`;
    case "debate_end":
      return `Debate ${d.status}${d.error ? `: ${d.error}` : ""}`;
    case "error":
      return el("span", {}, badge("error", "bad"), ` ${who} ${d.message ?? d.code ?? ""}`);
    case "agent_fallback_triggered":
      return `${who}: ${d.from_provider} failed, ${d.to_provider} answered (${d.reason})`;
    default:
      return null;
  }
}

// Webhooks: subscriptions with their breakers, the dead letters with a retry each.
function webhooks() {
  const refresh = live("webhooks", SLOW, async () => {
    const [subs, dead] = await Promise.all([api("/api/admin/webhooks"), api("/api/admin/webhooks/dead-letters")]);
    const breakerBadge = (s) => (s === "closed" ? badge("closed", "ok") : s === "open" ? badge("open", "bad") : badge("half open", "warn"));
    return [
      el("h3", {}, "Subscriptions"),
      subs.webhooks.length
        ? table(
            ["URL", "State", "Breaker", "Events", "Last delivery"],
            subs.webhooks.map((w) => [
              w.url,
              w.state,
              breakerBadge(w.breaker),
              w.event_types.join(", "),
              w.last_delivery ? `${w.last_delivery.state ?? ""} ${ago(w.last_delivery.updated_at ?? w.last_delivery.created_at)}` : "none",
            ]),
            "Webhook subscriptions",
          )
        : el("p", {}, "No webhook subscriptions."),
      el("h3", {}, `Dead letters (${dead.total})`),
      dead.deliveries.length
        ? table(
            ["Delivery", "Webhook", "Event", "Attempts", "Last error", "Action"],
            dead.deliveries.map((d) => [
              d.id,
              d.webhook_id,
              d.event_type,
              String(d.attempts),
              d.last_error ?? (d.last_status ? `HTTP ${d.last_status}` : "-"),
              button("Retry", `retry-${d.id}`, async () => {
                await api(`/api/admin/webhooks/deliveries/${encodeURIComponent(d.id)}/retry`, { method: "POST" });
                await refresh();
              }, { "aria-label": `Retry delivery ${d.id}` }),
            ]),
            "Dead-letter queue",
          )
        : el("p", {}, badge("no dead letters", "ok")),
    ];
  });
}

function start(me) {
  if (me.role !== "admin") {
    const refused = document.getElementById("refused");
    refused.textContent = `This page needs the admin role. You are signed in as ${me.subject} with the role ${me.role}; the developer portal (/developer) works with any key.`;
    refused.hidden = false;
    document.getElementById("nav").hidden = true;
    return;
  }
  document.getElementById("sections").hidden = false;
  overview();
  slos();
  breakers();
  limits();
  errors();
  dr();
  debates();
  webhooks();
  const section = location.pathname.split("/")[2];
  if (section) document.getElementById(section)?.scrollIntoView();
}

signIn(start);
