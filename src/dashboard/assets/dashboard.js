// actorbus dashboard page: reads the server-sent events of /api/events and draws them. Plain
// browser JavaScript, no libraries, no build step. Every text from the server goes in through
// textContent, never innerHTML: class names and error messages are not ours to trust.
"use strict";

(function () {
  var state = {
    hello: null,
    namespaces: { followed: [], discovered: [] },
    current: null,
    snapshots: {}, // namespace -> last snapshot
    history: {}, // namespace -> service -> points [t, rate, errRate, p50, p99]
    events: {}, // namespace -> events, oldest first
    freshEvents: new Set(),
    live: "connecting",
  };
  var MAX_EVENTS = 200;
  var PALETTE = ["#2f6fde", "#e0672b", "#1f9d55", "#9b4dca", "#d23b3b", "#0f9aa8", "#c7a002", "#6b7687", "#d6468e", "#5a8f29"];
  var STATE_LABEL = { recovering: "restarting" };
  var $ = function (id) { return document.getElementById(id); };

  function el(tag, attrs, children) {
    var e = document.createElement(tag);
    if (attrs) for (var k in attrs) {
      var v = attrs[k];
      if (v === undefined || v === null || v === false) continue;
      if (k === "text") e.textContent = String(v);
      else if (k === "className") e.className = v;
      // Through the CSSOM: the page's CSP refuses inline style attributes.
      else if (k === "style") Object.assign(e.style, v);
      else if (k === "onclick") e.addEventListener("click", v);
      else e.setAttribute(k, v === true ? "" : String(v));
    }
    (children || []).forEach(function (c) { if (c !== null && c !== undefined) e.appendChild(typeof c === "string" ? document.createTextNode(c) : c); });
    return e;
  }
  function svg(tag, attrs, children) {
    var e = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (var k in attrs || {}) {
      if (k === "text") e.textContent = String(attrs[k]);
      else e.setAttribute(k, String(attrs[k]));
    }
    (children || []).forEach(function (c) { if (c) e.appendChild(c); });
    return e;
  }

  // In order of first sight, so the first ten services never share a color.
  var colors = new Map();
  function colorOf(name) {
    if (!colors.has(name)) colors.set(name, PALETTE[colors.size % PALETTE.length]);
    return colors.get(name);
  }
  function fmt(v, digits) {
    if (v === undefined || v === null || !isFinite(v)) return "-";
    if (digits !== undefined) return v.toFixed(digits);
    var a = Math.abs(v);
    return a >= 100 ? v.toFixed(0) : a >= 10 ? v.toFixed(1) : v.toFixed(2);
  }
  function pct(v) { return v > 0 ? (v * 100).toFixed(v < 0.01 ? 2 : 1) + "%" : "0%"; }
  function ago(ms) {
    if (!ms) return "never";
    var s = Math.max(0, (Date.now() - ms) / 1000);
    return s < 1 ? "just now" : s < 60 ? s.toFixed(0) + " s ago" : s < 3600 ? (s / 60).toFixed(0) + " min ago" : (s / 3600).toFixed(1) + " h ago";
  }
  function clock(ms) { return new Date(ms).toLocaleTimeString([], { hour12: false }); }
  function stateName(s) { return s.indexOf("unreachable") === 0 ? "unreachable" : STATE_LABEL[s] || s; }

  // ---- data in -------------------------------------------------------------------------

  var scheduled = false;
  function render() {
    if (scheduled) return;
    scheduled = true;
    requestAnimationFrame(function () { scheduled = false; draw(); });
  }

  function connect() {
    var es = new EventSource("/api/events");
    var on = function (name, fn) { es.addEventListener(name, function (m) { fn(JSON.parse(m.data)); render(); }); };
    es.onopen = function () { state.live = "open"; render(); };
    es.onerror = function () { state.live = "closed"; render(); };
    on("hello", function (h) {
      state.hello = h;
      var wanted = new URLSearchParams(location.search).get("namespace");
      if (!state.current || h.namespaces.indexOf(state.current) < 0) state.current = h.namespaces.indexOf(wanted) >= 0 ? wanted : h.namespaces[0];
    });
    on("namespaces", function (n) { state.namespaces = n; });
    on("history", function (h) { state.history[h.namespace] = h.points; });
    on("events", function (e) { state.events[e.namespace] = e.events.slice(-MAX_EVENTS); });
    on("event", function (e) {
      var list = state.events[e.namespace] || (state.events[e.namespace] = []);
      list.push(e);
      if (list.length > MAX_EVENTS) list.splice(0, list.length - MAX_EVENTS);
      state.freshEvents.add(e);
    });
    on("snapshot", function (s) {
      state.snapshots[s.namespace] = s;
      var hist = state.history[s.namespace] || (state.history[s.namespace] = {});
      var oldest = s.at - (state.hello ? state.hello.historySeconds : 600) * 1000;
      for (var name in s.points || {}) (hist[name] || (hist[name] = [])).push(s.points[name]);
      for (var n in hist) {
        var pts = hist[n];
        while (pts.length && pts[0][0] < oldest) pts.shift();
        if (!pts.length) delete hist[n];
      }
    });
  }

  // ---- actions -------------------------------------------------------------------------

  function toast(text) {
    var t = $("toast");
    t.textContent = text;
    t.hidden = false;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(function () { t.hidden = true; }, 5000);
  }
  function act(name, body, button) {
    if (button) button.disabled = true;
    fetch("/api/actions/" + name, {
      method: "POST",
      headers: { "content-type": "application/json", "x-actorbus-action": "1" },
      body: JSON.stringify(body),
    })
      .then(function (r) { return r.json().then(function (j) { return { ok: r.ok, body: j }; }); })
      .then(function (r) { toast(r.ok ? r.body.message : "failed: " + r.body.error); })
      .catch(function (e) { toast("failed: " + e.message); })
      .then(function () { if (button) button.disabled = false; });
  }
  $("reset").addEventListener("click", function () {
    var ns = state.current;
    if (ns && confirm('Stop every service of namespace "' + ns + '" and empty its registry?')) act("reset", { namespace: ns }, $("reset"));
  });

  // ---- drawing -------------------------------------------------------------------------

  function draw() {
    var live = $("live");
    live.dataset.state = state.live;
    live.querySelector("b").textContent = state.live === "open" ? "live" : state.live === "closed" ? "reconnecting" : "connecting";
    if (!state.hello) return;
    var ns = state.current;
    var snap = state.snapshots[ns];
    drawTabs();
    $("reset").hidden = !state.hello.allowActions;
    $("updated").textContent = snap ? "updated " + clock(snap.at) : "";
    var banner = $("banner");
    banner.hidden = !(snap && snap.error);
    banner.textContent = snap && snap.error ? "The last poll failed (showing the one before): " + snap.error : "";
    if (!snap) return;
    drawCards(snap);
    drawCharts(ns, snap);
    drawServices(snap);
    drawReplicas(snap);
    drawInference(snap);
    drawExecutors(snap);
    drawAgents(snap);
    drawEvents(ns);
    drawNamespaces();
  }

  function drawTabs() {
    var tabs = $("tabs");
    tabs.replaceChildren.apply(tabs, state.hello.namespaces.map(function (ns) {
      return el("button", {
        role: "tab", text: ns, "aria-selected": ns === state.current ? "true" : "false", "data-namespace": ns,
        onclick: function () { state.current = ns; history.replaceState(null, "", "?namespace=" + encodeURIComponent(ns)); render(); },
      });
    }));
  }

  function card(value, label, cls) { return el("div", { className: "card" }, [el("div", { className: "v " + (cls || ""), text: value }), el("div", { className: "k", text: label })]); }
  function drawCards(s) {
    var rate = 0, calls = 0, errs = 0;
    s.services.forEach(function (x) { rate += x.callsPerSecond; calls += x.callsPerSecond; errs += x.callsPerSecond * x.errorRate; });
    var healthy = s.replicas.filter(function (r) { return r.state === "healthy"; }).length;
    var errRate = calls > 0 ? errs / calls : 0;
    var slots = s.agents.reduce(function (a, h) { return [a[0] + h.usedCpus, a[1] + h.cpus]; }, [0, 0]);
    $("cards").replaceChildren(
      card(String(s.services.length), "services"),
      card(healthy + " / " + s.replicas.length, "replicas healthy", healthy < s.replicas.length ? "err" : ""),
      card(fmt(rate), "calls / s"),
      card(pct(errRate), "error rate", errRate > 0 ? "err" : ""),
      card(String(s.agents.length), "agents"),
      card(s.agents.length ? slots[0] + " / " + slots[1] : "-", "process slots used"),
    );
  }

  function niceMax(v) {
    if (!(v > 0)) return 1;
    var p = Math.pow(10, Math.floor(Math.log10(v)));
    var m = v / p;
    return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
  }

  function chart(target, series, now, spanMs, unit) {
    // Drawn at the box's own size: a stretched viewBox would distort the labels.
    var W = Math.max(200, target.clientWidth || 600), H = 170, L = 44, R = 8, T = 8, B = 20;
    var max = 0;
    series.forEach(function (s) { s.points.forEach(function (p) { if (p[1] > max) max = p[1]; }); });
    max = niceMax(max);
    var x = function (t) { return L + ((t - (now - spanMs)) / spanMs) * (W - L - R); };
    var y = function (v) { return T + (1 - v / max) * (H - T - B); };
    var parts = [];
    var grid = svg("g", { class: "grid" }), axis = svg("g", { class: "axis" });
    for (var i = 0; i <= 4; i++) {
      var v = (max * i) / 4;
      grid.appendChild(svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v) }));
      axis.appendChild(svg("text", { x: L - 5, y: y(v) + 3, "text-anchor": "end", text: fmt(v) }));
    }
    var minutes = spanMs / 60000;
    var step = minutes > 30 ? 10 : minutes > 8 ? 2 : 1;
    for (var m = 0; m <= minutes; m += step) {
      axis.appendChild(svg("text", { x: x(now - m * 60000), y: H - 5, "text-anchor": m === 0 ? "end" : "middle", text: m === 0 ? "now" : "-" + m + " min" }));
    }
    parts.push(grid, axis);
    var any = false;
    series.forEach(function (s) {
      var pts = s.points.filter(function (p) { return p[0] >= now - spanMs; });
      if (pts.length === 0) return;
      any = true;
      var d = pts.map(function (p, i) { return (i ? "L" : "M") + x(p[0]).toFixed(1) + " " + y(p[1]).toFixed(1); }).join(" ");
      var path = svg("path", { d: d, fill: "none", stroke: s.color, "stroke-width": 1.8, "stroke-dasharray": s.dashed ? "4 3" : "none", "stroke-linejoin": "round" });
      path.appendChild(svg("title", { text: s.name + ": " + fmt(pts[pts.length - 1][1]) + " " + unit }));
      parts.push(path);
    });
    if (!any) parts.push(svg("text", { class: "empty", x: W / 2, y: H / 2, "text-anchor": "middle", text: "no calls yet" }));
    target.replaceChildren(svg("svg", { width: W, height: H, viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": unit }, parts));
  }

  function drawCharts(ns, snap) {
    var hist = state.history[ns] || {};
    var names = Object.keys(hist).sort();
    names.forEach(colorOf);
    var first = Infinity;
    names.forEach(function (n) { if (hist[n].length) first = Math.min(first, hist[n][0][0]); });
    var maxSpan = state.hello.historySeconds * 1000;
    // Start narrow and widen as history accumulates, up to the configured window.
    var span = Math.min(maxSpan, Math.max(60000, Math.ceil((snap.at - (isFinite(first) ? first : snap.at)) / 60000) * 60000));
    var label = "(last " + span / 60000 + " min)";
    $("window-rate").textContent = label;
    $("window-latency").textContent = label;
    chart($("chart-rate"), names.map(function (n) { return { name: n, color: colorOf(n), points: hist[n].map(function (p) { return [p[0], p[1]]; }) }; }), snap.at, span, "calls/s");
    var lat = [];
    names.forEach(function (n) {
      lat.push({ name: n + " p99", color: colorOf(n), points: hist[n].map(function (p) { return [p[0], p[4]]; }) });
      lat.push({ name: n + " p50", color: colorOf(n), dashed: true, points: hist[n].map(function (p) { return [p[0], p[3]]; }) });
    });
    chart($("chart-latency"), lat, snap.at, span, "ms");
    $("legend").replaceChildren.apply($("legend"), names.map(function (n) { return el("span", {}, [el("i", { style: { background: colorOf(n) } }), n]); }));
  }

  function rows(table, list, make, empty, cols) {
    var body = $(table).tBodies[0];
    body.replaceChildren.apply(body, list.length ? list.map(make) : [el("tr", {}, [el("td", { className: "none", colspan: cols, text: empty })])]);
  }
  function td(text, cls) { return el("td", { text: text, className: cls, title: text }); }

  function drawServices(s) {
    rows("services", s.services, function (x) {
      return el("tr", { "data-service": x.name, "data-kind": x.kind }, [
        el("td", {}, [el("span", { className: "swatch", style: { background: colorOf(x.name) } }), x.name]),
        el("td", {}, [el("span", { className: "kind", text: x.kind })]),
        td(x.className),
        td(x.healthy + " / " + x.replicas, "n" + (x.healthy < x.replicas ? " err" : "")),
        td(fmt(x.callsPerSecond), "n"),
        td(pct(x.errorRate), "n" + (x.errorRate > 0 ? " err" : "")),
        td(fmt(x.p50Ms), "n"),
        td(fmt(x.p99Ms), "n"),
      ]);
    }, "no services in this namespace yet", 8);
  }

  function drawReplicas(s) {
    var canAct = state.hello.allowActions;
    rows("replicas", s.replicas, function (r) {
      var name = stateName(r.state);
      var button = canAct && r.restartable ? el("button", {
        className: "act", text: "Restart", disabled: r.state !== "healthy",
        title: "Stop this replica's process; its supervisor starts a new one",
        onclick: function (ev) { act("restart", { namespace: s.namespace, service: r.service, replica: Number(r.replica) }, ev.currentTarget); },
      }) : null;
      return el("tr", { "data-replica": r.service + "/" + r.replica, "data-state": r.state, title: r.version && r.version !== "-" ? "version " + r.version : null }, [
        td(r.service), td(r.replica, "n"), td(r.hosts), td(r.pids),
        el("td", { title: r.reason ? r.state + ": " + r.reason : r.state }, [el("span", { className: "badge " + name, text: name }), r.reason ? el("span", { className: "muted reason", text: " " + r.reason }) : null]),
        td(String(r.inflight), "n"), td(String(r.calls), "n"), td(String(r.restarts), "n" + (r.restarts ? " err" : "")),
        el("td", {}, [button]),
      ]);
    }, "no replicas", 9);
  }

  function drawInference(s) {
    rows("inference", s.inference, function (x) {
      if (x.error) return el("tr", { "data-inference": x.name }, [td(x.name), el("td", { colspan: 5, className: "err", text: x.error, title: x.error })]);
      return el("tr", { "data-inference": x.name }, [td(x.name), td(fmt(x.meanBatchSize, 1), "n"), td(x.queued === undefined || x.queued === null ? "-" : String(x.queued), "n"), td(fmt(x.requestsPerSecond), "n"), td(fmt(x.p50ModelMs), "n"), td(String(x.batches), "n")]);
    }, "none registered", 6);
  }

  function drawExecutors(s) {
    rows("executors", s.executors, function (x) {
      if (x.error) return el("tr", { "data-executor": x.name }, [td(x.name), el("td", { colspan: 5, className: "err", text: x.error, title: x.error })]);
      var used = x.poolSize ? (x.busy / x.poolSize) * 100 : 0;
      return el("tr", { "data-executor": x.name }, [td(x.name), el("td", {}, [el("div", { className: "bar", title: x.busy + " busy of " + x.poolSize }, [el("i", { style: { width: used + "%" } })])]), td(String(x.busy), "n"), td(String(x.idle), "n"), td(String(x.queued), "n"), td(String(x.restarts), "n")]);
    }, "none registered", 6);
  }

  function drawAgents(s) {
    var box = $("agents");
    if (!s.agents.length) {
      box.replaceChildren(el("div", { className: "muted", text: "No agents: replicas run on the machines that launch them." }));
      return;
    }
    box.replaceChildren.apply(box, s.agents.map(function (a) {
      var late = a.heartbeatAt && Date.now() - a.heartbeatAt > 3 * (a.heartbeatMs || 1000);
      return el("div", { className: "agent", "data-agent": a.hostId }, [
        el("div", { className: "row" }, [el("b", { text: a.hostId }), el("span", { className: late ? "err" : "muted", text: "heartbeat " + ago(a.heartbeatAt) })]),
        el("div", { className: "bar", title: a.usedCpus + " of " + a.cpus + " process slots used" }, [el("i", { style: { width: (a.cpus ? (a.usedCpus / a.cpus) * 100 : 0) + "%" } })]),
        el("div", { className: "row muted" }, [
          el("span", { text: "slots " + a.usedCpus + " used, " + (a.cpus - a.usedCpus) + " free" + (a.gpus ? " · GPUs " + a.usedGpus + " used, " + (a.gpus - a.usedGpus) + " free" : "") }),
          el("span", { text: a.hostname + " pid " + a.pid }),
        ]),
      ]);
    }));
  }

  function drawEvents(ns) {
    var list = (state.events[ns] || []).slice().reverse();
    var box = $("events");
    if (!list.length) {
      box.replaceChildren(el("li", { className: "muted" }, ["Nothing yet: registrations, removals and replica changes show here as they happen."]));
      return;
    }
    box.replaceChildren.apply(box, list.map(function (e) {
      var li = el("li", { className: state.freshEvents.has(e) ? "fresh" : "", "data-event": e.type }, [
        el("span", { className: "muted", text: clock(e.at) }),
        el("span", { className: "ev-" + e.type, text: e.type }),
        el("span", { title: e.text }, [el("b", { text: e.service }), " " + e.text]),
      ]);
      return li;
    }));
    state.freshEvents.clear();
  }

  function drawNamespaces() {
    var all = state.namespaces.discovered.slice();
    state.namespaces.followed.forEach(function (n) { if (all.indexOf(n) < 0) all.push(n); });
    all.sort();
    var box = $("namespaces");
    if (!all.length) { box.replaceChildren(el("li", { className: "muted", text: "cannot list them" })); return; }
    box.replaceChildren.apply(box, all.map(function (n) {
      var followed = state.namespaces.followed.indexOf(n) >= 0;
      return el("li", { className: followed ? "followed" : "", title: followed ? "shown here" : "start the dashboard with --namespace " + n + " to show it", text: n });
    }));
  }

  connect();
  // Heartbeat ages and the "now" edge of the charts move even between snapshots.
  setInterval(render, 1000);
})();
