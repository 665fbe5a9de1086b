/* Live behaviour of Maintcast's own pages (/status, /maintenance, /admin, /demo/checkout).
 * Configuration comes from data-* attributes on <body> (no inline script: the pages send a
 * strict Content-Security-Policy). Server text is only ever set with textContent. */
(function () {
  "use strict";
  var body = document.body;
  var cfg = body.dataset;
  var lang = cfg.lang || "ja";
  var fmt = Maintcast.formatTime;
  var txt = Maintcast.text;
  // Each message with its translations side by side: [ja, en].
  var TEXT = {
    operational: ["稼働中", "Operational"],
    under_maintenance: ["メンテナンス中", "Under maintenance"],
    none: ["予定はありません", "Nothing scheduled"],
    postponed: ["延期", "Postponed"],
    moved: ["変更", "Changed"],
    endedEarly: ["早期終了", "Ended early"],
    from: ["変更前", "was"],
    ended: ["メンテナンスは終了しました。", "Maintenance has ended."],
    scheduled: [
      "メンテナンスを予定しています。下記の時間帯はお支払い手続きができません。",
      "Maintenance is scheduled: payment is unavailable during the time below.",
    ],
    noMaintenance: ["現在メンテナンスは行っていません。", "No maintenance is in progress."],
    back: ["お支払い手続きに戻る", "Back to payment"],
    token: ["トークンを発行しました", "Token issued"],
    set: ["設定しました", "Set"],
    cleared: ["解除しました", "Cleared"],
    error: ["エラー", "Error"],
  };
  var L = {};
  Object.keys(TEXT).forEach(function (k) { L[k] = TEXT[k][lang === "en" ? 1 : 0]; });

  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = text;
    if (cls) e.className = cls;
    return e;
  }
  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }
  function span(w) {
    return fmt(w.starts_at, w.timezone) + " – " + fmt(w.ends_at, w.timezone);
  }

  function renderComponents(status) {
    var cells = document.querySelectorAll("[data-component]");
    for (var i = 0; i < cells.length; i++) {
      var parts = cells[i].getAttribute("data-component").split("/");
      var st = (status.components[parts[0]] || {})[parts[1]];
      if (!st) continue;
      cells[i].setAttribute("data-status", st);
      cells[i].textContent = L[st];
    }
  }

  function renderWindows(list, windows) {
    clear(list);
    if (!windows.length) {
      list.appendChild(el("li", L.none));
      return;
    }
    windows.forEach(function (w) {
      var li = el("li");
      li.setAttribute("data-window", w.id);
      li.appendChild(el("strong", txt(w.title, lang)));
      li.appendChild(el("span", " " + span(w), "when"));
      (w.history || []).forEach(function (h) {
        if ((h.change === "rescheduled" || h.change === "ended_early") && h.from) {
          var label = h.change === "ended_early" ? L.endedEarly
            : (h.to && h.to.starts_at > h.from.starts_at ? L.postponed : L.moved);
          li.appendChild(
            el("div", label + " (" + L.from + " " + span({
              starts_at: h.from.starts_at, ends_at: h.from.ends_at, timezone: w.timezone,
            }) + ")" + (h.reason ? ": " + h.reason : ""), "history")
          );
        }
      });
      list.appendChild(li);
    });
  }

  function loadWindows(list, headers, keep) {
    fetch("/v1/windows", { headers: headers || {} })
      .then(function (r) { return r.json(); })
      .then(function (d) { renderWindows(list, (d.windows || []).filter(keep || Boolean)); })
      .catch(function () {});
  }

  var page = cfg.page;
  var opts = {
    url: "",
    service: cfg.service || undefined,
    method: cfg.method || undefined,
    channel: cfg.channel || "link",
    lang: lang,
  };

  if (page === "status") {
    var wl = document.getElementById("windows");
    var lastUpcoming = null;
    // the same windows as the server-rendered list: scheduled and in progress only,
    // reloaded whenever the set of active or upcoming windows (or their times) changes
    var listed = function (w) { return w.status === "scheduled" || w.status === "in_progress"; };
    opts.onChange = function (status) {
      renderComponents(status);
      var key = JSON.stringify((status.active || []).concat(status.upcoming || []).map(function (w) {
        return [w.id, w.starts_at, w.ends_at];
      }));
      if (key !== lastUpcoming) { lastUpcoming = key; loadWindows(wl, null, listed); }
    };
    Maintcast.connect(opts);
  } else if (page === "maintenance") {
    var title = document.getElementById("mt-title");
    var when = document.getElementById("mt-when");
    var msg = document.getElementById("mt-message");
    var done = document.getElementById("mt-ended");
    var whenLine = document.getElementById("mt-when-line");
    var sawMaintenance = false;
    opts.onChange = function (status) {
      var w = (status.active || [])[0] || (status.upcoming || [])[0];
      title.textContent = w ? txt(w.title, lang) : "";
      when.textContent = w ? span(w) : "";
      whenLine.hidden = !w;
      if (status.state === "maintenance") {
        sawMaintenance = true;
        done.hidden = true;
        msg.textContent = Maintcast.messageFor(status, "link", lang);
      } else {
        done.hidden = false;
        // "ended" only once this page saw the maintenance; else say what is scheduled
        msg.textContent = sawMaintenance ? L.ended : (w ? L.scheduled : L.noMaintenance);
      }
    };
    Maintcast.connect(opts);
  } else if (page === "admin") {
    var feed = document.getElementById("feed");
    var table = document.getElementById("windows");
    var tokenInput = document.getElementById("token");
    var result = document.getElementById("override-result");
    // The ops token lives in this variable only: never in sessionStorage or localStorage,
    // which outlive the page and which any script of the origin can read back later.
    var token = "";
    try { sessionStorage.removeItem("maintcast-token"); } catch (e) { /* where an older page kept it */ }
    tokenInput.addEventListener("change", function () {
      token = tokenInput.value;
      loadWindows(table, auth());
    });
    function auth() {
      return token ? { Authorization: "Bearer " + token } : {};
    }
    var seen = 0;
    function addEvent(e) {
      if (e.seq <= seen) return;
      seen = e.seq;
      var li = el("li", "#" + e.seq + " " + e.at + " " + e.type + " " + (e.window_id || "") +
        " " + (e.actor ? "(" + e.actor + ")" : "") + (e.reason ? " — " + e.reason : "") +
        " → " + e.state);
      li.setAttribute("data-seq", e.seq);
      feed.insertBefore(li, feed.firstChild);
    }
    fetch("/v1/events?after=0&limit=1000").then(function (r) { return r.json(); }).then(function (d) {
      (d.events || []).forEach(addEvent);
      opts.onChange = function (s) {
        if (s.cause && s.cause.type !== "resync") {
          addEvent({ seq: s.seq, at: s.as_of, type: s.cause.type, window_id: s.cause.window_id,
                     actor: s.cause.actor, reason: s.cause.reason, state: s.state });
        }
        loadWindows(table, auth());
      };
      Maintcast.connect(opts);
    });
    function send(method, bodyObj) {
      var h = auth();
      h["Content-Type"] = "application/json";
      return fetch("/v1/override", { method: method, headers: h, body: JSON.stringify(bodyObj) })
        .then(function (r) {
          return r.json().then(function (d) {
            result.textContent = r.ok ? (method === "PUT" ? L.set : L.cleared)
              : L.error + " " + r.status + ": " + ((d.error && d.error.message) || "");
          });
        });
    }
    document.getElementById("override-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      var f = ev.target;
      var b = { mode: f.mode.value, reason: f.reason.value };
      if (f.ttl.value) b.ttl_s = Number(f.ttl.value) * 60;
      send("PUT", b);
    });
    document.getElementById("override-clear").addEventListener("click", function () {
      send("DELETE", { reason: document.getElementById("override-form").reason.value || null });
    });
  } else if (page === "checkout") {
    var form = document.getElementById("card-form");
    var out = document.getElementById("checkout-result");
    var conn = Maintcast.connect(opts);
    Maintcast.guardForm(form, conn);
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      out.textContent = "";
      fetch("/demo/api/token", {
        method: "POST",
        headers: { "Content-Type": "application/json", "Accept-Language": lang },
        body: JSON.stringify({ card: form.card.value }),
      }).then(function (r) {
        return r.json().then(function (d) {
          out.setAttribute("data-result", r.ok ? "ok" : "refused");
          out.textContent = r.ok ? L.token + ": " + d.token : d.errorCode + " " + d.message;
        });
      });
    });
  }
})();
