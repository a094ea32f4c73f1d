// nfscope console, graph view: /ui/graph. The workload graph of /api/graph/data (the Node Graph
// API of `serve --flows`) drawn as SVG: sources on the left, what they connect to on the right,
// edges labelled with their counts; an edge with failures (detail__failures or arc__failed > 0)
// is red. A table below
// lists the same edges for keyboards, screen readers and phones. Redrawn every 10 s.
"use strict";

(function () {
  const el = NF.el;
  const SVG = "http://www.w3.org/2000/svg";
  const REFRESH_MS = 10000;
  const COL_W = 420;
  const ROW_H = 110;
  const NODE_R = 22;
  let timer = null;

  function svg(tag, attrs) {
    const node = document.createElementNS(SVG, tag);
    for (const key of Object.keys(attrs || {})) node.setAttribute(key, String(attrs[key]));
    for (let i = 2; i < arguments.length; i++) {
      const c = arguments[i];
      if (c === null || c === undefined) continue;
      node.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    }
    return node;
  }

  // Failed attempts on an edge: `detail__failures` (the failure tracker's count), else
  // `arc__failed`; 0 when the server does not track failures.
  function failedOf(edge) {
    const raw = edge.detail__failures !== undefined ? edge.detail__failures : edge.arc__failed;
    const n = Number(raw || 0);
    return Number.isFinite(n) ? n : 0;
  }

  // Columns by distance from the nodes nothing connects to (clients); cycles and unreachable
  // nodes go to the column after their first caller, or to 1.
  function layout(nodes, edges) {
    const incoming = new Map(nodes.map((n) => [n.id, 0]));
    const out = new Map(nodes.map((n) => [n.id, []]));
    for (const e of edges) {
      if (!incoming.has(e.source) || !incoming.has(e.target) || e.source === e.target) continue;
      incoming.set(e.target, incoming.get(e.target) + 1);
      out.get(e.source).push(e.target);
    }
    const col = new Map();
    const queue = [];
    for (const n of nodes) {
      if (incoming.get(n.id) === 0) {
        col.set(n.id, 0);
        queue.push(n.id);
      }
    }
    while (queue.length) {
      const id = queue.shift();
      for (const t of out.get(id)) {
        if (!col.has(t)) {
          col.set(t, Math.min(col.get(id) + 1, 4));
          queue.push(t);
        }
      }
    }
    for (const n of nodes) if (!col.has(n.id)) col.set(n.id, nodes.length > 1 ? 1 : 0);
    const rows = new Map();
    const pos = new Map();
    for (const n of nodes) {
      const c = col.get(n.id);
      const r = rows.get(c) || 0;
      rows.set(c, r + 1);
      pos.set(n.id, { x: 110 + c * COL_W, y: 60 + r * ROW_H, col: c });
    }
    const cols = Math.max(1, ...Array.from(col.values()).map((c) => c + 1));
    const maxRows = Math.max(1, ...Array.from(rows.values()));
    return { pos: pos, width: 110 + (cols - 1) * COL_W + 260, height: 40 + maxRows * ROW_H };
  }

  function draw(data) {
    const nodes = data.nodes || [];
    const edges = data.edges || [];
    const view = NF.$("view");
    NF.clear(view);
    if (!nodes.length) {
      NF.state("empty", "No connections seen yet. The graph fills as the flow monitor sees TCP connections.");
      return;
    }
    const L = layout(nodes, edges);
    const root = svg("svg", {
      class: "graph",
      viewBox: "0 0 " + L.width + " " + L.height,
      role: "img",
      "aria-labelledby": "graph-title",
      preserveAspectRatio: "xMidYMin meet",
    });
    root.appendChild(svg("title", { id: "graph-title" }, "Workload graph: " + nodes.length + " nodes, " + edges.length + " edges"));
    root.appendChild(
      svg(
        "defs",
        {},
        svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" }, svg("path", { d: "M 0 0 L 10 5 L 0 10 z", class: "arrowhead" })),
        svg("marker", { id: "arrow-failed", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" }, svg("path", { d: "M 0 0 L 10 5 L 0 10 z", class: "arrowhead failed" }))
      )
    );
    const edgeLayer = svg("g", { class: "edges" });
    const labelLayer = svg("g", { class: "labels" });
    const placed = [];
    for (const e of edges) {
      const a = L.pos.get(e.source);
      const b = L.pos.get(e.target);
      if (!a || !b) continue;
      const failed = failedOf(e);
      // Between columns: a gentle curve from circle to circle. Within a column: an arc out to
      // the right, wider for rows further apart and for the upward direction, so a pair's two
      // directions and the nodes between them stay clear.
      let sx, sy, tx, ty, mx, my;
      if (a.col === b.col) {
        const rows = Math.abs(b.y - a.y) / ROW_H;
        const out = NODE_R + 45 + 30 * rows + (a.y > b.y ? 70 : 0);
        sx = a.x + NODE_R * 0.8;
        sy = a.y + (b.y > a.y ? NODE_R * 0.6 : -NODE_R * 0.6);
        tx = b.x + NODE_R * 0.8 + 2;
        ty = b.y + (b.y > a.y ? -NODE_R * 0.6 : NODE_R * 0.6);
        mx = a.x + out * 2;
        my = (a.y + b.y) / 2;
      } else {
        const dx = b.x - a.x;
        const dy = b.y - a.y;
        const len = Math.max(1, Math.hypot(dx, dy));
        sx = a.x + (dx / len) * NODE_R;
        sy = a.y + (dy / len) * NODE_R;
        tx = b.x - (dx / len) * (NODE_R + 2);
        ty = b.y - (dy / len) * (NODE_R + 2);
        mx = (sx + tx) / 2 + (-dy / len) * 18;
        my = (sy + ty) / 2 + (dx / len) * 18;
      }
      const cls = "edge" + (failed > 0 ? " failed" : "");
      const path = svg("path", {
        class: cls,
        d: "M " + sx + " " + sy + " Q " + mx + " " + my + " " + tx + " " + ty,
        "marker-end": failed > 0 ? "url(#arrow-failed)" : "url(#arrow)",
        "data-edge": e.id,
        "data-failed": failed,
      });
      path.appendChild(svg("title", {}, e.source + " → " + e.target + ": " + (e.mainStat || "") + ", " + (e.secondaryStat || "") + (failed > 0 ? ", " + failed + " failed" : "") + (e.detail__failure ? ": " + e.detail__failure : "")));
      edgeLayer.appendChild(path);
      // The label sits on the curve, at the first point (middle first) where it overlaps no
      // label placed before it.
      const text = (e.mainStat || "") + (failed > 0 ? " · " + failed + " failed" : "");
      const w = text.length * 8 + 8;
      let lx = 0;
      let ly = 0;
      for (const t of [0.5, 0.38, 0.62, 0.28, 0.72, 0.2, 0.8]) {
        lx = (1 - t) * (1 - t) * sx + 2 * (1 - t) * t * mx + t * t * tx;
        ly = (1 - t) * (1 - t) * sy + 2 * (1 - t) * t * my + t * t * ty;
        const box = { x: lx - w / 2, y: ly - 9, w: w, h: 18 };
        if (!placed.some((p) => box.x < p.x + p.w && p.x < box.x + box.w && box.y < p.y + p.h && p.y < box.y + box.h)) {
          break;
        }
      }
      placed.push({ x: lx - w / 2, y: ly - 9, w: w, h: 18 });
      labelLayer.appendChild(svg("text", { class: "edge-label" + (failed > 0 ? " failed" : ""), x: lx, y: ly + 4, "text-anchor": "middle" }, text));
    }
    const nodeLayer = svg("g", { class: "nodes" });
    for (const n of nodes) {
      const p = L.pos.get(n.id);
      const reset = Number(n.arc__reset || 0);
      const timeout = Number(n.arc__timeout || 0);
      const bad = reset + timeout + Number(n.arc__failed || 0);
      const g = svg("g", { class: "node" + (bad > 0.5 ? " unhealthy" : ""), "data-node": n.id, transform: "translate(" + p.x + " " + p.y + ")" });
      g.appendChild(svg("circle", { r: NODE_R }));
      g.appendChild(svg("text", { class: "node-name", y: NODE_R + 16, "text-anchor": "middle" }, n.id));
      g.appendChild(svg("text", { class: "node-stat", y: NODE_R + 31, "text-anchor": "middle" }, [n.mainStat, n.secondaryStat].filter((x) => x).join(" · ")));
      g.appendChild(svg("title", {}, n.id + (n.subTitle ? " (" + n.subTitle + ")" : "") + ": " + (n.mainStat || "")));
      nodeLayer.appendChild(g);
    }
    root.appendChild(edgeLayer);
    root.appendChild(nodeLayer);
    root.appendChild(labelLayer);
    view.appendChild(el("div", { class: "graph-box" }, root));
    view.appendChild(
      el(
        "div",
        { class: "scroll" },
        el(
          "table",
          { class: "edges-table" },
          el("caption", null, "Connections between workloads"),
          el("thead", null, el("tr", null, ["from", "to", "connections", "bytes", "resets", "failed", "latest failure"].map((h) => el("th", { scope: "col" }, h)))),
          el(
            "tbody",
            null,
            edges.map((e) =>
              el(
                "tr",
                { class: failedOf(e) > 0 ? "failed" : null },
                el("td", null, e.source),
                el("td", null, e.target),
                el("td", { class: "num" }, e.mainStat || ""),
                el("td", { class: "num" }, e.secondaryStat || ""),
                el("td", { class: "num" }, e.detail__resets === undefined ? "–" : String(e.detail__resets)),
                el("td", { class: "num" }, e.detail__failures === undefined && e.arc__failed === undefined ? "–" : String(failedOf(e))),
                el("td", null, e.detail__failure || "")
              )
            )
          )
        )
      )
    );
    const failedEdges = edges.filter((e) => failedOf(e) > 0).length;
    NF.state("ready", nodes.length + " nodes, " + edges.length + " edges" + (failedEdges ? ", " + failedEdges + " with failures (red)" : "") + " · updated " + new Date().toLocaleTimeString());
  }

  async function load() {
    const answer = await NF.getJSON("/api/graph/data");
    if (answer.status === 404) {
      NF.clear(NF.$("view"));
      NF.state("off", "The flow monitor is off (start serve with --flows).");
      return;
    }
    if (!answer.json) {
      NF.state("error", "/api/graph/data answered " + answer.status + ": " + answer.text);
      return;
    }
    draw(answer.json);
  }

  function tick() {
    load()
      .catch(function (error) {
        NF.state("error", "Could not read the graph: " + (error && error.message ? error.message : error));
      })
      .finally(function () {
        if (document.body.getAttribute("data-state") !== "off") timer = setTimeout(tick, REFRESH_MS);
      });
  }
  document.addEventListener("visibilitychange", function () {
    if (document.hidden && timer) {
      clearTimeout(timer);
      timer = null;
    } else if (!document.hidden && !timer) {
      tick();
    }
  });
  tick();
})();
