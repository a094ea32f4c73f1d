// nfscope console, rules view: /ui/rules?q=TEXT, or one chain: /ui/rules?rs=…&table=…&chain=….
// Reads /api/rules once (and again on "Refresh counters", which also gives rates); search and
// chain links change only the URL and redraw from the same document.
"use strict";

(function () {
  const MAX_CHAINS = 200; // chains drawn at most; the status line says when more matched
  const MAX_RULES = 500; // rules drawn per chain at most
  const el = NF.el;
  let doc = null; // the /api/rules document
  let index = null; // chains by key, callers by key
  let previous = null; // {at, packets: Map(rule key → packets)} of the read before, for rates
  let rates = new Map();
  let readAt = 0;
  let findings = new Map(); // chain key (+ "\u0000#" + rule index) → lint findings from /api/lint
  let lintNote = null; // why findings are not shown, when /api/lint did not answer

  // The ruleset key a finding belongs to: native nftables findings carry their nft family.
  function findingRs(f) {
    if (!f.nftables) return f.family + "-" + f.backend;
    const fam = f.nftables === "ip" ? "ipv4" : f.nftables === "ip6" ? "ipv6" : f.nftables;
    return fam + "-nftables";
  }
  function findingKey(rk, table, chain, ruleIndex) {
    const key = chainKey(rk, table, chain);
    return ruleIndex === null || ruleIndex === undefined ? key : key + "\u0000#" + ruleIndex;
  }
  function indexFindings(list) {
    const map = new Map();
    for (const f of list || []) {
      if (!f.chain || !f.table) continue;
      const key = findingKey(findingRs(f), f.table, f.chain, f.rule_index);
      if (!map.has(key)) map.set(key, []);
      map.get(key).push(f);
    }
    return map;
  }
  function findingCount() {
    if (lintNote) return lintNote;
    let n = 0;
    for (const list of findings.values()) n += list.length;
    return n + " lint finding" + (n === 1 ? "" : "s");
  }
  function findingList(key) {
    const list = findings.get(key);
    if (!list) return null;
    return el(
      "ul",
      { class: "findings" },
      list.map((f) => el("li", { class: "finding sev-" + f.severity }, badge(f.severity, "sev sev-" + f.severity), " ", el("code", null, f.id), " ", f.message))
    );
  }

  function rsKey(rs) {
    return rs.family + "-" + rs.backend;
  }
  function chainKey(rs, table, chain) {
    return rs + "\u0000" + table + "\u0000" + chain;
  }
  function chainHref(rs, table, chain) {
    const q = new URLSearchParams();
    q.set("rs", rs);
    q.set("table", table);
    q.set("chain", chain);
    return "/ui/rules?" + q.toString();
  }
  function ruleKey(rs, table, chain, rule) {
    return chainKey(rs, table, chain) + "\u0000" + (rule.rule_id || rule.index);
  }

  // Chain names a rule jumps or goes to: `-j X` / `-g X` (iptables), `jump X` / `goto X` (nft,
  // also inside verdict maps); only names that are chains of the same table count.
  function targetsOf(rule, chains) {
    const found = [];
    const text = rule.rule || "";
    const patterns = [/(?:^|\s)-([jg])\s+(\S+)/g, /\b(jump|goto)\s+"?([^\s,;}"]+)"?/g];
    for (const pattern of patterns) {
      let m;
      while ((m = pattern.exec(text)) !== null) {
        const kind = m[1] === "g" || m[1] === "goto" ? "goto" : "jump";
        const name = m[2];
        if (chains.has(name) && !found.some((f) => f.name === name)) found.push({ kind: kind, name: name });
      }
    }
    if (rule.target && chains.has(rule.target) && !found.some((f) => f.name === rule.target)) {
      found.push({ kind: "jump", name: rule.target });
    }
    return found;
  }

  function buildIndex(d) {
    const chains = new Map();
    const callers = new Map();
    for (const rs of d.rulesets || []) {
      const rk = rsKey(rs);
      for (const table of rs.tables || []) {
        const names = new Set((table.chains || []).map((c) => c.name));
        for (const chain of table.chains || []) {
          const key = chainKey(rk, table.name, chain.name);
          chains.set(key, { rs: rs, rk: rk, table: table, chain: chain });
          for (const rule of chain.rules || []) {
            rule.__targets = targetsOf(rule, names);
            for (const t of rule.__targets) {
              const tk = chainKey(rk, table.name, t.name);
              if (!callers.has(tk)) callers.set(tk, []);
              callers.get(tk).push({ chain: chain.name, index: rule.index, kind: t.kind });
            }
          }
        }
      }
    }
    return { chains: chains, callers: callers };
  }

  // [path, value] pairs of a meaning object: ["service.namespace", "demo"], ["pod", "db-0"], …
  function flatten(value, path, out) {
    if (value === null || value === undefined) return out;
    if (typeof value === "object") {
      for (const k of Object.keys(value)) flatten(value[k], path ? path + "." + k : k, out);
    } else {
      out.push([path, String(value).toLowerCase()]);
    }
    return out;
  }

  const KEYS = {
    owner: "owner",
    ns: "namespace",
    namespace: "namespace",
    service: "service",
    svc: "service",
    pod: "pod",
    policy: "policy",
    chain: "chain",
    table: "table",
  };

  function parseQuery(q) {
    const terms = [];
    for (const word of q.trim().split(/\s+/)) {
      if (!word) continue;
      const colon = word.indexOf(":");
      const key = colon > 0 ? word.slice(0, colon).toLowerCase() : "";
      if (KEYS[key] && colon < word.length - 1) {
        terms.push({ key: KEYS[key], value: word.slice(colon + 1).toLowerCase() });
      } else {
        terms.push({ key: "", value: word.toLowerCase() });
      }
    }
    return terms;
  }

  // Does one thing (a chain or a rule, with its chain as context) satisfy a term?
  function matchTerm(term, item) {
    const v = term.value;
    switch (term.key) {
      case "owner":
        return (item.owner || "").toLowerCase().includes(v);
      case "chain":
        return item.chain.toLowerCase().includes(v);
      case "table":
        return item.table.toLowerCase().includes(v);
      case "namespace":
        return item.meaning.some((p) => /(^|\.)namespace$/.test(p[0]) && p[1].includes(v)) ||
          item.meaning.some((p) => /(^|\.)(policy|profile)$/.test(p[0]) && p[1].startsWith(v + "."));
      case "service":
        return item.meaning.some((p) => /^service(\.|$)/.test(p[0]) && p[1].includes(v)) ||
          item.summary.includes("service " + v) || item.summary.includes("/" + v + ":");
      case "pod":
        return item.meaning.some((p) => /(^|\.)pod$/.test(p[0]) && p[1].includes(v)) ||
          item.summary.includes("pod " + v) || item.summary.includes("/" + v);
      case "policy":
        return item.meaning.some((p) => /(^|\.)policy$/.test(p[0]) && p[1].includes(v));
      default:
        return item.text.includes(v);
    }
  }

  function chainItem(entry) {
    const c = entry.chain;
    const meaning = flatten(c.meaning, "", []);
    return {
      owner: c.owner,
      chain: c.name,
      table: entry.table.name,
      meaning: meaning,
      summary: (c.summary || "").toLowerCase(),
      text: [c.name, entry.table.name, c.owner, c.summary, c.policy, c.hook, c.type, meaning.map((p) => p[1]).join(" ")]
        .filter((x) => x)
        .join(" ")
        .toLowerCase(),
    };
  }
  function ruleItem(entry, rule, chainCtx) {
    const meaning = flatten(rule.meaning, "", []);
    return {
      owner: rule.owner || chainCtx.owner,
      chain: chainCtx.chain,
      table: chainCtx.table,
      meaning: meaning.concat(chainCtx.meaning),
      summary: ((rule.summary || "") + " " + chainCtx.summary).toLowerCase(),
      text: [rule.rule, rule.comment, rule.owner, rule.summary, rule.target, meaning.map((p) => p[1]).join(" "), chainCtx.text]
        .filter((x) => x)
        .join(" ")
        .toLowerCase(),
    };
  }

  // What the query selects: [{entry, rules: [rule…] | null (all), chainMatched}].
  function select(q) {
    const terms = parseQuery(q);
    const out = [];
    for (const entry of index.chains.values()) {
      if (terms.length === 0) {
        out.push({ entry: entry, rules: null });
        continue;
      }
      const ci = chainItem(entry);
      if (terms.every((t) => matchTerm(t, ci))) {
        out.push({ entry: entry, rules: null, chainMatched: true });
        continue;
      }
      const rules = (entry.chain.rules || []).filter((r) => {
        const ri = ruleItem(entry, r, ci);
        return terms.every((t) => matchTerm(t, ri));
      });
      if (rules.length) out.push({ entry: entry, rules: rules });
    }
    return out;
  }

  function badge(text, cls) {
    return el("span", { class: "badge " + (cls || "") }, text);
  }

  function meaningLine(thing) {
    const parts = [];
    if (thing.owner && thing.owner !== "other") parts.push(badge(thing.owner, "owner"));
    if (thing.summary) parts.push(el("span", { class: "meaning" }, thing.summary));
    return parts;
  }

  function rateText(key) {
    if (!rates.has(key)) return "–";
    const r = rates.get(key);
    return (r < 10 ? r.toFixed(2) : r.toFixed(0)) + "/s";
  }

  function ruleRow(entry, rule, highlight) {
    const key = ruleKey(entry.rk, entry.table.name, entry.chain.name, rule);
    const targets = (rule.__targets || []).map((t) =>
      el("a", { href: chainHref(entry.rk, entry.table.name, t.name), "data-nav": true, class: "jump" }, t.kind + " " + t.name)
    );
    return el(
      "tr",
      { class: highlight ? "rule hit" : "rule", id: "r-" + entry.chain.name + "-" + rule.index },
      el("td", { class: "num" }, String(rule.index)),
      el("td", { class: "num" }, NF.number(rule.packets)),
      el("td", { class: "num" }, NF.bytes(rule.bytes)),
      el("td", { class: "num rate" }, rateText(key)),
      el("td", { class: "ruletext" }, el("code", null, rule.rule), targets.length ? el("div", { class: "targets" }, targets) : null),
      el("td", { class: "ann" }, meaningLine(rule), findingList(findingKey(entry.rk, entry.table.name, entry.chain.name, rule.index)))
    );
  }

  function chainSection(sel, full) {
    const e = sel.entry;
    const c = e.chain;
    const facts = [];
    if (c.type || c.hook) facts.push(badge([c.type, c.hook, c.priority !== null && c.priority !== undefined ? "priority " + c.priority : null].filter((x) => x).join(" "), "hook"));
    if (c.policy) facts.push(badge("policy " + c.policy + " · " + NF.number(c.packets) + " pkts", "policy policy-" + String(c.policy).toLowerCase()));
    const title = full
      ? el("h2", { class: "chain-name" }, c.name)
      : el("h3", { class: "chain-name" }, el("a", { href: chainHref(e.rk, e.table.name, c.name), "data-nav": true }, c.name));
    const rules = c.rules || [];
    const shown = sel.rules || rules;
    const hits = new Set(sel.rules && !sel.chainMatched ? sel.rules : []);
    const body = el("tbody", null, shown.slice(0, MAX_RULES).map((r) => ruleRow(e, r, hits.has(r))));
    const section = el(
      "section",
      { class: "chain", "data-chain": c.name },
      el("div", { class: "chain-head" }, title, el("span", { class: "where" }, e.rk + " · " + e.table.name), facts, meaningLine(c))
    );
    const chainFindings = findingList(findingKey(e.rk, e.table.name, c.name, null));
    if (chainFindings) section.appendChild(chainFindings);
    if (rules.length === 0) {
      section.appendChild(el("p", { class: "muted" }, "no rules"));
    } else {
      section.appendChild(
        el(
          "div",
          { class: "scroll" },
          el(
            "table",
            { class: "rules" },
            el("thead", null, el("tr", null, ["#", "packets", "bytes", "rate", "rule", "meaning · findings"].map((h) => el("th", { scope: "col" }, h)))),
            body
          )
        )
      );
    }
    const more = [];
    if (shown.length > MAX_RULES) more.push(shown.length - MAX_RULES + " more rules not drawn. ");
    if (sel.rules && !sel.chainMatched && sel.rules.length < rules.length) {
      more.push(sel.rules.length + " of " + rules.length + " rules match. ");
      more.push(el("a", { href: chainHref(e.rk, e.table.name, c.name), "data-nav": true }, "Show the whole chain"));
    }
    if (more.length) section.appendChild(el("p", { class: "muted" }, more));
    if (full) {
      const callers = index.callers.get(chainKey(e.rk, e.table.name, c.name)) || [];
      section.appendChild(el("h3", null, "Jumped to from"));
      section.appendChild(
        callers.length
          ? el(
              "ul",
              { class: "callers" },
              callers.map((k) =>
                el("li", null, el("a", { href: chainHref(e.rk, e.table.name, k.chain), "data-nav": true }, k.chain + " rule " + k.index), " (" + k.kind + ")")
              )
            )
          : el("p", { class: "muted" }, c.hook || c.policy ? "no rule: a base chain, entered from its hook" : "no rule jumps here")
      );
    }
    return section;
  }

  function controls(q) {
    const box = NF.$("controls");
    NF.clear(box);
    const input = el("input", {
      type: "search",
      id: "q",
      name: "q",
      value: q,
      placeholder: "text, owner:kube-router, ns:demo, service:web, pod:db-0, policy:NAME",
      "aria-label": "Search the rules",
    });
    const form = el(
      "form",
      { class: "search", role: "search", action: "/ui/rules", method: "get" },
      input,
      el("button", { type: "submit" }, "Search"),
      el("button", { type: "button", id: "refresh", title: "Read the rules again; rates are the change since the last read" }, "Refresh counters")
    );
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      const value = input.value.trim();
      history.pushState(null, "", value ? "/ui/rules?q=" + encodeURIComponent(value) : "/ui/rules");
      render(true);
    });
    form.querySelector("#refresh").addEventListener("click", function () {
      load().catch(failed);
    });
    box.appendChild(form);
  }

  function render(navigated) {
    if (!index) return;
    const p = NF.params();
    const view = NF.$("view");
    NF.clear(view);
    const q = p.get("q") || "";
    const input = NF.$("q");
    if (input && input.value !== q) input.value = q;
    unreadNote(view);
    if (p.get("chain")) {
      const entry = index.chains.get(chainKey(p.get("rs") || "", p.get("table") || "", p.get("chain")));
      if (!entry) {
        NF.state("error", "No chain " + p.get("chain") + " in table " + p.get("table") + " of " + p.get("rs") + ".");
        return;
      }
      view.appendChild(el("p", null, el("a", { href: q ? "/ui/rules?q=" + encodeURIComponent(q) : "/ui/rules", "data-nav": true }, "← all chains")));
      view.appendChild(chainSection({ entry: entry, rules: null }, true));
      document.title = entry.chain.name + " · nfscope";
      NF.state("ready", entry.rk + " · table " + entry.table.name + " · chain " + entry.chain.name + " · read " + new Date(readAt).toLocaleTimeString());
      if (navigated) NF.$("main").focus();
      return;
    }
    document.title = (q ? q + " · " : "") + "Rules · nfscope";
    const selected = select(q);
    const ruleCount = selected.reduce((n, s) => n + (s.rules ? s.rules.length : (s.entry.chain.rules || []).length), 0);
    let lastGroup = "";
    for (const sel of selected.slice(0, MAX_CHAINS)) {
      const group = sel.entry.rk + " · table " + sel.entry.table.name;
      if (group !== lastGroup) {
        view.appendChild(el("h2", { class: "group" }, group));
        lastGroup = group;
      }
      view.appendChild(chainSection(sel, false));
    }
    const total = selected.length;
    let message = q
      ? total + " chains with " + NF.number(ruleCount) + " rules match “" + q + "”"
      : total + " chains, " + NF.number(ruleCount) + " rules in " + (doc.rulesets || []).length + " rulesets";
    if (total > MAX_CHAINS) message += " — showing the first " + MAX_CHAINS + "; refine the search";
    message += " · " + findingCount() + " · read " + new Date(readAt).toLocaleTimeString();
    if (total === 0) {
      NF.state("empty", q ? "Nothing matches “" + q + "”." : "This node has no rules.");
    } else {
      NF.state("ready", message);
    }
    if (navigated) NF.$("main").focus();
  }

  function unreadNote(view) {
    const unread = (doc.sources || []).filter((s) => s.error);
    if (!unread.length) return;
    view.appendChild(
      el(
        "div",
        { class: "warning", role: "alert" },
        el("strong", null, "Not everything could be read: "),
        unread.map((s) => el("div", null, [s.kind, s.family, s.backend].filter((x) => x).join(" ") + ": " + s.error))
      )
    );
  }

  async function load() {
    NF.state("loading", "Reading the rules…");
    const [answer, lint] = await Promise.all([NF.getJSON("/api/rules"), NF.getJSON("/api/lint")]);
    if (lint.json && Array.isArray(lint.json.findings)) {
      findings = indexFindings(lint.json.findings);
      lintNote = null;
    } else {
      findings = new Map();
      lintNote = "Lint findings are not shown: /api/lint answered " + lint.status;
    }
    if (!answer.json) {
      NF.state("error", "/api/rules answered " + answer.status + ": " + answer.text);
      return;
    }
    const now = Date.now();
    doc = answer.json;
    index = buildIndex(doc);
    const packets = new Map();
    for (const e of index.chains.values()) {
      for (const r of e.chain.rules || []) {
        if (typeof r.packets === "number") packets.set(ruleKey(e.rk, e.table.name, e.chain.name, r), r.packets);
      }
    }
    rates = new Map();
    if (previous && now > previous.at) {
      const dt = (now - previous.at) / 1000;
      for (const [k, v] of packets) {
        if (previous.packets.has(k) && v >= previous.packets.get(k)) rates.set(k, (v - previous.packets.get(k)) / dt);
      }
    }
    previous = { at: now, packets: packets };
    readAt = now;
    render(false);
  }

  function failed(error) {
    NF.state("error", "Could not read the rules: " + (error && error.message ? error.message : error));
  }

  controls(NF.params().get("q") || "");
  NF.routeLinks(NF.$("main"), render);
  load().catch(failed);
})();
