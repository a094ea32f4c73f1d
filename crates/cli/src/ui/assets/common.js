// nfscope console: helpers shared by every view. Loaded first on every page.
// Everything from the server is put in the page with textContent / attributes, never parsed as HTML.
"use strict";

// Script errors are recorded where a test (or a person with the devtools) can read them:
// window.__nfscopeErrors and the data-errors attribute of <html>.
window.__nfscopeErrors = [];
function recordError(message) {
  window.__nfscopeErrors.push(String(message));
  document.documentElement.setAttribute("data-errors", String(window.__nfscopeErrors.length));
}
window.addEventListener("error", function (event) {
  recordError((event.message || "error") + " at " + (event.filename || "?") + ":" + (event.lineno || 0));
});
window.addEventListener("unhandledrejection", function (event) {
  recordError("unhandled rejection: " + (event.reason && event.reason.message ? event.reason.message : event.reason));
});
document.addEventListener("securitypolicyviolation", function (event) {
  recordError("CSP violation: " + event.violatedDirective + " " + event.blockedURI);
});

const NF = {
  // el("div", {class: "x", href: "…"}, child, "text", …): children are nodes or text.
  el: function (tag, attrs) {
    const node = document.createElement(tag);
    if (attrs) {
      for (const key of Object.keys(attrs)) {
        const value = attrs[key];
        if (value === null || value === undefined || value === false) continue;
        node.setAttribute(key, value === true ? "" : String(value));
      }
    }
    for (let i = 2; i < arguments.length; i++) NF.append(node, arguments[i]);
    return node;
  },
  append: function (node, child) {
    if (child === null || child === undefined || child === false) return;
    if (Array.isArray(child)) {
      for (const c of child) NF.append(node, c);
    } else if (child instanceof Node) {
      node.appendChild(child);
    } else {
      node.appendChild(document.createTextNode(String(child)));
    }
  },
  clear: function (node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  },
  $: function (id) {
    return document.getElementById(id);
  },
  // The page's state for people (the status line) and for tests (body[data-state]).
  state: function (state, message) {
    document.body.setAttribute("data-state", state);
    const status = NF.$("status");
    if (status) {
      status.textContent = message || "";
      status.className = "status-" + state;
      status.hidden = !message;
    }
  },
  params: function () {
    return new URLSearchParams(window.location.search);
  },
  // GET a JSON document. Resolves to {status, json} or {status, text} for a non-2xx answer.
  getJSON: async function (url) {
    const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
    if (!response.ok) {
      const text = await response.text();
      return { status: response.status, text: text.trim(), json: null };
    }
    return { status: response.status, json: await response.json() };
  },
  number: function (n) {
    if (n === null || n === undefined) return "–";
    return Number(n).toLocaleString("en-US");
  },
  bytes: function (n) {
    if (n === null || n === undefined) return "–";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let v = Number(n);
    let u = 0;
    while (v >= 1024 && u < units.length - 1) {
      v /= 1024;
      u++;
    }
    return (u === 0 ? String(v) : v.toFixed(1)) + " " + units[u];
  },
  ago: function (ms) {
    const s = Math.max(0, Math.round(ms / 1000));
    if (s < 60) return s + " s ago";
    if (s < 3600) return Math.floor(s / 60) + " min ago";
    return Math.floor(s / 3600) + " h ago";
  },
  // A link to a trace of this packet in the console.
  traceHref: function (p) {
    const q = new URLSearchParams();
    for (const key of ["src", "dst", "proto", "sport", "dport", "in", "out", "ct_state", "mark"]) {
      if (p[key] !== undefined && p[key] !== null && p[key] !== "") q.set(key, String(p[key]));
    }
    return "/ui/trace?" + q.toString();
  },
  // Makes same-page links (data-nav) change the URL without a reload; `render` redraws from the
  // URL. The back button redraws too.
  routeLinks: function (container, render) {
    container.addEventListener("click", function (event) {
      const link = event.target.closest ? event.target.closest("a[data-nav]") : null;
      if (!link || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
      event.preventDefault();
      history.pushState(null, "", link.getAttribute("href"));
      render(true);
    });
    window.addEventListener("popstate", function () {
      render(false);
    });
  },
};

// The current view's tab in the navigation.
(function () {
  const view = document.body.getAttribute("data-view");
  for (const link of document.querySelectorAll("[data-view-link]")) {
    if (link.getAttribute("data-view-link") === view) link.setAttribute("aria-current", "page");
  }
})();
