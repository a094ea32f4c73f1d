// nfscope console, trace view: /ui/trace?src=…&dst=…&proto=…&dport=…&in=… (the parameters of
// /api/trace). The form writes the URL; a URL with a packet runs the trace at once.
"use strict";

(function () {
  const el = NF.el;
  const FIELDS = [
    { key: "src", label: "Source", placeholder: "192.168.50.66", required: true },
    { key: "dst", label: "Destination", placeholder: "10.96.0.30", required: true },
    { key: "proto", label: "Protocol", options: ["tcp", "udp", "icmp", "icmpv6", "sctp"] },
    { key: "sport", label: "Source port", placeholder: "any" },
    { key: "dport", label: "Destination port", placeholder: "5432" },
    { key: "in", label: "In interface", placeholder: "eth0" },
    { key: "out", label: "Out interface", placeholder: "(routed)" },
    { key: "ct_state", label: "Conntrack state", options: ["", "new", "established", "related", "invalid"] },
    { key: "mark", label: "Mark", placeholder: "0x0" },
  ];
  let inputs = {};

  function form() {
    const box = NF.$("controls");
    NF.clear(box);
    inputs = {};
    const fields = FIELDS.map((f) => {
      const id = "f-" + f.key;
      let input;
      if (f.options) {
        input = el("select", { id: id, name: f.key }, f.options.map((o) => el("option", { value: o }, o || "(any)")));
      } else {
        input = el("input", { id: id, name: f.key, type: "text", placeholder: f.placeholder, required: f.required, autocomplete: "off", spellcheck: "false" });
      }
      inputs[f.key] = input;
      return el("div", { class: "field" }, el("label", { for: id }, f.label), input);
    });
    const f = el("form", { class: "trace-form", action: "/ui/trace", method: "get" }, el("div", { class: "fields" }, fields), el("button", { type: "submit" }, "Trace"));
    f.addEventListener("submit", function (event) {
      event.preventDefault();
      const q = new URLSearchParams();
      for (const field of FIELDS) {
        const v = inputs[field.key].value.trim();
        if (v) q.set(field.key, v);
      }
      history.pushState(null, "", "/ui/trace?" + q.toString());
      run(true);
    });
    box.appendChild(f);
  }

  function fill(p) {
    for (const field of FIELDS) {
      const v = p.get(field.key === "ct_state" && !p.has("ct_state") ? "ct-state" : field.key) || "";
      const input = inputs[field.key];
      if (field.options && v && !Array.from(input.options).some((o) => o.value === v)) {
        input.appendChild(el("option", { value: v }, v));
      }
      input.value = field.options && !v ? field.options[0] : v;
    }
  }

  function sameRule(step, rule) {
    return rule && step.table === rule.table && step.chain === rule.chain && step.rule_index === rule.rule_index && step.rule === rule.rule;
  }

  function ruleCard(title, rule, explanation, cls) {
    if (!rule) return el("div", { class: "card " + cls }, el("h3", null, title), el("p", { class: "muted" }, "No rule decided (no filter table crossed)."));
    return el(
      "div",
      { class: "card " + cls },
      el("h3", null, title),
      el("p", { class: "where" }, [rule.family, rule.backend, "table " + rule.table, "chain " + rule.chain, rule.rule_index ? "rule " + rule.rule_index : "policy"].join(" · ")),
      el("pre", { class: "ruletext" }, rule.rule),
      rule.annotation ? el("p", { class: "meaning" }, rule.annotation) : null,
      explanation ? el("p", { class: "explanation" }, explanation) : null
    );
  }

  function natLine(nat) {
    const parts = [];
    if (nat && nat.dnat) parts.push(el("span", { class: "badge nat" }, "DNAT → " + nat.dnat));
    if (nat && nat.snat) parts.push(el("span", { class: "badge nat" }, "SNAT → " + nat.snat));
    return parts.length ? el("p", { class: "nat" }, parts) : null;
  }

  // The path grouped by hook, in order: one block per hook, one row per step.
  function pathView(path, decided) {
    const blocks = [];
    let current = null;
    for (const step of path) {
      if (!current || current.hook !== step.hook) {
        current = { hook: step.hook, steps: [] };
        blocks.push(current);
      }
      current.steps.push(step);
    }
    return el(
      "ol",
      { class: "hooks" },
      blocks.map((b) =>
        el(
          "li",
          { class: "hook" },
          el("h3", null, b.hook),
          el(
            "ol",
            { class: "steps" },
            b.steps.map((s) => {
              const decides = sameRule(s, decided);
              const classes = ["step"];
              if (decides) classes.push("decided");
              if (!s.table) classes.push("routing");
              if (/^(DNAT|SNAT|MASQUERADE|masquerade|dnat|snat|redirect)/i.test(s.effect)) classes.push("natstep");
              if (s.condition) classes.push("may");
              return el(
                "li",
                { class: classes.join(" ") },
                s.table ? el("span", { class: "where" }, s.table + " · " + s.chain + (s.rule_index ? " #" + s.rule_index : "")) : null,
                el("span", { class: "effect" }, s.effect),
                s.condition ? el("span", { class: "badge may", title: "this step depends on an assumption or a random choice" }, "MAY: " + s.condition) : null,
                decides ? el("span", { class: "badge decided" }, "decides") : null,
                s.rule ? el("code", { class: "ruletext" }, s.rule) : null,
                s.annotation ? el("span", { class: "meaning" }, s.annotation) : null
              );
            })
          )
        )
      )
    );
  }

  function verdictBanner(r) {
    return el(
      "div",
      { class: "verdict verdict-" + String(r.verdict).toLowerCase() },
      el("span", { class: "verdict-word" }, r.verdict),
      el("span", { class: "badge " + (r.certainty === "MAY" ? "may" : "must") }, r.certainty),
      r.explanation ? el("p", { class: "explanation" }, r.explanation) : null
    );
  }

  function show(r) {
    const view = NF.$("view");
    NF.clear(view);
    view.appendChild(verdictBanner(r));
    if (r.unread && r.unread.length) {
      view.appendChild(
        el("div", { class: "warning", role: "alert" }, el("strong", null, "Not everything could be read, so the verdict is not certain: "), r.unread.map((u) => el("div", null, JSON.stringify(u))))
      );
    }
    view.appendChild(ruleCard("Deciding rule", r.decided_by, r.explanation, "decided-by"));
    const nat = natLine(r.nat);
    if (nat) view.appendChild(nat);
    if (r.notes && r.notes.length) view.appendChild(el("ul", { class: "notes" }, r.notes.map((n) => el("li", null, n))));
    if (r.branches && r.branches.length) {
      view.appendChild(el("h2", null, r.branches.length + " branches" + (r.branches_capped ? " (capped: more were possible)" : "")));
      view.appendChild(
        el(
          "ol",
          { class: "branches" },
          r.branches.map((b, i) =>
            el(
              "li",
              { class: "branch verdict-" + String(b.verdict).toLowerCase() },
              el(
                "details",
                { open: i === 0 ? true : null },
                el(
                  "summary",
                  null,
                  el("span", { class: "prob" }, (b.probability * 100).toFixed(1) + " %"),
                  " ",
                  el("span", { class: "verdict-word" }, b.verdict),
                  " ",
                  el("span", { class: "badge " + (b.certainty === "MAY" ? "may" : "must") }, b.certainty),
                  " ",
                  b.nat && b.nat.dnat ? "DNAT → " + b.nat.dnat : "",
                  b.decided_by ? " · " + b.decided_by.chain + (b.decided_by.rule_index ? " #" + b.decided_by.rule_index : " policy") : ""
                ),
                b.assumptions && b.assumptions.length ? el("ul", { class: "assumptions" }, b.assumptions.map((a) => el("li", null, "assumes " + a))) : null,
                pathView(b.path || [], b.decided_by)
              )
            )
          )
        )
      );
      view.appendChild(el("h2", null, "Main branch, hook by hook"));
    } else {
      view.appendChild(el("h2", null, "Path, hook by hook"));
    }
    view.appendChild(pathView(r.path || [], r.decided_by));
  }

  async function run(navigated) {
    const p = NF.params();
    fill(p);
    const view = NF.$("view");
    if (!p.get("src") && !p.get("dst")) {
      NF.clear(view);
      document.title = "Trace · nfscope";
      NF.state("empty", "Enter a packet and press Trace. The URL of the result can be shared.");
      return;
    }
    document.title = (p.get("src") || "") + " → " + (p.get("dst") || "") + " · Trace · nfscope";
    NF.state("loading", "Tracing…");
    const answer = await NF.getJSON("/api/trace?" + p.toString());
    if (!answer.json) {
      NF.clear(view);
      NF.state("error", "The trace failed (" + answer.status + "): " + answer.text);
      return;
    }
    show(answer.json);
    const r = answer.json;
    NF.state("ready", r.verdict + " (" + r.certainty + ") · " + [p.get("src"), "→", p.get("dst"), p.get("proto") || "", p.get("dport") ? "port " + p.get("dport") : "", p.get("in") ? "in " + p.get("in") : ""].join(" "));
    if (navigated) NF.$("main").focus();
  }

  function failed(error) {
    NF.state("error", "Could not trace: " + (error && error.message ? error.message : error));
  }

  form();
  window.addEventListener("popstate", function () {
    run(false).catch(failed);
  });
  run(false).catch(failed);
})();
