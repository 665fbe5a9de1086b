/* Maintcast embeddable client: live maintenance status for checkout pages and dashboards.
 *
 *   const mc = Maintcast.connect({url, service, method, channel, lang, onChange});
 *   Maintcast.guardForm(form);   // blocks submit during maintenance with the channel's text
 *
 * Keeps two DOM hooks live (docs/api.md "Built"): data-maintcast-state="normal|maintenance"
 * on <html>, and exactly one [data-maintcast-banner] element (created when absent, hidden
 * when there is nothing to show). All server text is set with textContent, never as HTML.
 * Times are shown as written on the wire, i.e. in the window's own zone, with the zone
 * named, whatever the viewer's zone. No dependencies.
 */
(function (global) {
  "use strict";

  var TEXT = {
    ja: {
      now: "メンテナンス中です。",
      until: "終了予定",
      upcoming: "メンテナンス予定",
      ended: "メンテナンスは終了しました。",
      unknown: "状態を確認しています…",
    },
    en: {
      now: "Maintenance in progress.",
      until: "until",
      upcoming: "Scheduled maintenance",
      ended: "Maintenance has ended.",
      unknown: "Checking status…",
    },
  };
  var DEFAULT_MESSAGES = {
    token_modal: {
      ja: "メンテナンス中です。時間をおいて再度アクセスしてください。",
      en: "Under maintenance. Please try again later.",
    },
  };

  function pickLang(lang) {
    if (lang === "ja" || lang === "en") return lang;
    var nav = (global.navigator && global.navigator.language) || "ja";
    return nav.toLowerCase().indexOf("en") === 0 ? "en" : "ja";
  }

  /** "2021-08-09T01:00:00+09:00" + "Asia/Tokyo" -> "2021-08-09 01:00 (Asia/Tokyo, +09:00)".
   *  The wire instant is already in the window's zone: slice, never convert. */
  function formatTime(iso, zone) {
    if (!iso) return "";
    var m = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2})(?::\d{2}(?:\.\d+)?)?([+-]\d{2}:\d{2}|Z)$/.exec(iso);
    if (!m) return iso;
    return m[1] + " " + m[2] + " (" + (zone ? zone + ", " : "") + m[3] + ")";
  }

  function text(texts, lang) {
    if (!texts) return "";
    return texts[lang] || texts.ja || texts.en || "";
  }

  function messageFor(status, channel, lang) {
    var active = (status && status.active) || [];
    for (var i = 0; i < active.length; i++) {
      var msgs = active[i].messages || {};
      if (msgs[channel]) return text(msgs[channel], lang);
    }
    if (status && status.override && status.override.reason) {
      return TEXT[lang].now + " " + status.override.reason;
    }
    return text(DEFAULT_MESSAGES[channel], lang) || TEXT[lang].now;
  }

  var statusZone = "";

  /** The zone `until` is written in: the first active window's, else the server's
   *  MAINTCAST_TIMEZONE (opts.zone, or data-zone on <body> on Maintcast's own pages). */
  function zoneOfUntil(status) {
    var active = (status && status.active) || [];
    return active.length ? active[0].timezone : statusZone;
  }

  function bannerElement(doc) {
    var all = doc.querySelectorAll("[data-maintcast-banner]");
    for (var i = 1; i < all.length; i++) all[i].removeAttribute("data-maintcast-banner");
    var el = all[0];
    if (!el) {
      el = doc.createElement("div");
      el.setAttribute("data-maintcast-banner", "");
      el.className = "maintcast-banner";
      doc.body.insertBefore(el, doc.body.firstChild);
    }
    el.setAttribute("role", "status");
    el.setAttribute("aria-live", "polite");
    return el;
  }

  function renderBanner(el, status, channel, lang) {
    while (el.firstChild) el.removeChild(el.firstChild);
    if (!status) {
      el.hidden = true;
      return;
    }
    var t = TEXT[lang];
    if (status.state === "maintenance") {
      var line = el.ownerDocument.createElement("strong");
      line.textContent = messageFor(status, channel, lang);
      el.appendChild(line);
      if (status.until) {
        var until = el.ownerDocument.createElement("span");
        until.className = "maintcast-until";
        until.textContent = " " + t.until + ": " + formatTime(status.until, zoneOfUntil(status));
        el.appendChild(until);
      }
      el.setAttribute("data-maintcast-kind", "maintenance");
      el.hidden = false;
      return;
    }
    var upcoming = status.upcoming || [];
    if (upcoming.length) {
      var w = upcoming[0];
      el.textContent =
        t.upcoming + ": " + text(w.title, lang) + " — " +
        formatTime(w.starts_at, w.timezone) + " – " + formatTime(w.ends_at, w.timezone);
      el.setAttribute("data-maintcast-kind", "upcoming");
      el.hidden = false;
      return;
    }
    el.setAttribute("data-maintcast-kind", "none");
    el.hidden = true;
  }

  function streamUrl(base, opts, lastId) {
    var q = [];
    if (opts.service) q.push("service=" + encodeURIComponent(opts.service));
    if (opts.service && opts.method) q.push("method=" + encodeURIComponent(opts.method));
    if (lastId) q.push("last_event_id=" + encodeURIComponent(lastId));
    return base + "/v1/stream" + (q.length ? "?" + q.join("&") : "");
  }

  var current = null;

  /** Connect to a Maintcast server. Returns {state, status, lang, close()}.
   *  opts: url (default: this origin), service, method, channel (default "link"),
   *  lang ("ja"|"en"; default from navigator), onChange(status, conn), banner (false to skip),
 *  zone (the server's MAINTCAST_TIMEZONE, named next to override times). */
  function connect(opts) {
    opts = opts || {};
    var doc = global.document;
    var base = (opts.url || "").replace(/\/$/, "");
    statusZone = opts.zone || (doc.body && doc.body.getAttribute("data-zone")) || "";
    var conn = {
      state: "unknown",
      status: null,
      lang: pickLang(opts.lang),
      channel: opts.channel || "link",
      lastEventId: null,
      source: null,
      closed: false,
    };
    var banner = opts.banner === false ? null : bannerElement(doc);
    var retryTimer = null;

    function apply(status) {
      conn.status = status;
      conn.state = status.state;
      doc.documentElement.setAttribute("data-maintcast-state", status.state);
      if (banner) renderBanner(banner, status, conn.channel, conn.lang);
      if (typeof opts.onChange === "function") {
        try {
          opts.onChange(status, conn);
        } catch (e) {
          if (global.console) global.console.error(e);
        }
      }
    }

    function open() {
      if (conn.closed) return;
      var es = new global.EventSource(streamUrl(base, opts, conn.lastEventId));
      conn.source = es;
      es.addEventListener("status", function (ev) {
        if (ev.lastEventId) conn.lastEventId = ev.lastEventId;
        var status;
        try {
          status = JSON.parse(ev.data);
        } catch (e) {
          return;
        }
        apply(status);
      });
      es.onerror = function () {
        // The browser retries by itself while readyState is CONNECTING; a CLOSED source
        // (e.g. the server answered 502/503 while restarting) needs a new one, resuming
        // from the last seen id.
        if (es.readyState === 2 && !conn.closed) {
          clearTimeout(retryTimer);
          retryTimer = setTimeout(open, 1000 + Math.random() * 2000);
        }
      };
    }

    conn.close = function () {
      conn.closed = true;
      clearTimeout(retryTimer);
      if (conn.source) conn.source.close();
    };
    current = conn;
    open();
    return conn;
  }

  /** Block `form` submits during maintenance, showing the channel's message inside the form
   *  (in an element [data-maintcast-form-error], created when absent). */
  function guardForm(form, conn) {
    form.addEventListener(
      "submit",
      function (ev) {
        var c = conn || current;
        var box = form.querySelector("[data-maintcast-form-error]");
        if (!box) {
          box = form.ownerDocument.createElement("p");
          box.setAttribute("data-maintcast-form-error", "");
          box.setAttribute("role", "alert");
          form.insertBefore(box, form.firstChild);
        }
        if (c && c.state === "maintenance") {
          ev.preventDefault();
          ev.stopImmediatePropagation();
          box.textContent = messageFor(c.status, c.channel, c.lang);
          box.hidden = false;
          return;
        }
        box.textContent = "";
        box.hidden = true;
      },
      true
    );
  }

  global.Maintcast = {
    connect: connect,
    guardForm: guardForm,
    formatTime: formatTime,
    messageFor: messageFor,
    text: text,
    TEXT: TEXT,
  };
})(window);
