// ragotel analyzer page: polls the JSON API and draws services, per-stage charts, alerts, recoveries and the
// dependency graph. Hand-written, no framework, no build step. Telemetry strings only ever reach the DOM as text
// (textContent, text nodes, attribute values): never innerHTML.
"use strict";

(function () {
  const POLL_MS = Number(new URLSearchParams(location.search).get("poll")) || 2000;
  const GRAPH_LIMIT = 1000; // nodes drawn one by one; beyond, the rest are aggregated per kind and type
  const HEALTH_COLOURS = { up: "#2e7d32", degraded: "#c77700", down: "#c62828", unknown: "#7a8494" };
  const STAGE_ORDER = ["pipeline", "retrieval", "rerank", "embedding", "generation"];
  const TOKEN_KEY = "ragotel.token";

  const state = { service: null, expanded: new Set(), charts: new Map(), cy: null, graphKey: "", timer: null };
  window.ragotelPage = state; // for the browser tests and the curious: read-only use

  // --- DOM helpers -----------------------------------------------------------------------------------------------
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value !== null && value !== undefined && value !== false) node.setAttribute(key, String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }
  const $ = (id) => document.getElementById(id);
  const fmtSeconds = (s) =>
    s === null || s === undefined ? "–" : s === 0 ? "0" : s < 1 ? `${(s * 1000).toFixed(s < 0.01 ? 2 : 0)} ms` : `${s.toFixed(2)} s`;
  const fmtPct = (r) => (r === null || r === undefined ? "–" : `${(r * 100).toFixed(1)} %`);
  const fmtTime = (iso) => (iso ? new Date(iso).toLocaleTimeString() : "–");

  // --- API -------------------------------------------------------------------------------------------------------
  class Unauthorized extends Error {}
  async function api(path) {
    const headers = { Accept: "application/json" };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = `Bearer ${token}`;
    const response = await fetch(path, { headers, cache: "no-store" });
    if (response.status === 401) throw new Unauthorized();
    if (response.status === 404) return null;
    if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
    return response.json();
  }

  function showLogin(show) {
    $("login").hidden = !show;
    $("content").hidden = show;
    if (show) $("token").focus();
  }

  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    $("token").value = "";
    refresh();
  });

  // --- services --------------------------------------------------------------------------------------------------
  function serviceStatus(name, alerts, health) {
    if (alerts.some((a) => a.service === name && a.status === "firing")) return "alerting";
    const deps = (health.services || []).find((s) => s.service === name);
    if ((deps && !deps.healthy) || alerts.some((a) => a.service === name && a.status === "pending")) return "degraded";
    return "ok";
  }

  function renderServices(stats, alerts, health) {
    const names = new Set((stats.services || []).map((s) => s.service));
    for (const s of health.services || []) names.add(s.service);
    const list = $("service-list");
    const render = changed("services", [stats.services, alerts.map((a) => [a.service, a.status]), health.services]);
    const cards = [...names].sort().map((name) => {
      const doc = (stats.services || []).find((s) => s.service === name) || { stages: [] };
      const status = serviceStatus(name, alerts, health);
      const pipeline = doc.stages.find((s) => s.stage === "pipeline") || doc.stages[0];
      const firing = alerts.filter((a) => a.service === name && a.status === "firing").length;
      return el(
        "li",
        { class: `card status-${status}`, "data-service": name, "data-status": status },
        el("div", { class: "name" }, name),
        el("div", { class: "meta" }, `status: ${status}${firing ? ` · ${firing} firing` : ""}`),
        pipeline
          ? el("div", { class: "meta" }, `${pipeline.rate.toFixed(2)} req/s · p95 ${fmtSeconds(pipeline.p95)} · errors ${fmtPct(pipeline.error_rate)}`)
          : el("div", { class: "meta" }, "no spans in the window"),
      );
    });
    if (render) list.replaceChildren(...(cards.length ? cards : [el("li", { class: "note" }, "no telemetry received yet")]));
    const select = $("chart-service");
    const sorted = [...names].sort();
    if (!state.service || !names.has(state.service)) state.service = sorted[0] || null;
    if ([...select.options].map((o) => o.value).join("\n") !== sorted.join("\n")) {
      select.replaceChildren(...sorted.map((n) => el("option", { value: n }, n)));
    }
    if (state.service) select.value = state.service;
  }

  $("chart-service").addEventListener("change", (event) => {
    state.service = event.target.value;
    refresh();
  });
  $("chart-range").addEventListener("change", () => refresh());

  // --- charts ----------------------------------------------------------------------------------------------------
  function shadePlugin(periods) {
    return {
      hooks: {
        drawClear: (u) => {
          const { ctx } = u;
          const { left, top, width, height } = u.bbox;
          ctx.save();
          for (const p of periods.current) {
            const x0 = Math.max(left, u.valToPos(p.start, "x", true));
            const x1 = Math.min(left + width, u.valToPos(p.end ?? Date.now() / 1000, "x", true));
            if (x1 <= x0) continue;
            ctx.fillStyle = p.severity === "critical" ? "rgba(198,40,40,0.15)" : "rgba(199,119,0,0.15)";
            ctx.fillRect(x0, top, x1 - x0, height);
          }
          ctx.restore();
        },
      },
    };
  }

  function chartWidth(container) {
    return Math.max(240, Math.floor(container.clientWidth || 300));
  }

  function upsertChart(key, title, container, series, data, periods, kind) {
    let chart = state.charts.get(key);
    if (!chart) {
      const plot = el("div", { class: "plot" });
      const now = el("span", { class: "now" });
      const figure = el("figure", { class: "chart", "data-key": key, "data-kind": kind }, el("figcaption", {}, title, " ", now), plot);
      container.append(figure);
      const shaded = { current: periods };
      const opts = {
        width: chartWidth(plot),
        height: 180,
        plugins: [shadePlugin(shaded)],
        scales: { x: { time: true, range: () => [state.xmin, state.xmax] }, y: kind === "rates" ? { range: [0, 1] } : { range: (u, min, max) => [0, Math.max(max * 1.1, 0.001)] } },
        legend: { live: false },
        axes: [{}, { values: (u, vals) => vals.map((v) => (kind === "latency" ? fmtSeconds(v) : fmtPct(v))), size: 72 }],
        series: [{}, ...series],
      };
      const uplot = new uPlot(opts, data, plot);
      chart = { figure, now, uplot, shaded, plot };
      state.charts.set(key, chart);
    } else {
      chart.shaded.current = periods;
      chart.uplot.setData(data);
      if (chart.figure.parentNode !== container) container.append(chart.figure);
    }
    return chart;
  }

  function renderCharts(history) {
    const container = $("chart-list");
    // every chart spans the chosen range, however few points it has
    state.xmax = history.now || Date.now() / 1000;
    state.xmin = history.since || state.xmax - 3600;
    const wanted = new Set();
    const series = (history.series || []).filter((s) => s.service === state.service);
    series.sort((a, b) => rank(a.stage) - rank(b.stage) || a.stage.localeCompare(b.stage));
    const periodsOf = (stage) =>
      (history.alerts || []).filter((a) => a.service === state.service && (!a.stage || a.stage === stage));
    for (const s of series) {
      const key = `latency:${s.service}:${s.stage}`;
      wanted.add(key);
      const xs = s.points.map((p) => p.time + s.resolution); // a point is drawn at the end of its interval
      const data = [xs, s.points.map((p) => p.p50), s.points.map((p) => p.p95)];
      const chart = upsertChart(
        key,
        s.stage,
        container,
        [
          { label: "p50", stroke: "#1a56db", width: 1.5, value: (u, v) => fmtSeconds(v) },
          { label: "p95", stroke: "#c62828", width: 1.5, value: (u, v) => fmtSeconds(v) },
        ],
        data,
        periodsOf(s.stage),
        "latency",
      );
      const last = s.points[s.points.length - 1];
      chart.figure.dataset.stage = s.stage;
      chart.figure.dataset.p95 = last ? String(last.p95) : "";
      chart.figure.dataset.p50 = last ? String(last.p50) : "";
      chart.now.textContent = last ? `now p50 ${fmtSeconds(last.p50)} · p95 ${fmtSeconds(last.p95)}` : "";
    }
    if (series.length) {
      // errors and empty retrievals: one chart for the service, one line per stage (empty: retrieval only)
      const times = [...new Set(series.flatMap((s) => s.points.map((p) => p.time)))].sort((a, b) => a - b);
      const lines = [];
      const data = [times.map((t) => t + (series[0].resolution || 10))];
      const colours = ["#1a56db", "#c62828", "#2e7d32", "#7b1fa2", "#c77700", "#00838f"];
      series.forEach((s, i) => {
        const byTime = new Map(s.points.map((p) => [p.time, p]));
        lines.push({ label: `${s.stage} errors`, stroke: colours[i % colours.length], width: 1.5, value: (u, v) => fmtPct(v) });
        data.push(times.map((t) => (byTime.has(t) ? byTime.get(t).errors / byTime.get(t).count : null)));
        if (s.stage === "retrieval") {
          lines.push({ label: "empty retrievals", stroke: "#5b6577", dash: [4, 4], width: 1.5, value: (u, v) => fmtPct(v) });
          data.push(times.map((t) => (byTime.has(t) ? byTime.get(t).empty / byTime.get(t).count : null)));
        }
      });
      const key = `rates:${state.service}:${series.map((s) => s.stage).join(",")}`;
      wanted.add(key);
      upsertChart(key, "error and empty-retrieval rates", container, lines, data, periodsOf(null), "rates");
    }
    for (const [key, chart] of state.charts) {
      if (!wanted.has(key)) {
        chart.uplot.destroy();
        chart.figure.remove();
        state.charts.delete(key);
      }
    }
    if (!series.length) {
      if (!$("chart-empty")) container.append(el("p", { id: "chart-empty", class: "note" }, "no history yet for this service (points close every 10 s)"));
    } else if ($("chart-empty")) {
      $("chart-empty").remove();
    }
  }

  function rank(stage) {
    const i = STAGE_ORDER.indexOf(stage);
    return i < 0 ? STAGE_ORDER.length : i;
  }

  window.addEventListener("resize", () => {
    for (const chart of state.charts.values()) chart.uplot.setSize({ width: chartWidth(chart.plot), height: 180 });
  });

  // --- alerts ----------------------------------------------------------------------------------------------------
  function diagnosisView(alert) {
    const d = alert.diagnosis;
    if (!d) return el("div", { class: "diagnosis" }, el("p", {}, "no diagnosis recorded"));
    const causes = el(
      "ol",
      { class: "causes" },
      (d.possible_causes || []).map((c) =>
        el("li", {}, el("strong", {}, c.cause), ` (${Math.round(c.confidence * 100)} %)`, c.stage ? ` · ${c.stage}${c.component ? `/${c.component}` : ""}` : "", ": ", c.summary),
      ),
    );
    const rows = (d.attribution || []).map((s) =>
      el(
        "tr",
        { "data-status": s.status },
        el("td", {}, s.stage),
        el("td", {}, s.component),
        el("td", { class: "share" }, fmtPct(s.time_share)),
        el("td", {}, fmtSeconds(s.p95)),
        el("td", {}, fmtSeconds(s.usual_p95)),
        el("td", {}, fmtPct(s.error_rate)),
        el("td", {}, s.status),
      ),
    );
    return el(
      "div",
      { class: "diagnosis", id: `diagnosis-${alert.id}` },
      el("p", { class: "summary" }, d.summary || ""),
      el("p", {}, "primary cause: ", el("strong", {}, d.primary_cause), ` · confidence ${Math.round((d.confidence || 0) * 100)} %`),
      el("h3", {}, "Possible causes"),
      causes,
      rows.length
        ? [
            el("h3", {}, "Where the time went (stage attribution)"),
            el(
              "div",
              { class: "scroll" },
              el(
                "table",
                { class: "bars" },
                el("thead", {}, el("tr", {}, ["stage", "component", "time share", "p95", "usual p95", "errors", "status"].map((h) => el("th", {}, h)))),
                el("tbody", {}, rows),
              ),
            ),
          ]
        : null,
      el("h3", {}, "Recommended actions"),
      el("ul", { class: "actions" }, (d.recommended_actions || []).map((a) => el("li", {}, a))),
      alert.notifications && alert.notifications.length
        ? el("p", { class: "note" }, `notifications: ${alert.notifications.map((n) => `${n.channel} ${n.status}`).join(", ")}`)
        : null,
    );
  }

  // Re-render only when the document changed, and keep the keyboard focus on the same alert across a re-render.
  const signatures = new Map();
  function changed(name, doc) {
    const signature = JSON.stringify(doc);
    if (signatures.get(name) === signature) return false;
    signatures.set(name, signature);
    return true;
  }

  function renderAlerts(alerts) {
    if (!changed("alerts", [alerts, [...state.expanded]])) return;
    const focused = document.activeElement && document.activeElement.closest ? document.activeElement.closest("li.alert") : null;
    const focusedId = focused ? focused.dataset.id : null;
    const items = alerts.map((alert) => {
      const open = state.expanded.has(alert.id);
      const button = el(
        "button",
        { type: "button", "aria-expanded": open ? "true" : "false", "aria-controls": `diagnosis-${alert.id}` },
        el("span", { class: "rule" }, alert.rule),
        el("span", { class: "badge" }, alert.status),
        el("span", { class: "badge" }, alert.severity),
        el("span", { class: "where" }, [alert.service, alert.stage, alert.component].filter(Boolean).join(" / ")),
        el("span", { class: "when" }, `since ${fmtTime(alert.started_at || alert.active_since)}`),
        el("span", { class: "message" }, alert.message),
      );
      button.addEventListener("click", () => {
        if (state.expanded.has(alert.id)) state.expanded.delete(alert.id);
        else state.expanded.add(alert.id);
        renderAlerts(state.lastAlerts || []);
      });
      return el(
        "li",
        { class: `alert severity-${alert.severity} status-${alert.status}`, "data-id": alert.id, "data-rule": alert.rule },
        button,
        open ? diagnosisView(alert) : null,
      );
    });
    $("alert-list").replaceChildren(...(items.length ? items : [el("li", { class: "note" }, "no alerts in the last 24 hours")]));
    if (focusedId !== null) {
      const again = document.querySelector(`li.alert[data-id="${CSS.escape(focusedId)}"] > button`);
      if (again) again.focus();
    }
  }

  function renderRecoveries(recoveries) {
    if (!changed("recoveries", recoveries)) return;
    const rows = recoveries.map((r) =>
      el(
        "tr",
        {},
        el("td", {}, fmtTime(r.started_at)),
        el("td", {}, r.hook),
        el("td", {}, r.action + (r.dry_run ? " (dry run)" : "")),
        el("td", {}, r.target),
        el("td", {}, r.status + (r.verification ? ` · ${r.verification}` : "")),
        el("td", {}, r.reason),
      ),
    );
    $("recovery-table").tBodies[0].replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colspan: 6 }, "no recovery actions in the last 24 hours"))]));
  }

  // --- dependency graph ------------------------------------------------------------------------------------------
  function aggregate(doc) {
    // Keep services, then unhealthy nodes, then the rest by degree, up to GRAPH_LIMIT; fold the others per kind/type.
    const nodes = doc.nodes || [];
    const edges = doc.edges || [];
    if (nodes.length <= GRAPH_LIMIT) return { nodes, edges, folded: 0 };
    const degree = new Map();
    for (const e of edges) {
      degree.set(e.source, (degree.get(e.source) || 0) + 1);
      degree.set(e.target, (degree.get(e.target) || 0) + 1);
    }
    const score = (n) => (n.kind === "service" ? 3 : 0) + (n.health !== "up" ? 2 : 0);
    const ranked = [...nodes].sort((a, b) => score(b) - score(a) || (degree.get(b.id) || 0) - (degree.get(a.id) || 0));
    const kept = ranked.slice(0, GRAPH_LIMIT - 20);
    const keptIds = new Set(kept.map((n) => n.id));
    const groups = new Map();
    for (const n of ranked.slice(GRAPH_LIMIT - 20)) {
      const gid = `group:${n.kind}/${n.type || ""}`;
      const g = groups.get(gid) || { id: gid, kind: n.kind, type: n.type, count: 0, health: "up", service: null, attributes: {} };
      g.count += 1;
      if (n.health === "down" || (n.health === "degraded" && g.health === "up")) g.health = n.health;
      groups.set(gid, g);
    }
    const memberOf = new Map();
    for (const n of ranked.slice(GRAPH_LIMIT - 20)) memberOf.set(n.id, `group:${n.kind}/${n.type || ""}`);
    const groupNodes = [...groups.values()].map((g) => ({ ...g, name: `${g.count} more ${g.type || g.kind}` }));
    const seen = new Set();
    const outEdges = [];
    for (const e of edges) {
      const s = keptIds.has(e.source) ? e.source : memberOf.get(e.source);
      const t = keptIds.has(e.target) ? e.target : memberOf.get(e.target);
      const k = `${s}>${t}`;
      if (!s || !t || s === t || seen.has(k)) continue;
      seen.add(k);
      outEdges.push({ ...e, source: s, target: t });
    }
    return { nodes: [...kept, ...groupNodes], edges: outEdges, folded: nodes.length - kept.length };
  }

  function renderGraph(doc) {
    const note = $("graph-note");
    const list = $("dependency-list");
    if (doc === null) {
      note.textContent = "dependency graph unavailable (this analyzer has no /api/v1/dependencies)";
      list.replaceChildren();
      return;
    }
    const { nodes, edges, folded } = aggregate(doc);
    const notes = [`${(doc.nodes || []).length} nodes, ${(doc.edges || []).length} edges`];
    if (doc.truncated) notes.push(`the analyzer aggregated the nodes beyond its limit of ${doc.limit}`);
    if (folded) notes.push(`${folded} nodes beyond the page's limit of ${GRAPH_LIMIT} are folded into "more" nodes`);
    note.textContent = notes.join(" · ");
    const elements = [
      ...nodes.map((n) => ({
        group: "nodes",
        data: { id: n.id, label: n.name, kind: n.kind, health: n.health || "unknown", colour: HEALTH_COLOURS[n.health] || HEALTH_COLOURS.unknown },
      })),
      ...edges.map((e, i) => ({
        group: "edges",
        data: { id: `e${i}:${e.source}>${e.target}`, source: e.source, target: e.target, failing: (e.error_rate || 0) > 0.05 ? 1 : 0 },
      })),
    ];
    const key = elements.map((x) => x.data.id).join("|");
    if (!state.cy || key !== state.graphKey) {
      if (state.cy) state.cy.destroy();
      const big = nodes.length > 200;
      state.cy = cytoscape({
        container: $("graph"),
        elements,
        textureOnViewport: big,
        hideEdgesOnViewport: big,
        pixelRatio: big ? 1 : "auto",
        minZoom: 0.05,
        maxZoom: 4,
        style: [
          { selector: "node", style: { "background-color": "data(colour)", label: big ? "" : "data(label)", "font-size": 10, "text-wrap": "ellipsis", "text-max-width": 120, "min-zoomed-font-size": 6, width: 18, height: 18 } },
          { selector: 'node[kind = "service"]', style: { shape: "round-rectangle", width: 30, height: 22, label: "data(label)", "font-weight": "bold" } },
          { selector: 'node[kind = "dependency"]', style: { shape: "diamond" } },
          { selector: "edge", style: { width: 1.2, "line-color": "#b0b8c4", "target-arrow-color": "#b0b8c4", "target-arrow-shape": "triangle", "curve-style": big ? "haystack" : "bezier" } },
          { selector: "edge[failing = 1]", style: { "line-color": "#c62828", "target-arrow-color": "#c62828" } },
        ],
        layout: big
          ? { name: "grid", avoidOverlap: true, sort: (a, b) => rank(a.data("kind")) - rank(b.data("kind")) }
          : { name: "preset", positions: layered(nodes), fit: true, padding: 24 },
      });
      state.graphKey = key;
    } else {
      // only what changed: restyling a thousand unchanged nodes every poll would keep the canvas busy
      state.cy.batch(() => {
        for (const n of nodes) {
          const node = state.cy.getElementById(n.id);
          const health = n.health || "unknown";
          if (node.data("health") !== health) node.data({ health, colour: HEALTH_COLOURS[health] || HEALTH_COLOURS.unknown });
        }
        edges.forEach((e, i) => {
          const edge = state.cy.getElementById(`e${i}:${e.source}>${e.target}`);
          const failing = (e.error_rate || 0) > 0.05 ? 1 : 0;
          if (edge.data("failing") !== failing) edge.data("failing", failing);
        });
      });
    }
    // The same nodes as text (screen readers, keyboard users, search): dependencies and anything not up first.
    const listed = nodes.filter((n) => n.kind !== "stage").sort((a, b) => (a.health === "up") - (b.health === "up") || a.name.localeCompare(b.name));
    const dependents = new Map();
    for (const e of doc.edges || []) {
      const list2 = dependents.get(e.target) || [];
      list2.push(e.source);
      dependents.set(e.target, list2);
    }
    list.replaceChildren(
      ...listed.slice(0, 200).map((n) =>
        el(
          "li",
          { "data-node": n.id, "data-health": n.health || "unknown" },
          el("span", { class: `dot health-${n.health || "unknown"}` }),
          `${n.name} (${n.kind}${n.type ? `, ${n.type}` : ""}): ${n.health || "unknown"}`,
          n.kind === "dependency" && dependents.has(n.id) ? ` · used by ${serviceNames(dependents.get(n.id), doc)}` : "",
        ),
      ),
    );
  }

  // Rows by kind (services, then stages, then dependencies), at most 10 nodes a row, centred: the call direction
  // reads top to bottom and a node keeps its place while the document keeps its nodes.
  function layered(nodes) {
    const positions = {};
    let y = 0;
    for (const kind of ["service", "stage", "dependency"]) {
      const row = nodes.filter((n) => (n.kind === kind) || (kind === "dependency" && !["service", "stage"].includes(n.kind)));
      row.sort((a, b) => String(a.service || "").localeCompare(String(b.service || "")) || a.name.localeCompare(b.name));
      row.forEach((n, i) => {
        const line = Math.floor(i / 10);
        const width = Math.min(10, row.length - line * 10);
        positions[n.id] = { x: ((i % 10) - (width - 1) / 2) * 140, y: y + line * 70 };
      });
      if (row.length) y += Math.ceil(row.length / 10) * 70 + 60;
    }
    return positions;
  }

  function serviceNames(ids, doc) {
    const byId = new Map((doc.nodes || []).map((n) => [n.id, n]));
    return [...new Set(ids.map((id) => (byId.get(id) ? byId.get(id).service || byId.get(id).name : id)))].join(", ");
  }

  // --- the loop --------------------------------------------------------------------------------------------------
  async function refresh() {
    clearTimeout(state.timer);
    const status = $("status");
    try {
      const range = $("chart-range").value;
      const [stats, alertsDoc, recoveriesDoc, health] = await Promise.all([
        api("/api/v1/stats"),
        api("/api/v1/alerts?since=24h&limit=200"),
        api("/api/v1/recoveries?since=24h&limit=200"),
        api("/api/v1/health"),
      ]);
      showLogin(false);
      const alerts = (alertsDoc && alertsDoc.alerts) || [];
      state.lastAlerts = alerts;
      renderServices(stats || {}, alerts, health || {});
      renderAlerts(alerts);
      renderRecoveries((recoveriesDoc && recoveriesDoc.recoveries) || []);
      const [history, graph] = await Promise.all([
        state.service ? api(`/api/v1/history?service=${encodeURIComponent(state.service)}&since=${range}`) : Promise.resolve({ series: [] }),
        api("/api/v1/dependencies"),
      ]);
      renderCharts(history || { series: [] });
      renderGraph(graph);
      status.className = "";
      status.textContent = `updated ${new Date().toLocaleTimeString()} · every ${POLL_MS / 1000} s`;
      state.updates = (state.updates || 0) + 1;
    } catch (error) {
      if (error instanceof Unauthorized) {
        sessionStorage.removeItem(TOKEN_KEY);
        showLogin(true);
        status.textContent = "sign in required";
        return; // no polling until a token is given
      }
      status.className = "error";
      status.textContent = `update failed: ${error.message}; retrying`;
    }
    state.timer = setTimeout(refresh, POLL_MS);
  }

  refresh();
})();
