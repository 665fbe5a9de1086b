/* /admin: the subscriptions and the state of each one's last delivery, read from the admin
   API (GET /v1/subscriptions) with the token typed into #token. Like pages.js, the token
   lives in this closure only; every text goes in through textContent. */
(function () {
  "use strict";
  var section = document.getElementById("subscriptions");
  var input = document.getElementById("token");
  if (!section || !input) return;
  var body = section.querySelector("#subs tbody");
  var result = document.getElementById("subs-result");
  var token = "";
  var timer = null;
  var REFRESH_MS = 15000;

  function text(name) { return section.getAttribute("data-text-" + name) || ""; }

  function cell(tr, value, attrs) {
    var td = document.createElement("td");
    td.textContent = value == null ? "" : String(value);
    Object.keys(attrs || {}).forEach(function (k) { td.setAttribute(k, attrs[k]); });
    tr.appendChild(td);
    return td;
  }

  function scopeText(scope) {
    if (!scope) return text("all");
    return Object.keys(scope).map(function (s) { return s + ": " + scope[s].join(", "); }).join("; ");
  }

  function lastText(d) {
    if (!d) return text("never");
    var outcome = d.status_code != null ? String(d.status_code) : (d.error || "");
    return [d.state, d.type, d.message_id, "#" + d.attempt, d.at || d.queued_at, outcome]
      .filter(function (x) { return x; }).join(" ");
  }

  function render(subs) {
    while (body.firstChild) body.removeChild(body.firstChild);
    subs.forEach(function (s) {
      var tr = document.createElement("tr");
      tr.setAttribute("data-subscription", s.id);
      cell(tr, s.id);
      cell(tr, s.kind);
      cell(tr, s.url || s.email);
      cell(tr, s.lang);
      cell(tr, scopeText(s.scope));
      var state = cell(tr, s.state, { "data-state": s.state });
      if (s.disabled_reason) state.title = s.disabled_reason;
      var d = s.last_delivery;
      cell(tr, lastText(d), { "data-delivery": d ? d.state : "none" });
      cell(tr, s.pending_messages);
      body.appendChild(tr);
    });
    result.textContent = subs.length ? "" : text("none");
  }

  function load() {
    if (!token) return;
    fetch("/v1/subscriptions", { headers: { Authorization: "Bearer " + token } })
      .then(function (r) {
        return r.json().then(function (d) {
          if (!r.ok) {
            while (body.firstChild) body.removeChild(body.firstChild);
            result.textContent = text("error") + " " + r.status + ": " +
              ((d.error && d.error.message) || "");
            return;
          }
          render(d.subscriptions || []);
        });
      })
      .catch(function (e) { result.textContent = text("error") + ": " + e; });
  }

  input.addEventListener("change", function () {
    token = input.value;
    load();
    if (timer === null) {
      timer = setInterval(function () { if (!document.hidden) load(); }, REFRESH_MS);
    }
  });
  document.getElementById("subs-reload").addEventListener("click", load);
})();
