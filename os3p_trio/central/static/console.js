// os3p console: live updates by Server-Sent Events, meter-value charts (uPlot), the command form's fields.
(function () {
  "use strict";
  const body = document.body;
  const live = body.dataset.live;
  const status = document.getElementById("live-status");

  function text(tag, value, cls) {
    const el = document.createElement(tag);
    el.textContent = value;
    if (cls) el.className = cls;
    return el;
  }

  function connect(url, handlers) {
    const source = new EventSource(url);
    source.onopen = () => status && status.classList.add("on");
    source.onerror = () => status && status.classList.remove("on");
    for (const [kind, fn] of Object.entries(handlers)) {
      source.addEventListener(kind, (e) => fn(JSON.parse(e.data)));
    }
    return source;
  }

  function when(t) {
    return new Date(t * 1000).toISOString().slice(11, 19);
  }

  function feedItem(ev) {
    const feed = document.getElementById("feed");
    if (!feed) return;
    let what = ev.kind;
    if (ev.kind === "connection") what = ev.connected ? "connected" : (ev.replaced ? "replaced" : "disconnected");
    else if (ev.kind === "event") what = ev.action + (ev.payload.status ? " " + ev.payload.status : "");
    else if (ev.kind === "call") what = "operator " + ev.action + ": " + ev.outcome;
    else if (ev.kind === "rollout") what = "rollout " + ev.rollout.id + " " + ev.rollout.state;
    const li = text("li", when(ev.time) + "  " + (ev.identity || "") + "  " + what, "live-event");
    feed.prepend(li);
    while (feed.children.length > 50) feed.lastChild.remove();
  }

  if (live === "fleet") {
    connect("/console/events", {
      fleet: (f) => {
        for (const el of document.querySelectorAll("[data-stat]")) {
          const v = el.dataset.stat.split(".").reduce((o, k) => (o == null ? o : o[k]), f);
          if (v != null) el.textContent = v;
        }
      },
      connection: feedItem, event: feedItem, call: feedItem, rollout: feedItem,
    });
  }

  if (live === "station") {
    const identity = body.dataset.station;
    const messages = document.getElementById("messages");
    const events = document.getElementById("events");
    connect("/console/events?station=" + encodeURIComponent(identity), {
      frame: (f) => {
        const tr = document.createElement("tr");
        tr.className = f.direction + " live-frame";
        tr.append(text("td", new Date(f.at * 1000).toISOString()),
                  text("td", f.direction === "in" ? "→ in" : "← out"));
        const td = document.createElement("td");
        td.append(text("code", f.text));
        tr.append(td);
        messages.prepend(tr);
        while (messages.rows.length > 200) messages.deleteRow(-1);
      },
      event: (ev) => {
        const tr = document.createElement("tr");
        tr.className = "live-event";
        tr.append(text("td", new Date(ev.time * 1000).toISOString()), text("td", ev.action),
                  text("td", ev.payload.contactorId || ""), text("td", ev.payload.status || ""));
        events.prepend(tr);
      },
      connection: (ev) => {
        const tr = document.createElement("tr");
        tr.className = "live-event";
        tr.append(text("td", new Date(ev.time * 1000).toISOString()),
                  text("td", ev.connected ? "Connected" : "Disconnected"));
        events.prepend(tr);
      },
    });
    const action = document.getElementById("action");
    if (action) {
      action.addEventListener("change", () => {
        for (const fs of document.querySelectorAll("fieldset.fields")) {
          const on = fs.dataset.action === action.value;
          fs.hidden = !on;
          fs.disabled = !on;
        }
      });
    }
    const charts = document.getElementById("charts");
    if (charts && window.uPlot) {
      fetch("/stations/" + encodeURIComponent(identity) + "/meter.json", { credentials: "same-origin" })
        .then((r) => r.json())
        .then((series) => {
          for (const [name, points] of Object.entries(series)) {
            const box = document.createElement("div");
            charts.append(box);
            new uPlot({ title: name, width: Math.min(560, charts.clientWidth || 560), height: 160,
                        series: [{}, { label: name, stroke: "#3a78c2" }] },
                      [points.map((p) => p[0]), points.map((p) => p[1])], box);
          }
          if (!Object.keys(series).length) charts.append(text("p", "no numeric meter values yet", "muted"));
        });
    }
  }
})();
