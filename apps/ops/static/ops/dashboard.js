/* The operations dashboard: draws the panels from the snapshot the page embeds, then polls the JSON endpoint every
   DASHBOARD_REFRESH_SECONDS and redraws; the charts (uPlot) append the samples newer than the last one they have.
   Every control is a form posting to the control endpoint; with this script it is sent with fetch and the answer
   ({ok, message}) is shown above the panels, then the figures are polled again at once. */
(function () {
  "use strict";

  var root = document.getElementById("ops-dashboard");
  var configNode = document.getElementById("ops-dashboard-config");
  if (!root || !configNode) { return; }
  var config = JSON.parse(configNode.textContent);
  var controls = config.controls || {};
  var csrfInput = document.querySelector("#ops-dashboard input[name=csrfmiddlewaretoken]");
  var csrfToken = csrfInput ? csrfInput.value : "";
  var refreshMs = Math.max(1, config.refresh_seconds || 5) * 1000;
  var pollTimer = null;
  var polls = 0;
  var lastSampleT = null;
  var charts = {};
  var queueNames = [];

  // ---- helpers -------------------------------------------------------------------------------------------------
  function esc(value) {
    return String(value === null || value === undefined ? "" : value)
      .replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
      .replace(/"/g, "&quot;").replace(/'/g, "&#39;");
  }
  function byId(id) { return document.getElementById(id); }
  function money(text) {
    if (text === null || text === undefined) { return "—"; }
    var n = Number(text);
    var sign = n < 0 ? "−" : "";
    return sign + "$" + Math.abs(n).toLocaleString(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  }
  function signClass(text) {
    if (text === null || text === undefined) { return ""; }
    var n = Number(text);
    return n > 0 ? "ops-pos" : (n < 0 ? "ops-neg" : "");
  }
  function bytes(n) {
    if (n === null || n === undefined) { return "—"; }
    var units = ["B", "KiB", "MiB", "GiB", "TiB"];
    var i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
    return n.toFixed(i === 0 ? 0 : 1) + " " + units[i];
  }
  function clockTime(iso) {
    if (!iso) { return "—"; }
    var d = new Date(iso);
    return isNaN(d) ? esc(iso) : d.toLocaleTimeString([], { hour12: false });
  }
  function age(seconds) {
    if (seconds === null || seconds === undefined) { return "—"; }
    if (seconds < 90) { return seconds.toFixed(seconds < 10 ? 1 : 0) + " s"; }
    if (seconds < 5400) { return Math.round(seconds / 60) + " min"; }
    return (seconds / 3600).toFixed(1) + " h";
  }
  function badge(text, level) { return '<span class="ops-badge ops-' + level + '">' + esc(text) + "</span>"; }
  function setKpi(id, value, sub, level) {
    var node = byId(id);
    node.className = "ops-kpi" + (level ? " ops-" + level : "");
    node.querySelector(".ops-kpi-value").textContent = value;
    node.querySelector(".ops-kpi-sub").textContent = sub || "";
  }
  function rows(bodyId, items, columns, emptyText) {
    var body = byId(bodyId);
    if (!items || items.length === 0) {
      body.innerHTML = '<tr><td class="ops-empty" colspan="' + columns + '">' + esc(emptyText) + "</td></tr>";
      return;
    }
    body.innerHTML = items.join("");
  }

  // A small form for one control on one row: hidden parameters, the CSRF token, one button; disabled (with the
  // permission it needs as tooltip) when the user may not run the control.  The server checks again regardless.
  function controlForm(name, params, text, options) {
    options = options || {};
    var control = controls[name] || { allowed: false, permission: "?" };
    var hidden = '<input type="hidden" name="csrfmiddlewaretoken" value="' + esc(csrfToken) + '">';
    Object.keys(params).forEach(function (key) {
      hidden += '<input type="hidden" name="' + esc(key) + '" value="' + esc(params[key]) + '">';
    });
    var attrs = ' type="submit" name="control" value="' + esc(name) + '" data-control="' + esc(name) + '"';
    attrs += ' class="ops-btn' + (options.danger ? " ops-btn-danger" : "") + '"';
    if (options.confirm) { attrs += ' data-confirm="' + esc(options.confirm) + '"'; }
    if (!control.allowed) { attrs += ' disabled title="needs ' + esc(control.permission) + '"'; }
    return '<form method="post" action="' + esc(config.control_url) + '" class="ops-control-form">' + hidden +
      "<button" + attrs + ">" + esc(text) + "</button></form>";
  }

  // ---- panels --------------------------------------------------------------------------------------------------
  function renderKpis(s) {
    var h = s.health;
    var problems = [];
    if (!h.database_ok) { problems.push("database"); }
    if (!h.redis_ok) { problems.push("redis"); }
    if (!h.broker_ok) { problems.push("celery broker"); }
    if (!s.broker.connected) { problems.push("trading broker"); }
    setKpi("kpi-health", problems.length ? "DEGRADED" : "OK", problems.length ? problems.join(", ") + " down" :
      "database, redis, broker", problems.length ? "bad" : "ok");

    var ks = s.kill_switch;
    setKpi("kpi-kill-switch", ks.on === null ? "unknown" : (ks.on ? "ENGAGED" : "off"),
      ks.by ? (ks.on ? "by " : "released by ") + ks.by + (ks.reason ? ": " + ks.reason : "") : "",
      ks.on === null ? "warn" : (ks.on ? "bad" : "ok"));

    var pnl = s.pnl;
    setKpi("kpi-pnl", money(pnl.total), "open " + money(pnl.open) + " · realized " + money(pnl.realized_today),
      Number(pnl.total) < 0 ? "warn" : "ok");
    byId("kpi-pnl").querySelector(".ops-kpi-value").className = "ops-kpi-value " + signClass(pnl.total);

    setKpi("kpi-broker", s.broker.connected ? "connected" : "DISCONNECTED", s.broker.broker + ": " + s.broker.detail,
      s.broker.connected ? "ok" : "bad");

    var ing = s.ingestion;
    setKpi("kpi-ingest", ing.rate_per_s.toFixed(1) + " /s",
      ing.status + (ing.report_age_seconds !== null ? ", reported " + age(ing.report_age_seconds) + " ago" : ""),
      ing.stale ? "warn" : "ok");

    var mem = h.redis_memory;
    setKpi("kpi-redis", bytes(mem.used_bytes),
      mem.max_bytes ? mem.used_pct + "% of " + bytes(mem.max_bytes) : "no maxmemory limit",
      mem.used_pct !== null && mem.used_pct >= 90 ? "bad" : (mem.used_pct !== null && mem.used_pct >= 75 ? "warn" : "ok"));

    var depths = h.queue_depths || {};
    var total = 0;
    var deepest = "";
    Object.keys(depths).forEach(function (q) {
      total += depths[q];
      if (!deepest || depths[q] > depths[deepest]) { deepest = q; }
    });
    setKpi("kpi-queues", String(total), deepest && depths[deepest] > 0 ? "deepest: " + deepest + " " + depths[deepest] :
      "all queues empty", total >= 1000 ? "warn" : "ok");

    var alerts = s.alerts.filter(function (a) { return !a.resolved_at; });
    var critical = alerts.filter(function (a) { return a.severity === "critical"; }).length;
    setKpi("kpi-alerts", String(alerts.length), critical ? critical + " critical" : (alerts.length ? "waiting for a person" : "none"),
      alerts.length ? (critical ? "bad" : "warn") : "ok");

    var overall = byId("ops-overall");
    var bad = problems.length > 0 || ks.on === true || critical > 0;
    // A warning alert or a paused feed is not an emergency, but it is not "normal" either.
    var paused = (s.feeds || []).filter(function (f) { return f.paused === true; }).length;
    var warn = !bad && (alerts.length > 0 || paused > 0);
    overall.textContent = bad ? "attention" : (warn ? "needs a look" : "all systems normal");
    overall.className = "ops-pill ops-" + (bad ? "bad" : (warn ? "warn" : "ok"));
  }

  function renderKillSwitch(s) {
    var ks = s.kill_switch;
    var state = byId("kill-switch-state");
    state.textContent = ks.on === null ? "unknown" : (ks.on ? "ENGAGED" : "off");
    state.className = ks.on ? "ops-neg" : "ops-pos";
    byId("kill-switch-detail").textContent = ks.at ?
      (ks.on ? "since " : "released ") + clockTime(ks.at) + " by " + ks.by + (ks.reason ? " — " + ks.reason : "") : "";
  }

  function renderFeeds(s) {
    rows("feeds-body", s.feeds.map(function (f) {
      var who = f.since ? clockTime(f.since) + " by " + f.by + (f.reason ? " — " + f.reason : "") : (f.by ? "by " + f.by : "—");
      var state = f.paused === null ? badge("unknown", "warn") : (f.paused ? badge("paused", "bad") : badge("live", "ok"));
      var button = f.paused ?
        controlForm("feed_resume", { feed: f.feed }, "Resume") :
        controlForm("feed_pause", { feed: f.feed }, "Pause", { confirm: "Pause " + f.feed + "? " + f.description });
      // The description's head names the feed; the rest (what a pause stops) is the tooltip.
      var name = f.description.split(" (")[0];
      return '<tr data-feed="' + esc(f.feed) + '" title="' + esc(f.description) + '"><td><strong class="ops-mono">' + esc(f.feed) +
        '</strong><br><span class="mini quiet">' + esc(name) + '</span></td><td class="feed-state">' + state +
        "</td><td>" + esc(who) + "</td><td>" + esc(f.source_status) + "</td><td>" + button + "</td></tr>";
    }), 5, "no feeds");
  }

  function renderAlerts(s) {
    rows("alerts-body", s.alerts.map(function (a) {
      var level = a.severity === "critical" ? "bad" : (a.severity === "warning" ? "warn" : "ok");
      return '<tr data-alert-id="' + esc(a.id) + '"><td>' + badge(a.severity, level) + '</td><td class="ops-mono">' + esc(a.rule) +
        "</td><td>" + esc(a.summary) + '<br><span class="mini quiet">' + esc(a.source) + " · " + esc(a.key) + "</span></td><td>" +
        clockTime(a.raised_at) + "</td><td>" + (a.resolved_at ? badge("resolved", "ok") : badge("open", level)) + "</td><td>" +
        controlForm("alert_acknowledge", { alert_id: a.id }, "Acknowledge") + "</td></tr>";
    }), 6, "nothing waits for a person");
  }

  function renderHealth(s) {
    var h = s.health;
    var items = [
      ["Database", h.database_ok ? "ok" : "DOWN " + h.database_error],
      ["Redis", h.redis_ok ? "ok" : "DOWN " + h.redis_error],
      ["Celery broker", h.broker_ok ? "ok" : "DOWN " + h.broker_error],
      ["Worker canary", h.canary_age_seconds === null ? "never ran" : age(h.canary_age_seconds) + " ago" + (h.canary_stale ? " (STALE)" : "")],
      ["Dead letters 24 h", h.dead_letters_last_24h === null ? "—" : String(h.dead_letters_last_24h)],
      ["UW drift events", h.uw_drift_open === null ? "—" : String(h.uw_drift_open)],
      ["UW listener", s.ingestion.status + ", " + s.ingestion.frames.toLocaleString() + " frames, " + s.ingestion.reconnects + " reconnects"],
      ["Snapshot at", clockTime(s.at)]
    ];
    byId("health-list").innerHTML = items.map(function (pair) {
      return "<dt>" + esc(pair[0]) + "</dt><dd>" + esc(pair[1]) + "</dd>";
    }).join("");
  }

  function renderPositions(s) {
    rows("positions-body", s.positions.map(function (p) {
      return '<tr data-trade-id="' + esc(p.trade_id) + '"><td>#' + esc(p.trade_id) + '</td><td class="ops-mono">' + esc(p.option_symbol) +
        "</td><td>" + esc(p.strategy) + '</td><td class="num">' + esc(p.quantity) + '</td><td class="num">' + esc(p.entry_price) +
        '</td><td class="num">' + esc(p.mark === null ? "—" : p.mark) + '</td><td class="num ' + signClass(p.unrealized_pnl) + '">' +
        money(p.unrealized_pnl) + "</td><td>" +
        controlForm("position_close", { trade_id: p.trade_id }, "Close", { danger: true, confirm: "Close trade #" + p.trade_id + " (" + p.option_symbol + ") now?" }) +
        "</td></tr>";
    }), 8, "flat: no open positions");
  }

  function renderOrders(s) {
    rows("orders-body", s.orders.map(function (o) {
      return '<tr data-order-id="' + esc(o.id) + '"><td class="ops-mono">' + esc(o.client_order_id) + '</td><td class="ops-mono">' +
        esc(o.option_symbol) + "</td><td>" + esc(o.side) + "</td><td>" + esc(o.leg) + '</td><td class="num">' + esc(o.filled_quantity) +
        " / " + esc(o.quantity) + '</td><td class="num">' + esc(o.limit_price) + "</td><td>" + badge(o.status, "warn") + "</td><td>" +
        controlForm("order_cancel", { order_id: o.id }, "Cancel", { confirm: "Cancel order " + o.client_order_id + "?" }) + "</td></tr>";
    }), 8, "no working orders");
  }

  function renderQueues(s) {
    var depths = s.health.queue_depths || {};
    rows("queues-body", Object.keys(depths).map(function (q) {
      var level = depths[q] >= 1000 ? "bad" : (depths[q] >= 100 ? "warn" : "");
      return '<tr><td class="ops-mono">' + esc(q) + '</td><td class="num">' + (level ? badge(depths[q], level) : esc(depths[q])) + "</td></tr>";
    }), 2, "the broker is not Redis: no queue lengths");
  }

  function renderChannels(s) {
    rows("channels-body", s.ingestion.channels.map(function (c) {
      var stale = c.last_frame_age_s !== null && c.last_frame_age_s > 60;
      return '<tr data-channel="' + esc(c.channel) + '"><td class="ops-mono">' + esc(c.channel) + '</td><td class="num">' +
        c.rate_per_s.toFixed(1) + '</td><td class="num">' + (stale ? badge(age(c.last_frame_age_s) + " ago", "warn") :
        esc(age(c.last_frame_age_s)) + " ago") + "</td></tr>";
    }), 3, "the UW listener has reported no channel");
  }

  function renderPosts(s) {
    rows("posts-body", s.posts.map(function (p) {
      var level = p.status === "sent" ? "ok" : (p.status === "failed" ? "bad" : "warn");
      return '<tr><td>#' + esc(p.id) + "</td><td>" + esc(p.kind) + "</td><td>" + esc(p.tier) + "</td><td>" + badge(p.status, level) +
        (p.last_error ? '<br><span class="mini quiet">' + esc(p.last_error) + "</span>" : "") + "</td><td>" + clockTime(p.due_at) +
        "</td><td>" + clockTime(p.sent_at) + '</td><td class="num">' + (p.lateness_ms === null ? "—" :
        (p.late ? badge((p.lateness_ms / 1000).toFixed(1) + " s", "bad") : (p.lateness_ms / 1000).toFixed(1) + " s")) + "</td></tr>";
    }), 7, "nothing posted yet");
  }

  function renderApprovals(s) {
    rows("approvals-body", s.approvals.map(function (a) {
      return "<tr><td>" + esc(a.title) + '<br><span class="mini quiet">' + esc(a.subject_type) + " #" + esc(a.subject_id) +
        "</span></td><td>" + clockTime(a.expires_at) + "</td></tr>";
    }), 2, "nothing waits for approval");
  }

  // Signals risk has not decided yet: an operator may send one to risk now (approve) or reject it.
  function renderSignals(s) {
    rows("signals-body", (s.signals || []).map(function (g) {
      return '<tr data-signal-id="' + esc(g.signal_id) + '"><td class="ops-mono">' + esc(g.option_symbol) + '<br><span class="mini quiet">' +
        esc(g.strategy) + " " + esc(g.direction) + " · " + esc(g.signal_id) + '</span></td><td class="num">' + esc(g.limit_price) +
        '</td><td class="num">' + esc(g.confidence) + "</td><td>" + clockTime(g.created_at) + '</td><td class="ops-actions">' +
        controlForm("signal_approve", { signal_id: g.signal_id }, "Approve", { confirm: "Send signal " + g.signal_id + " to risk now? The kill switch and every limit still apply." }) +
        controlForm("signal_reject", { signal_id: g.signal_id }, "Reject", { danger: true, confirm: "Reject signal " + g.signal_id + "?" }) +
        "</td></tr>";
    }), 5, "none: risk decides every signal as it comes");
  }

  function render(s) {
    renderKpis(s);
    renderKillSwitch(s);
    renderFeeds(s);
    renderAlerts(s);
    renderHealth(s);
    renderPositions(s);
    renderOrders(s);
    renderQueues(s);
    renderChannels(s);
    renderPosts(s);
    renderApprovals(s);
    renderSignals(s);
    byId("ops-updated-at").textContent = clockTime(s.at);
  }

  // ---- charts --------------------------------------------------------------------------------------------------
  var PALETTE = ["#2b6cb0", "#c05621", "#2f855a", "#805ad5", "#b83280", "#d69e2e", "#319795", "#718096"];

  function chartWidth(node) { return Math.max(240, node.clientWidth - 12); }

  function makeChart(nodeId, seriesDefs) {
    var node = byId(nodeId);
    var opts = {
      width: chartWidth(node),
      height: 190,
      cursor: { drag: { x: true, y: false } },
      legend: { live: false },
      scales: { x: { time: true } },
      axes: [{ stroke: "#888", grid: { stroke: "rgba(128,128,128,0.15)" } },
             { stroke: "#888", grid: { stroke: "rgba(128,128,128,0.15)" }, size: 60 }],
      series: [{}].concat(seriesDefs.map(function (def, i) {
        return { label: def.label, stroke: def.color || PALETTE[i % PALETTE.length], width: def.width || 1.5,
                 fill: def.fill || undefined, points: { show: false } };
      }))
    };
    var data = [[]].concat(seriesDefs.map(function () { return []; }));
    return { plot: new window.uPlot(opts, data, node), data: data, node: node };
  }

  function initCharts(snapshot) {
    if (!window.uPlot) { return; }
    queueNames = Object.keys(snapshot.health.queue_depths || {});
    charts.pnl = makeChart("chart-pnl", [
      { label: "total", color: "#2b6cb0", width: 2, fill: "rgba(43,108,176,0.08)" },
      { label: "open", color: "#d69e2e" },
      { label: "realized", color: "#2f855a" }
    ]);
    charts.ingest = makeChart("chart-ingest", [{ label: "frames/s", color: "#805ad5", width: 2, fill: "rgba(128,90,213,0.10)" }]);
    charts.queues = makeChart("chart-queues", queueNames.map(function (q) { return { label: q }; }));
    window.addEventListener("resize", function () {
      Object.keys(charts).forEach(function (key) {
        var chart = charts[key];
        chart.plot.setSize({ width: chartWidth(chart.node), height: 190 });
      });
    });
  }

  function appendSamples(samples) {
    if (!samples || samples.length === 0) { return; }
    samples.forEach(function (sample) {
      if (lastSampleT !== null && sample.t <= lastSampleT) { return; }
      lastSampleT = sample.t;
      if (!charts.pnl) { return; }
      charts.pnl.data[0].push(sample.t);
      charts.pnl.data[1].push(sample.pnl_total);
      charts.pnl.data[2].push(sample.pnl_open);
      charts.pnl.data[3].push(sample.pnl_realized);
      charts.ingest.data[0].push(sample.t);
      charts.ingest.data[1].push(sample.ingest_rate);
      charts.queues.data[0].push(sample.t);
      queueNames.forEach(function (q, i) {
        charts.queues.data[i + 1].push(sample.queues && q in sample.queues ? sample.queues[q] : null);
      });
    });
    // A day's worth at most: drop points from before today's first (the server keeps one session).
    Object.keys(charts).forEach(function (key) { charts[key].plot.setData(charts[key].data); });
  }

  // ---- polling -------------------------------------------------------------------------------------------------
  function schedule(delay) {
    if (pollTimer) { clearTimeout(pollTimer); }
    pollTimer = setTimeout(poll, delay);
  }

  function poll() {
    var url = config.data_url + (lastSampleT !== null ? "?since=" + encodeURIComponent(lastSampleT) : "");
    fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (response.redirected || response.status === 302 || response.status === 401 || response.status === 403) {
          throw new Error("signed out: reload the page to sign in again");
        }
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.json();
      })
      .then(function (snapshot) {
        render(snapshot);
        appendSamples(snapshot.series);
        polls += 1;
        root.dataset.polls = String(polls);
        root.dataset.state = "live";
        var state = byId("ops-poll-state");
        state.textContent = "";
        state.className = "ops-poll-state";
      })
      .catch(function (error) {
        root.dataset.state = "error";
        var state = byId("ops-poll-state");
        state.textContent = "— not refreshing: " + error.message;
        state.className = "ops-poll-state ops-bad";
      })
      .then(function () { schedule(refreshMs); });
  }

  // ---- controls ------------------------------------------------------------------------------------------------
  function showMessage(text, level) {
    var node = byId("ops-message");
    node.textContent = text;
    node.className = "ops-message" + (level === "ok" ? "" : " ops-" + level);
    node.hidden = false;
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.classList || !form.classList.contains("ops-control-form")) { return; }
    var button = event.submitter;
    if (!button || button.name !== "control") { return; }
    event.preventDefault();
    if (button.disabled) { return; }
    if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) { return; }
    var body = new FormData(form);
    body.set("control", button.value);
    button.disabled = true;
    fetch(config.control_url, {
      method: "POST", body: body, credentials: "same-origin",
      headers: { Accept: "application/json", "X-CSRFToken": csrfToken }
    })
      .then(function (response) {
        return response.json().then(function (answer) { return { status: response.status, answer: answer }; },
          function () { return { status: response.status, answer: { ok: false, message: "HTTP " + response.status } }; });
      })
      .then(function (result) {
        var level = result.status === 200 ? (result.answer.ok ? "ok" : "warn") : "bad";
        showMessage(result.answer.message, level);
        if (result.status === 200 && form.id === "kill-form") { byId("kill-reason").value = ""; }
      })
      .catch(function (error) { showMessage("The control was not sent: " + error.message, "bad"); })
      .then(function () {
        button.disabled = !(controls[button.value] && controls[button.value].allowed);
        schedule(0);
      });
  });

  // ---- start ---------------------------------------------------------------------------------------------------
  render(config.snapshot);
  initCharts(config.snapshot);
  appendSamples(config.series);
  schedule(refreshMs);
})();
