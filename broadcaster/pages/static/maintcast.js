/* Maintcast embeddable client: live maintenance status for checkout pages and dashboards.
 *
 *   const mc = Maintcast.connect({url, service, method, channel, lang, onChange});
 *   Maintcast.guardForm(form);   // blocks submit during maintenance with the channel's text
 *   Maintcast.guardForm(form, mc, {blockOnDrain: true});   // ...and while it drains
 *
 * Keeps two DOM hooks live (docs/api.md "Built"):
 * data-maintcast-state="normal|draining|maintenance" on <html>, and exactly one
 * [data-maintcast-banner] element (created when absent, hidden when there is nothing to
 * show; while draining it counts the minutes down to the start). All server text is set with textContent, never as HTML.
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
      drain: function (n) {
        return "メンテナンス開始まで あと" + n + "分です。お支払いはお早めにお済ませください。";
      },
      reserve: function (end, latest) { return "終了予定 " + end + "（最長 " + latest + "）"; },
    },
    en: {
      now: "Maintenance in progress.",
      until: "until",
      upcoming: "Scheduled maintenance",
      ended: "Maintenance has ended.",
      unknown: "Checking status…",
      drain: function (n) {
        return "Maintenance starts in " + n + " min. Please complete your payment soon.";
      },
      reserve: function (end, latest) {
        return "planned end " + end + " (at the latest " + latest + ")";
      },
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

  var WIRE = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2})/;

  /** 「終了予定 03:30（最長 04:30）」 / "planned end 03:30 (at the latest 04:30)" for a window
   *  with a latest_end (its date too when on another day); "" without one. */
  function reserveText(w, lang) {
    var end = WIRE.exec((w && w.ends_at) || "");
    var latest = WIRE.exec((w && w.latest_end) || "");
    if (!end || !latest) return "";
    var at = latest[1] === end[1] ? latest[2] : latest[1] + " " + latest[2];
    return TEXT[pickLang(lang)].reserve(end[2], at);
  }

  /** "start – end" in the window's zone, then its reserve. */
  function windowSpan(w, lang) {
    var s = formatTime(w.starts_at, w.timezone) + " – " + formatTime(w.ends_at, w.timezone);
    var r = reserveText(w, lang);
    return r ? s + " " + r : s;
  }

  /** The windows of status.upcoming whose drain had begun at status.as_of. */
  function drainingWindows(status) {
    var at = Date.parse((status && status.as_of) || "");
    return ((status && status.upcoming) || []).filter(function (w) {
      return w.drain_s > 0 && Date.parse(w.starts_at) - w.drain_s * 1000 <= at;
    });
  }

  function text(texts, lang) {
    if (!texts) return "";
    return texts[lang] || texts.ja || texts.en || "";
  }

  function messageFor(status, channel, lang) {
    var active = (status && status.active) || [];
    if (status && status.state === "draining") active = drainingWindows(status);
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

  /** Whole minutes (rounded up, at least 1) until `w` starts, on the server's clock: its
   *  as_of plus the time since the status arrived (`receivedAt`, this browser's ms). */
  function minutesUntil(w, status, receivedAt) {
    var serverNow = Date.parse(status.as_of) + (Date.now() - receivedAt);
    return Math.max(1, Math.ceil((Date.parse(w.starts_at) - serverNow) / 60000));
  }

  function renderBanner(el, status, channel, lang, receivedAt) {
    while (el.firstChild) el.removeChild(el.firstChild);
    if (!status) {
      el.hidden = true;
      return;
    }
    var t = TEXT[lang];
    var draining = status.state === "draining" ? drainingWindows(status) : [];
    if (draining.length) {
      var d = draining[0];
      var count = el.ownerDocument.createElement("strong");
      count.className = "maintcast-countdown";
      count.textContent = t.drain(minutesUntil(d, status, receivedAt || Date.now()));
      el.appendChild(count);
      var span = el.ownerDocument.createElement("span");
      span.className = "maintcast-when";
      span.textContent = " " + text(d.title, lang) + " — " + windowSpan(d, lang);
      el.appendChild(span);
      el.setAttribute("data-maintcast-kind", "draining");
      el.hidden = false;
      return;
    }
    if (status.state === "maintenance") {
      var line = el.ownerDocument.createElement("strong");
      line.textContent = messageFor(status, channel, lang);
      el.appendChild(line);
      if (status.until) {
        var until = el.ownerDocument.createElement("span");
        until.className = "maintcast-until";
        until.textContent = " " + t.until + ": " + formatTime(status.until, zoneOfUntil(status));
        var holding = (status.active || []).filter(function (w) { return w.ends_at === status.until; });
        var reserve = holding.length ? reserveText(holding[0], lang) : "";
        if (reserve) until.textContent += " " + reserve;
        el.appendChild(until);
      }
      el.setAttribute("data-maintcast-kind", "maintenance");
      el.hidden = false;
      return;
    }
    var upcoming = status.upcoming || [];
    if (upcoming.length) {
      var w = upcoming[0];
      el.textContent = t.upcoming + ": " + text(w.title, lang) + " — " + windowSpan(w, lang);
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
    var countdown = null;

    function apply(status) {
      var receivedAt = Date.now();
      conn.status = status;
      conn.state = status.state;
      doc.documentElement.setAttribute("data-maintcast-state", status.state);
      clearInterval(countdown);
      if (banner) {
        renderBanner(banner, status, conn.channel, conn.lang, receivedAt);
        if (status.state === "draining") {
          // the minutes count down between events: re-render from the same status
          countdown = setInterval(function () {
            renderBanner(banner, status, conn.channel, conn.lang, receivedAt);
          }, 1000);
        }
      }
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
      clearInterval(countdown);
      if (conn.source) conn.source.close();
    };
    current = conn;
    open();
    return conn;
  }

  /** Block `form` submits during maintenance, showing the channel's message inside the form
   *  (in an element [data-maintcast-form-error], created when absent). While the view only
   *  drains, submits go through (a payment under way may finish) unless
   *  options.blockOnDrain. guardForm(form, {blockOnDrain: true}) uses the last connection. */
  function guardForm(form, conn, options) {
    if (conn && !options && !("state" in conn) && "blockOnDrain" in conn) {
      options = conn;
      conn = null;
    }
    var blockOnDrain = !!(options && options.blockOnDrain);
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
        if (c && (c.state === "maintenance" || (blockOnDrain && c.state === "draining"))) {
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
    reserveText: reserveText,
    windowSpan: windowSpan,
    drainingWindows: drainingWindows,
    messageFor: messageFor,
    text: text,
    TEXT: TEXT,
  };
})(window);
