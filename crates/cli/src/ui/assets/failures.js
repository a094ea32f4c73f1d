// nfscope console, failures view: /ui/failures?minutes=N. The failed connection attempts of
// /api/failures (refused, reset, timed out, unreachable), newest first, each with its explanation
// and a link that opens its trace. Refreshed every 5 s; 404 means failure tracking is off.
"use strict";

(function () {
  const el = NF.el;
  const REFRESH_MS = 5000;
  const WINDOWS = [5, 15, 60, 360, 1440];
  const DEFAULT_MINUTES = 15;
  let timer = null;

  function minutes() {
    const m = Number(NF.params().get("minutes"));
    return WINDOWS.includes(m) ? m : DEFAULT_MINUTES;
  }

  function controls() {
    const box = NF.$("controls");
    NF.clear(box);
    const select = el(
      "select",
      { id: "minutes", name: "minutes", "aria-label": "Time window" },
      WINDOWS.map((m) => el("option", { value: m, selected: m === minutes() ? true : null }, m < 60 ? "last " + m + " minutes" : "last " + m / 60 + " hours"))
    );
    select.addEventListener("change", function () {
      history.pushState(null, "", "/ui/failures?minutes=" + select.value);
      refresh();
    });
    box.appendChild(el("form", { class: "search", action: "/ui/failures", method: "get" }, el("label", { for: "minutes" }, "Show "), select));
  }

  function endpointText(e) {
    if (!e) return "?";
    const where = e.port !== undefined && e.port !== null ? (String(e.ip).includes(":") ? "[" + e.ip + "]:" + e.port : e.ip + ":" + e.port) : e.ip;
    const name = e.name && e.name !== String(e.ip) ? (e.namespace && !String(e.name).includes("/") ? e.namespace + "/" + e.name : e.name) : "";
    return name ? name + " (" + where + ")" : where;
  }

  function traceParams(f) {
    return {
      src: f.client && f.client.ip,
      dst: f.dialled && f.dialled.ip,
      proto: f.proto,
      dport: f.dialled && f.dialled.port,
      in: f.in_interface,
    };
  }

  function item(f, now) {
    const decided = f.trace && f.trace.decided_by;
    return el(
      "li",
      { class: "failure reason-" + f.reason },
      el(
        "div",
        { class: "failure-head" },
        el("span", { class: "badge reason" }, f.reason),
        el("span", { class: "count" }, "×" + NF.number(f.count)),
        el("span", { class: "who" }, endpointText(f.client) + " → " + endpointText(f.dialled) + (f.server ? " → " + endpointText(f.server) : "")),
        el("span", { class: "proto" }, f.proto),
        el("time", { datetime: new Date(f.last_unix_ms).toISOString(), title: new Date(f.last_unix_ms).toLocaleString() }, NF.ago(now - f.last_unix_ms))
      ),
      el("p", { class: "explanation" }, f.explanation || "Not explained (no trace for this attempt)."),
      decided ? el("p", { class: "where" }, "Deciding rule: " + decided.table + " · " + decided.chain + (decided.rule_index ? " #" + decided.rule_index : " policy") + (decided.annotation ? " — " + decided.annotation : "")) : null,
      el("a", { class: "open-trace", href: NF.traceHref(traceParams(f)) }, "Open its trace")
    );
  }

  function show(doc) {
    const now = doc.now_unix_ms || Date.now();
    const window_ms = minutes() * 60000;
    const all = (doc.failures || []).slice().sort((a, b) => b.last_unix_ms - a.last_unix_ms);
    const recent = all.filter((f) => now - f.last_unix_ms <= window_ms);
    const view = NF.$("view");
    NF.clear(view);
    const label = minutes() < 60 ? minutes() + " minutes" : minutes() / 60 + " hours";
    if (!recent.length) {
      NF.state("empty", "No failures in the last " + label + "." + (all.length ? " (" + all.length + " older ones are kept; choose a longer window.)" : ""));
      return;
    }
    view.appendChild(el("ol", { class: "failures" }, recent.map((f) => item(f, now))));
    const stats = doc.stats || {};
    let message = recent.length + " failing connection groups in the last " + label + ", newest first";
    if (stats.evictions) message += " · " + stats.evictions + " older groups evicted (--max-failures)";
    NF.state("ready", message + " · updated " + new Date().toLocaleTimeString());
  }

  async function load() {
    const answer = await NF.getJSON("/api/failures");
    if (answer.status === 404) {
      NF.clear(NF.$("view"));
      NF.$("controls").hidden = true;
      NF.state("off", "Failure tracking is off (start serve with --flows).");
      return false;
    }
    if (!answer.json) {
      NF.state("error", "/api/failures answered " + answer.status + ": " + answer.text);
      return true;
    }
    NF.$("controls").hidden = false;
    show(answer.json);
    return true;
  }

  function refresh() {
    if (timer) clearTimeout(timer);
    timer = null;
    load()
      .catch(function (error) {
        NF.state("error", "Could not read the failures: " + (error && error.message ? error.message : error));
        return true;
      })
      .then(function (again) {
        if (again && !timer) timer = setTimeout(refresh, REFRESH_MS);
      });
  }

  controls();
  window.addEventListener("popstate", function () {
    controls();
    refresh();
  });
  refresh();
})();
