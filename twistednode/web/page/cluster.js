// The live cluster page of a twistednode node.
//
// It draws the status document of the node that serves it (GET status) and follows it
// live over Server-Sent Events (GET events); when the stream drops it polls the status
// instead, and says so. Everything from the network is shown with textContent only:
// ids, host names and advertisements come from other nodes and are never parsed as HTML.
"use strict";

(function () {
  const POLL_MS = 2000; // polling period while the event stream is down
  const QUIET_MS = 5000; // no news for this long: ask the node directly
  const REOPEN_MS = 3000; // wait before reopening a stream the browser gave up on
  const LATE_S = 3; // a member not heard from for this long is drawn as late
  const DENSE_FROM = 5; // from this many nodes on, cards shrink to the essentials
  const GRID_FROM = 11; // from this many nodes on, the ring becomes a grid
  const SVG_NS = "http://www.w3.org/2000/svg";
  const MAP_W = 1000;
  const MAP_MARGIN = 40; // above and below the drawing
  const MAP_MIN_H = 300;
  // node-discover's default weight is -(ms / 10**13) for a process started at epoch ms
  // (13 digits from 2001 to 2286): the oldest process is the heaviest and wins.
  const WEIGHT_SCALE = 1e13;
  const EARLIEST_MS = 1e12;
  const CLOCK_SKEW_MS = 5 * 60 * 1000; // another host's clock may be ahead of this one
  // "?poll" in the page's address: no event stream, only polling. For a headless
  // screenshot: chromium's --virtual-time-budget runs out only while the network is
  // idle, which it never is with a stream open.
  const POLL_ONLY = new URLSearchParams(window.location.search).has("poll");

  const app = document.getElementById("app");
  const ring = document.getElementById("ring");
  const links = document.getElementById("links");
  const map = links.parentElement;
  const connection = document.getElementById("connection");
  const banner = document.getElementById("offline-banner");

  const state = {
    stream: null,
    pollTimer: null,
    received: 0, // how many documents were drawn
    lastDataAt: 0, // Date.now() of the last document
    lostAt: null, // Date of the first failure since the last document
    mode: "connecting",
  };

  // Formatting

  function text(value) {
    return value === null || value === undefined ? "" : String(value);
  }

  // A weight short enough for a card: a long fraction (-0.17642112001234) keeps six
  // significant digits there; the table and the tooltip show it whole.
  function shortWeight(value) {
    const s = text(value);
    if (typeof value !== "number" || s.length <= 10) return s;
    const p = value.toPrecision(6);
    return p.includes("e") ? p : String(Number(p));
  }

  // The start time a default weight stands for, as a Date, or null for any other
  // weight: a whole number of milliseconds, not after the document's time.
  function startedFromWeight(weight, now) {
    if (typeof weight !== "number" || !(weight < 0 && weight > -1)) return null;
    const ms = -weight * WEIGHT_SCALE;
    const whole = Math.round(ms);
    if (Math.abs(ms - whole) > 0.01 || whole < EARLIEST_MS) return null;
    if (typeof now === "number" && isFinite(now) && whole > now * 1000 + CLOCK_SKEW_MS) return null;
    return new Date(whole);
  }

  function pad2(n) {
    return String(n).padStart(2, "0");
  }

  function calendarDay(date) {
    return date.getFullYear() + "-" + pad2(date.getMonth() + 1) + "-" + pad2(date.getDate());
  }

  // "started 12:01:03", with the date when that was not on the document's day.
  function startedText(started, now) {
    const day = calendarDay(started);
    const today = typeof now === "number" && isFinite(now) ? calendarDay(new Date(now * 1000)) : day;
    const time = pad2(started.getHours()) + ":" + pad2(started.getMinutes()) + ":" + pad2(started.getSeconds());
    return "started " + (day === today ? "" : day + " ") + time;
  }

  // The election the node runs: "lease" (the registry's master key decides) or
  // "node-discover" (the weights decide); a document without one is node-discover's.
  function electionOf(doc) {
    const e = doc.election && typeof doc.election === "object" ? doc.election : {};
    return Object.assign({}, e, { mode: e.mode === "lease" ? "lease" : "node-discover" });
  }

  // The card's line on the election: a default weight as the start time it stands for.
  // Under the lease the weight decides nothing, so "oldest wins" is not said.
  function electionLine(n, now, mode) {
    const eligibility = n.claims ? "claims master" : n.isMasterEligible === false ? "not eligible" : "eligible";
    const started = startedFromWeight(n.weight, now);
    if (started === null) return "weight " + shortWeight(n.weight) + " · " + eligibility;
    const when = startedText(started, now);
    if (mode === "lease") return when + " · " + eligibility;
    return eligibility === "eligible" ? when + ", oldest wins" : when + " · " + eligibility;
  }

  function weightTitle(n, now, mode) {
    const started = startedFromWeight(n.weight, now);
    const whole = "weight " + text(n.weight);
    const decides = mode === "lease" ? "; the registry's lease picks the master, not the weight" : "";
    if (started === null) return whole + decides;
    const rule = mode === "lease" ? decides : "; the oldest node wins";
    return whole + ": node-discover's default, minus the start time (" + started.toISOString() + ")" + rule;
  }

  // The header's word on the election: the mode, and the master's fencing epoch.
  function electionFact(election) {
    if (election.mode !== "lease") return "node-discover · by weight";
    const epoch = election.masterEpoch;
    return "lease · " + (typeof epoch === "number" ? "epoch " + epoch : "no master");
  }

  function shortId(id) {
    const s = text(id);
    return s.length > 8 ? s.slice(0, 8) : s;
  }

  function duration(seconds) {
    if (typeof seconds !== "number" || !isFinite(seconds)) return "unknown";
    const s = Math.max(0, seconds);
    if (s < 10) return s.toFixed(1) + " s";
    if (s < 60) return Math.floor(s) + " s";
    if (s < 3600) {
      const sec = Math.floor(s % 60);
      return Math.floor(s / 60) + " min " + String(sec).padStart(2, "0") + " s";
    }
    const min = Math.floor((s % 3600) / 60);
    return Math.floor(s / 3600) + " h " + String(min).padStart(2, "0") + " min";
  }

  function clockTime(epochSeconds) {
    if (typeof epochSeconds !== "number" || !isFinite(epochSeconds)) return "unknown";
    return new Date(epochSeconds * 1000).toLocaleTimeString();
  }

  function scalar(value) {
    if (value === null || value === undefined) return "null";
    if (typeof value === "object") return JSON.stringify(value);
    return String(value);
  }

  function advertisement(value) {
    if (value === null || value === undefined) return "—";
    if (typeof value === "object" && !Array.isArray(value)) {
      const parts = Object.keys(value).map((k) => k + ": " + scalar(value[k]));
      return parts.length ? parts.join(", ") : "{}";
    }
    return scalar(value);
  }

  function clip(s, n) {
    return s.length > n ? s.slice(0, n - 1) + "…" : s;
  }

  function el(tag, className, content) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (content !== undefined) node.textContent = content;
    return node;
  }

  // The document, made safe to draw

  function nodesOf(doc) {
    const me = doc.self || {};
    const members = Array.isArray(doc.members) ? doc.members : [];
    const all = [Object.assign({}, me, { me: true })];
    for (const m of members) {
      if (m && m.id !== undefined && m.id !== me.id) all.push(Object.assign({}, m, { me: false }));
    }
    for (const n of all) {
      n.id = text(n.id);
      // The star follows the master this node agreed on; a node that says it is
      // master without being that one is named as claiming it.
      n.master = "master" in doc ? doc.master !== null && n.id === text(doc.master) : n.isMaster === true;
      n.claims = n.isMaster === true && !n.master;
      n.late = !n.me && typeof n.lastSeen === "number" && n.lastSeen > LATE_S;
    }
    all.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    return all;
  }

  function role(n) {
    if (n.master) return "master";
    if (n.claims) return "claims master";
    return n.isMasterEligible === false ? "member, not eligible" : "member";
  }

  function heard(n, doc) {
    if (n.me) {
      const up = typeof n.startedAt === "number" && typeof doc.now === "number" ? doc.now - n.startedAt : NaN;
      return isFinite(up) ? "up " + duration(up) : "this node";
    }
    if (typeof n.lastSeen !== "number") return "no hello yet";
    return n.late ? "no hello for " + duration(n.lastSeen) : "hello " + duration(n.lastSeen) + " ago";
  }

  function address(n) {
    return text(n.address) + ":" + text(n.port);
  }

  // The map

  // Where the nodes sit, in map coordinates (the SVG viewBox): on an ellipse, the
  // first one at the top. A card hangs below its disc, or above it in the upper part
  // of the ring, so that the lines from this node to the others do not run under it;
  // the whole drawing is then centred vertically.
  function layout(count) {
    const dense = count >= DENSE_FROM;
    const o =
      count >= DENSE_FROM ? { cx: MAP_W / 2, cy: 0, rx: 400, ry: 220 }
      : count === 2 ? { cx: MAP_W / 2, cy: 0, rx: 250, ry: 0 }
      : count === 1 ? { cx: MAP_W / 2, cy: 0, rx: 0, ry: 0 }
      : { cx: MAP_W / 2, cy: 0, rx: 340, ry: 150 };
    const start = count === 2 ? Math.PI : -Math.PI / 2;
    const disc = dense ? 24 : 34; // half a disc
    const card = dense ? 80 : 120; // a card and its gap
    const spots = [];
    for (let i = 0; i < count; i++) {
      const a = start + (2 * Math.PI * i) / count;
      const y = o.ry * Math.sin(a);
      spots.push({ x: o.cx + o.rx * Math.cos(a), y: y, above: count >= 3 && y < -o.ry / 2 });
    }
    const tops = spots.map((p) => p.y - disc - (p.above ? card : 0));
    const bottoms = spots.map((p) => p.y + disc + (p.above ? 0 : card));
    const height = Math.max(MAP_MIN_H, Math.max(...bottoms) - Math.min(...tops) + 2 * MAP_MARGIN);
    const shift = (height - Math.max(...bottoms) - Math.min(...tops)) / 2;
    for (const p of spots) p.y += shift;
    o.cy += shift;
    return { orbit: o, spots: spots, height: height };
  }

  function nodeElement(id) {
    for (const child of ring.children) {
      if (child.dataset.nodeId === id) return child;
    }
    const li = el("li", "node");
    li.dataset.nodeId = id;
    const disc = el("div", "disc");
    disc.setAttribute("aria-hidden", "true");
    disc.append(el("span", "glyph"));
    const card = el("div", "card");
    const title = el("p", "title");
    const badge = el("span", "badge badge-master", "★");
    badge.append(el("span", "word", " master"));
    title.append(badge, el("span", "name"), el("span", "badge badge-me", "me"));
    card.append(
      title,
      el("p", "addr"),
      el("p", "meta"),
      el("p", "seen"),
      el("p", "adv")
    );
    li.append(disc, card);
    ring.append(li);
    return li;
  }

  function drawMap(doc, nodes) {
    const grid = nodes.length >= GRID_FROM;
    ring.classList.toggle("grid", grid);
    ring.classList.toggle("dense", nodes.length >= DENSE_FROM);
    const keep = new Set(nodes.map((n) => n.id));
    for (const child of Array.from(ring.children)) {
      if (!keep.has(child.dataset.nodeId)) child.remove();
    }
    const { orbit, spots, height } = layout(Math.max(nodes.length, 1));
    map.style.aspectRatio = grid ? "auto" : MAP_W + " / " + Math.round(height);
    links.setAttribute("viewBox", "0 0 " + MAP_W + " " + Math.round(height));
    const where = new Map();
    nodes.forEach((n, i) => {
      const li = nodeElement(n.id);
      li.dataset.master = String(n.master);
      li.dataset.me = String(n.me);
      li.dataset.late = String(n.late);
      li.dataset.eligible = String(n.isMasterEligible !== false);
      li.setAttribute(
        "aria-label",
        (n.master ? "master " : "") + "node " + n.id + (n.me ? " (this node)" : "") + " at " + address(n)
      );
      li.querySelector(".glyph").textContent = n.master ? "★" : n.me ? "●" : "";
      li.querySelector(".name").textContent = shortId(n.id);
      li.querySelector(".name").title = n.id;
      li.querySelector(".addr").textContent = address(n);
      const started = startedFromWeight(n.weight, doc.now);
      li.dataset.weight = started === null ? "number" : "start-time";
      const mode = electionOf(doc).mode;
      li.querySelector(".meta").textContent = electionLine(n, doc.now, mode);
      li.querySelector(".meta").title = weightTitle(n, doc.now, mode);
      li.dataset.claims = String(n.claims);
      li.querySelector(".seen").textContent = heard(n, doc);
      const adv = advertisement(n.advertisement);
      li.querySelector(".adv").textContent = clip(adv, 44);
      li.querySelector(".adv").title = adv;
      li.classList.toggle("above", !grid && spots[i].above);
      if (grid) {
        li.style.left = "";
        li.style.top = "";
      } else {
        li.style.left = (spots[i].x / MAP_W) * 100 + "%";
        li.style.top = (spots[i].y / height) * 100 + "%";
      }
      where.set(n.id, spots[i]);
    });
    // Keep the DOM in id order so that the reading order matches the drawing.
    nodes.forEach((n) => ring.append(nodeElement(n.id)));
    drawLinks(nodes, where, grid, orbit);
  }

  function drawLinks(nodes, where, grid, o) {
    links.replaceChildren();
    if (grid) return;
    if (nodes.length >= 3) {
      const ellipse = document.createElementNS(SVG_NS, "ellipse");
      ellipse.setAttribute("class", "orbit");
      ellipse.setAttribute("cx", String(o.cx));
      ellipse.setAttribute("cy", String(o.cy));
      ellipse.setAttribute("rx", String(o.rx));
      ellipse.setAttribute("ry", String(o.ry));
      ellipse.setAttribute("vector-effect", "non-scaling-stroke");
      links.append(ellipse);
    }
    const me = nodes.find((n) => n.me);
    if (!me) return;
    const from = where.get(me.id);
    for (const n of nodes) {
      if (n.me) continue;
      const to = where.get(n.id);
      const line = document.createElementNS(SVG_NS, "line");
      line.setAttribute("class", "link" + (n.late ? " late" : "") + (n.master ? " to-master" : ""));
      line.setAttribute("x1", String(from.x));
      line.setAttribute("y1", String(from.y));
      line.setAttribute("x2", String(to.x));
      line.setAttribute("y2", String(to.y));
      line.setAttribute("vector-effect", "non-scaling-stroke");
      links.append(line);
    }
  }

  // The header, the table and the panels

  function drawHeader(doc, nodes) {
    const cluster = text(doc.cluster) || "unnamed cluster";
    document.getElementById("cluster-name").textContent = cluster;
    const me = nodes.find((n) => n.me) || { id: "" };
    const host = text(me.hostName);
    document.getElementById("self-name").textContent =
      shortId(me.id) + (host ? " on " + host : "") + (me.address ? " (" + address(me) + ")" : "");
    const master = nodes.find((n) => n.master);
    document.getElementById("fact-master").textContent = master
      ? "★ " + shortId(master.id) + (master.me ? " (me)" : "")
      : "none yet";
    const late = nodes.filter((n) => n.late).length;
    document.getElementById("fact-nodes").textContent =
      String(nodes.length) + (late ? " (" + late + " late)" : "");
    const election = electionOf(doc);
    const fact = document.getElementById("fact-election");
    fact.textContent = electionFact(election);
    fact.dataset.mode = election.mode;
    const reg = doc.registry || {};
    const registry = document.getElementById("fact-registry");
    registry.textContent = text(reg.state || "none") + (reg.api ? " · etcd " + reg.api : "");
    registry.dataset.state = text(reg.state || "none");
    registry.title = text(reg.url);
    document.title = (master && master.me ? "★ " : "") + cluster + " · twistednode";
    app.dataset.masterId = master ? master.id : "";
    app.dataset.nodeCount = String(nodes.length);
  }

  function drawTable(doc, nodes) {
    const rows = nodes.map((n) => {
      const tr = el("tr");
      tr.dataset.rowId = n.id;
      tr.dataset.master = String(n.master);
      tr.dataset.me = String(n.me);
      const name = el("th", "cell-id");
      name.scope = "row";
      name.append(el("span", "mono", n.id));
      if (n.me) name.append(" ", el("span", "badge badge-me", "me"));
      const roleCell = el("td", "cell-role", (n.master ? "★ " : "") + role(n));
      const ago = typeof n.lastSeen === "number" ? duration(n.lastSeen) + " ago" : "no hello yet";
      const seen = el("td", "cell-seen" + (n.late ? " late" : ""), n.me ? "—" : ago);
      tr.append(
        name,
        roleCell,
        el("td", "mono", address(n)),
        el("td", "", text(n.hostName)),
        weightCell(n, doc.now, electionOf(doc).mode),
        seen,
        el("td", "", n.me ? "self" : text(n.source)),
        el("td", "cell-adv", advertisement(n.advertisement))
      );
      return tr;
    });
    document.getElementById("nodes-body").replaceChildren(...rows);
  }

  function weightCell(n, now, mode) {
    const started = startedFromWeight(n.weight, now);
    const td = el("td", "num", text(n.weight));
    if (started !== null) {
      td.textContent = startedText(started, now) + " (" + text(n.weight) + ")";
      td.className = "cell-weight";
    }
    td.title = weightTitle(n, now, mode);
    return td;
  }

  function drawPairs(id, pairs, empty) {
    const dl = document.getElementById(id);
    const items = [];
    for (const [key, value] of pairs) {
      const div = el("div", "pair");
      div.append(el("dt", "", key), el("dd", "", value));
      items.push(div);
    }
    if (!items.length) items.push(el("p", "empty", empty));
    dl.replaceChildren(...items);
  }

  function electionPairs(e) {
    if (e.mode !== "lease") {
      return [
        ["mode", "node-discover"],
        ["decided by", "hellos: the highest weight among eligible nodes"],
      ];
    }
    const number = (v) => (typeof v === "number" ? String(v) : "—");
    const pairs = [
      ["mode", "lease"],
      ["master's epoch", number(e.masterEpoch)],
      ["my term", typeof e.epoch === "number" ? "epoch " + e.epoch + ", valid " + number(e.validFor) + " s more" : "not master"],
      ["TTL", typeof e.ttl === "number" ? e.ttl + " s" : "—"],
      ["master key read", e.listed === true ? "yes" : e.listed === false ? "not yet" : "—"],
      ["terms won", number(e.terms)],
      ["step-downs", number(e.stepDowns)],
    ];
    return pairs;
  }

  function drawPanels(doc) {
    const reg = doc.registry || {};
    const pairs = [
      ["state", text(reg.state || "none")],
      ["API", text(reg.api || "—")],
      ["URL", text(reg.url || "—")],
      ["cluster", text(reg.cluster || doc.cluster || "—")],
    ];
    const counters = reg.counters && typeof reg.counters === "object" ? reg.counters : {};
    for (const key of Object.keys(counters).sort()) pairs.push([key, scalar(counters[key])]);
    drawPairs("registry", pairs, "");
    drawPairs("election", electionPairs(electionOf(doc)), "");
    const dropped = doc.dropped && typeof doc.dropped === "object" ? doc.dropped : {};
    const reasons = Object.keys(dropped).sort().map((k) => [k, scalar(dropped[k])]);
    drawPairs("dropped", reasons, "none");
  }

  function draw(doc) {
    const nodes = nodesOf(doc);
    drawHeader(doc, nodes);
    drawMap(doc, nodes);
    drawTable(doc, nodes);
    drawPanels(doc);
    const updated = document.getElementById("updated");
    updated.textContent = clockTime(doc.now);
    if (typeof doc.now === "number") updated.dateTime = new Date(doc.now * 1000).toISOString();
  }

  // Connection state

  function setMode(mode) {
    state.mode = mode;
    app.dataset.connection = mode;
    const words = {
      connecting: "connecting…",
      live: "● live",
      polling: "◌ polling",
      offline: "✕ node unreachable",
    };
    connection.textContent = words[mode];
    if (mode === "offline") {
      banner.textContent =
        "Lost contact with the node at " + state.lostAt.toLocaleTimeString() +
        ". Retrying; what you see is from before then.";
      banner.hidden = false;
    } else {
      banner.hidden = true;
    }
  }

  // via: "stream" or "poll", how this document came; mode: the connection state.
  function receive(doc, via, mode) {
    if (!doc || typeof doc !== "object") return;
    state.received += 1;
    state.lastDataAt = Date.now();
    state.lostAt = null;
    draw(doc);
    app.dataset.updates = String(state.received);
    app.dataset.via = via;
    setMode(mode);
  }

  function lost() {
    if (state.lostAt === null) state.lostAt = new Date();
    setMode("offline");
  }

  function streamOpen() {
    return state.stream !== null && state.stream.readyState === EventSource.OPEN;
  }

  async function pollOnce() {
    const seen = state.received;
    try {
      const response = await fetch("status", { cache: "no-store" });
      if (!response.ok) throw new Error("HTTP " + response.status);
      const doc = await response.json();
      // A stream message that arrived meanwhile is newer than this answer.
      if (state.received === seen) receive(doc, "poll", streamOpen() ? "live" : "polling");
    } catch (err) {
      if (!streamOpen()) lost();
    }
  }

  function startPolling() {
    if (state.pollTimer !== null) return;
    pollOnce();
    state.pollTimer = setInterval(pollOnce, POLL_MS);
  }

  function stopPolling() {
    if (state.pollTimer === null) return;
    clearInterval(state.pollTimer);
    state.pollTimer = null;
  }

  function openStream() {
    if (typeof EventSource === "undefined") {
      startPolling();
      return;
    }
    const stream = new EventSource("events");
    state.stream = stream;
    stream.onmessage = (event) => {
      let doc;
      try {
        doc = JSON.parse(event.data);
      } catch (err) {
        return;
      }
      stopPolling();
      receive(doc, "stream", "live");
    };
    stream.onerror = () => {
      if (stream.readyState === EventSource.CLOSED) {
        // The browser gave up (e.g. a 503): reopen it ourselves later.
        state.stream = null;
        setTimeout(openStream, REOPEN_MS);
      }
      startPolling();
    };
  }

  setInterval(() => {
    if (state.pollTimer === null && Date.now() - state.lastDataAt > QUIET_MS) pollOnce();
  }, 1000);

  setMode("connecting");
  if (POLL_ONLY) startPolling();
  else openStream();
})();
