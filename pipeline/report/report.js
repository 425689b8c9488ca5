// avgrid report: draws the JSON in #avgrid-data (see pipeline/report/build.py) as one timeline per stream.
// Everything is drawn on a canvas; all text from the data goes through textContent, never innerHTML.
"use strict";
(function () {
  const state = { ready: false, errors: [], streams: [] };
  window.__avgrid = state;
  window.addEventListener("error", (e) => state.errors.push(String(e.message || e)));

  const data = JSON.parse(document.getElementById("avgrid-data").textContent);
  const S = data.strings || [];
  const L = { gutter: 178, right: 14, axis: 22, axis2: 14, thumbs: 60, audio: 42, people: 42, laneHead: 18,
              row: 15, gap: 8 };
  const KIND_COLOR = { action: "#2f6fd6", event: "#e07b1f", sentiment: "#777f8c", caption: "#7a4fc9" };
  const SENT_COLOR = { negative: "#d64545", neutral: "#9aa3ad", positive: "#2e9e57" };
  const PALETTE = ["#e07b1f", "#2f6fd6", "#2e9e57", "#c2416b", "#7a4fc9", "#15a0a6", "#b8861b", "#5d6b7c",
                   "#d64545", "#3d8bd9", "#8a9a1a", "#a34fb0"];
  const tip = document.getElementById("tip");

  function hash(s) { let h = 2166136261; for (let i = 0; i < s.length; i++) { h ^= s.charCodeAt(i); h = Math.imul(h, 16777619); } return h >>> 0; }
  // one colour per row of a lane (rows are labels), fixed ones where the colour carries meaning
  function colorOf(kind, rowLabel, label, row) {
    if (kind === "sentiment") return SENT_COLOR[label] || KIND_COLOR.sentiment;
    if (rowLabel === "gap") return "#3b4350";
    if (kind === "caption") return rowLabel === "asr" ? "#15a0a6" : KIND_COLOR.caption;
    if (kind === "action") return ["#2f6fd6", "#1f8fb8", "#5b5fd6", "#3d8bd9", "#4a74a8"][row % 5];
    return PALETTE[(row + (label === rowLabel ? 0 : hash(label))) % PALETTE.length];
  }
  function fmt(t) {
    const neg = t < 0; t = Math.abs(t);
    const h = Math.floor(t / 3600), m = Math.floor((t % 3600) / 60), s = t % 60;
    const ss = (s < 10 ? "0" : "") + (Number.isInteger(Math.round(s * 10) / 10) ? Math.round(s).toString() : s.toFixed(1));
    return (neg ? "-" : "") + (h ? h + ":" + String(m).padStart(2, "0") : String(m)) + ":" + ss;
  }
  function wall(origin, t) {
    if (!origin) return null;
    const d = new Date(Date.parse(origin) + t * 1000);
    return d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
  }
  function el(tag, cls, text) { const e = document.createElement(tag); if (cls) e.className = cls; if (text !== undefined) e.textContent = text; return e; }

  // ---- page header -------------------------------------------------------------------------------
  const meta = document.getElementById("meta");
  meta.textContent = data.dataset + " \u00b7 " + data.streams.length + " stream(s) \u00b7 made " + data.generated_at;
  for (const n of data.notes || []) meta.parentNode.appendChild(el("div", "note", n));

  const main = document.getElementById("streams");
  if (!data.streams.length) main.appendChild(el("p", "note", "This dataset holds no records and no inputs yet."));

  for (const st of data.streams) state.streams.push(makeStream(st));

  function makeStream(st) {
    const sec = el("section", "stream");
    sec.appendChild(el("h2", null, st.id));
    const chips = el("div", "chips");
    const sm = st.summary;
    const chip = (text, cls) => chips.appendChild(el("span", "chip" + (cls ? " " + cls : ""), text));
    if (sm) {
      chip(sm.status, sm.status);
      if (sm.duration_s != null) chip(fmt(sm.duration_s) + " media");
      if (sm.video_codec) chip(sm.video_codec + (sm.width ? " " + sm.width + "\u00d7" + sm.height : "") + (sm.fps ? " @ " + (+sm.fps).toFixed(2).replace(/\.?0+$/, "") + " fps" : ""));
      if (sm.audio_codec) chip(sm.audio_codec + (sm.sample_rate_hz ? " " + sm.sample_rate_hz + " Hz" : "") + (sm.channels ? " \u00d7" + sm.channels : ""));
      else if (sm.status === "ok") chip("no audio");
      if (sm.live) chip("live");
      if (sm.media_origin) chip("starts " + sm.media_origin.replace("T", " ").replace(".000", "").replace("+00:00", "Z") + (sm.media_origin_from ? " (" + sm.media_origin_from + ")" : ""));
      if (sm.gaps) chip(sm.gaps + " gap(s)");
      if (sm.profile) chip("profile " + sm.profile);
      chip(sm.runs + " run(s), latest " + sm.run_id);
    }
    for (const k of data.kinds) chip(st.counts[k] + " " + k);
    sec.appendChild(chips);
    if (sm && sm.error) sec.appendChild(el("div", "error", sm.error));
    if (st.source && st.source !== st.id) sec.appendChild(el("div", "note", "source: " + st.source));
    for (const n of st.notes) sec.appendChild(el("div", "note", n));

    const tools = el("div", "tools");
    const reset = el("button", null, "show all");
    tools.appendChild(reset);
    const span = el("span", "note", "");
    span.style.marginLeft = "8px";
    tools.appendChild(span);
    sec.appendChild(tools);
    const box = el("div", "timeline");
    const canvas = document.createElement("canvas");
    canvas.id = "timeline-" + state.streams.length;
    box.appendChild(canvas);
    sec.appendChild(box);
    main.appendChild(sec);

    const s = { id: st.id, st, canvas, v0: st.t0, v1: st.t1, images: [], layout: null, span };
    for (const [t, src] of st.thumbs) { const img = new Image(); img.src = src; s.images.push([t, img]); }
    if (st.transcript.length) sec.appendChild(transcript(s));

    reset.addEventListener("click", () => { s.v0 = st.t0; s.v1 = st.t1; draw(s); });
    canvas.addEventListener("wheel", (e) => {
      e.preventDefault();
      const t = tAt(s, e.offsetX);
      const k = Math.pow(1.0015, e.deltaY);
      const full = st.t1 - st.t0;
      let w = Math.min(full, Math.max(0.5, (s.v1 - s.v0) * k));
      let a = t - (t - s.v0) * w / (s.v1 - s.v0);
      a = Math.max(st.t0, Math.min(st.t1 - w, a));
      s.v0 = a; s.v1 = a + w; draw(s); hover(s, e);
    }, { passive: false });
    let drag = null;
    canvas.addEventListener("mousedown", (e) => { drag = { x: e.clientX, v0: s.v0, v1: s.v1 }; });
    window.addEventListener("mouseup", () => { drag = null; });
    canvas.addEventListener("mousemove", (e) => {
      if (drag) {
        const dt = (e.clientX - drag.x) / plotW(s) * (drag.v1 - drag.v0);
        const w = drag.v1 - drag.v0;
        const a = Math.max(st.t0, Math.min(st.t1 - w, drag.v0 - dt));
        s.v0 = a; s.v1 = a + w; draw(s);
      }
      hover(s, e);
    });
    canvas.addEventListener("mouseleave", () => { tip.hidden = true; s.cursor = null; draw(s); });
    canvas.addEventListener("dblclick", () => { s.v0 = st.t0; s.v1 = st.t1; draw(s); });
    return s;
  }

  function transcript(s) {
    const box = el("div", "transcript");
    box.appendChild(el("h3", null, "Transcript (" + s.st.transcript.length + " lines, speech recognition)"));
    const ol = el("ol");
    for (const [a, b, text, score] of s.st.transcript) {
      const li = el("li");
      const t = el("button", "t", fmt(a));
      t.title = "show this moment on the timeline";
      t.addEventListener("click", () => {
        const pad = Math.max(5, (b - a) * 2);
        s.v0 = Math.max(s.st.t0, a - pad); s.v1 = Math.min(s.st.t1, b + pad); draw(s);
        s.canvas.scrollIntoView({ block: "nearest" });
      });
      li.appendChild(t);
      li.appendChild(el("span", null, text));
      if (score != null) li.appendChild(el("span", "s", (+score).toFixed(2)));
      ol.appendChild(li);
    }
    box.appendChild(ol);
    return box;
  }

  // ---- geometry ----------------------------------------------------------------------------------
  function plotW(s) { return Math.max(50, s.canvas.clientWidth - L.gutter - L.right); }
  function X(s, t) { return L.gutter + (t - s.v0) / (s.v1 - s.v0) * plotW(s); }
  function tAt(s, x) { return s.v0 + (x - L.gutter) / plotW(s) * (s.v1 - s.v0); }

  function layout(s) {
    const st = s.st;
    let y = 0;
    const lay = { axis: [y, y + L.axis + (st.origin ? L.axis2 : 0)] };
    y = lay.axis[1] + 2;
    lay.thumbs = [y, y + L.thumbs]; y += L.thumbs + L.gap;
    lay.audio = [y, y + L.audio]; y += L.audio + L.gap;
    lay.people = [y, y + L.people]; y += L.people + L.gap;
    lay.lanes = [];
    for (const lane of st.lanes) {
      const head = [y, y + L.laneHead]; y += L.laneHead;
      const rows = [];
      const n = Math.max(1, lane.rows.length);
      for (let i = 0; i < n; i++) { rows.push({ label: lane.rows[i] ? lane.rows[i].label : null, y0: y, y1: y + L.row }); y += L.row; }
      lay.lanes.push({ kind: lane.kind, y0: head[0], y1: y, head, rows, n: lane.n });
      y += L.gap;
    }
    lay.height = y + 4;
    lay.x0 = L.gutter; lay.x1 = L.gutter + plotW(s);
    return lay;
  }

  // ---- drawing -----------------------------------------------------------------------------------
  function draw(s) {
    const c = s.canvas, st = s.st;
    const lay = s.layout = layout(s);
    const dpr = window.devicePixelRatio || 1;
    const w = c.clientWidth;
    c.style.height = lay.height + "px";
    if (c.width !== Math.round(w * dpr) || c.height !== Math.round(lay.height * dpr)) {
      c.width = Math.round(w * dpr); c.height = Math.round(lay.height * dpr);
    }
    const g = c.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, lay.height);
    g.font = "11px system-ui, sans-serif";
    g.textBaseline = "middle";
    s.span.textContent = "showing " + fmt(s.v0) + " \u2013 " + fmt(s.v1) + " of " + fmt(st.t0) + " \u2013 " + fmt(st.t1);

    axis(s, g, lay);
    g.save(); g.beginPath(); g.rect(lay.x0, 0, lay.x1 - lay.x0, lay.height); g.clip();
    thumbs(s, g, lay);
    audio(s, g, lay);
    people(s, g, lay);
    for (let i = 0; i < st.lanes.length; i++) lane(s, g, st.lanes[i], lay.lanes[i]);
    if (s.cursor != null) {
      const x = X(s, s.cursor);
      g.strokeStyle = "rgba(29,36,48,.55)"; g.lineWidth = 1;
      g.beginPath(); g.moveTo(x + 0.5, lay.axis[1]); g.lineTo(x + 0.5, lay.height); g.stroke();
    }
    g.restore();
    // labels in the gutter
    g.fillStyle = "#1d2430";
    const label = (text, y, bold) => { g.font = (bold ? "600 " : "") + "11px system-ui, sans-serif"; g.fillText(clip(g, text, L.gutter - 12), 4, y); };
    label("thumbnails", (lay.thumbs[0] + lay.thumbs[1]) / 2, true);
    label(st.audio ? "audio level (dBFS)" : "audio: none", (lay.audio[0] + lay.audio[1]) / 2, true);
    const maxP = st.people.reduce((m, p) => Math.max(m, p[2]), 0);
    label(st.people.length ? "people (max " + maxP + ")" : "people: no counts", (lay.people[0] + lay.people[1]) / 2, true);
    for (let i = 0; i < st.lanes.length; i++) {
      const ln = st.lanes[i], ly = lay.lanes[i];
      label(ln.kind + " \u00b7 " + ln.n + (ln.bins ? " (aggregated)" : ""), (ly.head[0] + ly.head[1]) / 2, true);
      ly.rows.forEach((r, j) => {
        g.fillStyle = ln.rows[j] ? "#3a4352" : "#9aa3ad";
        label(ln.rows[j] ? r.label + " (" + ln.rows[j].n + ")" : "no records", (r.y0 + r.y1) / 2, false);
      });
      g.fillStyle = "#1d2430";
    }
  }

  function clip(g, text, w) {
    if (g.measureText(text).width <= w) return text;
    let a = 0, b = text.length;
    while (a < b) { const m = (a + b + 1) >> 1; if (g.measureText(text.slice(0, m) + "\u2026").width <= w) a = m; else b = m - 1; }
    return text.slice(0, a) + "\u2026";
  }

  function niceStep(span, px) {
    const want = span / Math.max(1, px / 110);
    const steps = [0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];
    for (const st of steps) if (st >= want) return st;
    return steps[steps.length - 1];
  }

  function axis(s, g, lay) {
    const st = s.st, span = s.v1 - s.v0, step = niceStep(span, plotW(s));
    g.strokeStyle = "#e3e6eb"; g.fillStyle = "#6b7482"; g.lineWidth = 1;
    g.beginPath(); g.moveTo(lay.x0, lay.axis[1] + 0.5); g.lineTo(lay.x1, lay.axis[1] + 0.5); g.stroke();
    for (let t = Math.ceil(s.v0 / step) * step; t <= s.v1 + 1e-9; t += step) {
      const x = X(s, t);
      g.beginPath(); g.moveTo(x + 0.5, lay.axis[1] - 4); g.lineTo(x + 0.5, lay.height); g.strokeStyle = "#f0f2f5"; g.stroke();
      g.fillStyle = "#6b7482";
      g.textAlign = x > lay.x1 - 30 ? "right" : "center";      // the last tick's label stays inside
      g.fillText(fmt(t), Math.min(x, lay.x1 + L.right - 2), 9);
      if (st.origin) g.fillText(wall(st.origin, t).slice(11, 19), Math.min(x, lay.x1 + L.right - 2), 9 + L.axis2);
    }
    g.textAlign = "left";
    g.fillStyle = "#1d2430"; g.font = "600 11px system-ui, sans-serif";
    g.fillText("media time", 4, 9);
    if (st.origin) g.fillText("wall clock (UTC)", 4, 9 + L.axis2);
    g.font = "11px system-ui, sans-serif";
  }

  function thumbs(s, g, lay) {
    const [y0, y1] = lay.thumbs, h = y1 - y0;
    g.fillStyle = "#f6f7f9"; g.fillRect(lay.x0, y0, lay.x1 - lay.x0, h);
    let last = -Infinity;
    s.drawnThumbs = [];
    for (const [t, img] of s.images) {
      if (!img.complete || !img.naturalWidth) continue;
      const w = img.naturalWidth * h / img.naturalHeight;
      const x = X(s, t) - w / 2;
      if (x + w < lay.x0 || x > lay.x1 || x < last + 1) continue;
      g.drawImage(img, x, y0, w, h);
      g.strokeStyle = "#c9ced6"; g.lineWidth = 1; g.strokeRect(x + 0.5, y0 + 0.5, w - 1, h - 1);
      s.drawnThumbs.push([x, x + w, t, img]);
      last = x + w;
    }
  }

  function audio(s, g, lay) {
    const a = s.st.audio, [y0, y1] = lay.audio;
    g.fillStyle = "#f6f7f9"; g.fillRect(lay.x0, y0, lay.x1 - lay.x0, y1 - y0);
    if (!a) return;
    const lo = -70, Y = (db) => y1 - Math.max(0, Math.min(1, (db - lo) / -lo)) * (y1 - y0);
    g.fillStyle = "rgba(21,160,166,.55)"; g.strokeStyle = "#12868b"; g.lineWidth = 1;
    let open = false;
    g.beginPath();
    let lastX = null;
    for (let i = 0; i <= a.db.length; i++) {
      const v = i < a.db.length ? a.db[i] : null;
      const x = X(s, a.t0 + (i + 0.5) * a.dt);
      if (v == null) { if (open) { g.lineTo(lastX, y1); g.closePath(); open = false; } continue; }
      if (!open) { g.moveTo(x, y1); open = true; }
      g.lineTo(x, Y(v)); lastX = x;
    }
    g.fill(); g.stroke();
  }

  function people(s, g, lay) {
    const p = s.st.people, [y0, y1] = lay.people;
    g.fillStyle = "#f6f7f9"; g.fillRect(lay.x0, y0, lay.x1 - lay.x0, y1 - y0);
    if (!p.length) return;
    const max = p.reduce((m, q) => Math.max(m, q[2]), 1);
    g.fillStyle = "rgba(194,65,107,.75)";
    for (const [a, b, n] of p) {
      const x0 = X(s, a), x1 = X(s, b);
      if (x1 < lay.x0 || x0 > lay.x1) continue;
      const h = n / max * (y1 - y0 - 2);
      g.fillRect(x0, y1 - h, Math.max(1, x1 - x0), h);
    }
  }

  function lane(s, g, ln, ly) {
    g.fillStyle = "#ffffff"; g.fillRect(ly.head[0] >= 0 ? L.gutter : 0, ly.head[0], plotW(s), ly.head[1] - ly.head[0]);
    g.strokeStyle = "#e3e6eb"; g.beginPath(); g.moveTo(L.gutter, ly.head[1] - 0.5); g.lineTo(L.gutter + plotW(s), ly.head[1] - 0.5); g.stroke();
    ly.rows.forEach((r, j) => { g.fillStyle = j % 2 ? "#fafbfc" : "#f4f6f8"; g.fillRect(L.gutter, r.y0, plotW(s), r.y1 - r.y0); });
    const pad = 2;
    if (ln.records) {
      for (const rec of ln.records) {
        const r = ly.rows[rec.r]; if (!r) continue;
        const x0 = X(s, rec.s), x1 = X(s, rec.e);
        if (x1 < L.gutter || x0 > L.gutter + plotW(s)) continue;
        const rowLabel = ln.rows[rec.r] ? (ln.rows[rec.r].other ? rec.l : ln.rows[rec.r].label) : rec.l;
        g.fillStyle = colorOf(ln.kind, rowLabel, rec.l, rec.r);
        const w = Math.max(1.5, x1 - x0 - 0.5);
        g.fillRect(x0, r.y0 + pad, w, r.y1 - r.y0 - 2 * pad);
        if (ln.kind === "caption" && w > 40) {
          g.save(); g.beginPath(); g.rect(x0, r.y0, w, r.y1 - r.y0); g.clip();
          g.fillStyle = "#ffffff"; g.fillText(rec.l, x0 + 3, (r.y0 + r.y1) / 2); g.restore();
        }
      }
    } else if (ln.bins) {
      const b = ln.bins;
      b.rows.forEach((row, j) => {
        const r = ly.rows[j]; if (!r) return;
        const base = ln.rows[j] ? ln.rows[j].label : "";
        for (let i = 0; i < row.b.length; i++) {
          const x0 = X(s, b.t0 + row.b[i] * b.dt), x1 = X(s, b.t0 + (row.b[i] + 1) * b.dt);
          if (x1 < L.gutter || x0 > L.gutter + plotW(s)) continue;
          g.globalAlpha = 0.25 + 0.75 * row.cover[i];
          g.fillStyle = colorOf(ln.kind, base, row.label ? row.label[i] : base, j);
          g.fillRect(x0, r.y0 + pad, Math.max(1, x1 - x0), r.y1 - r.y0 - 2 * pad);
        }
        g.globalAlpha = 1;
      });
    }
  }

  // ---- hover -------------------------------------------------------------------------------------
  function line(box, k, v) { const d = el("div"); d.appendChild(el("span", "k", k)); d.appendChild(document.createTextNode(v)); box.appendChild(d); }

  function hover(s, e) {
    const lay = s.layout; if (!lay) return;
    const x = e.offsetX, y = e.offsetY, st = s.st;
    if (x < lay.x0 || x > lay.x1) { tip.hidden = true; s.cursor = null; draw(s); return; }
    const t = tAt(s, x);
    s.cursor = t;
    draw(s);
    tip.textContent = "";
    const when = "t " + fmt(t) + (st.origin ? "   " + wall(st.origin, t) : "");
    let shown = false;
    const tol = 3 / plotW(s) * (s.v1 - s.v0);
    if (y >= lay.thumbs[0] && y < lay.thumbs[1]) {
      const th = (s.drawnThumbs || []).find((d) => x >= d[0] && x <= d[1]);
      if (th) { line(tip, "frame at", fmt(th[2])); const im = document.createElement("img"); im.src = th[3].src; tip.appendChild(im); shown = true; }
    } else if (y >= lay.audio[0] && y < lay.audio[1] && st.audio) {
      const i = Math.floor((t - st.audio.t0) / st.audio.dt), v = st.audio.db[i];
      line(tip, "audio", v == null ? "not decoded" : v.toFixed(1) + " dBFS"); line(tip, "at", when); shown = true;
    } else if (y >= lay.people[0] && y < lay.people[1]) {
      const p = st.people.find((q) => t >= q[0] - tol && t <= q[1] + tol);
      line(tip, "people", p ? String(p[2]) : "no count here"); if (p) line(tip, "from", fmt(p[0]) + " to " + fmt(p[1])); line(tip, "at", when); shown = true;
    } else {
      for (let i = 0; i < lay.lanes.length && !shown; i++) {
        const ly = lay.lanes[i], ln = st.lanes[i];
        const j = ly.rows.findIndex((r) => y >= r.y0 && y < r.y1);
        if (j < 0) continue;
        shown = laneTip(ln, j, t, tol, when);
      }
    }
    if (!shown) { tip.hidden = true; return; }
    tip.hidden = false;
    const r = tip.getBoundingClientRect();
    let left = e.clientX + 14, top = e.clientY + 14;
    if (left + r.width > window.innerWidth - 4) left = e.clientX - r.width - 14;
    if (top + r.height > window.innerHeight - 4) top = Math.max(4, e.clientY - r.height - 14);
    tip.style.left = left + "px"; tip.style.top = top + "px";
  }

  function laneTip(ln, j, t, tol, when) {
    if (ln.records) {
      let best = null;
      for (const rec of ln.records) {
        if (rec.r !== j || rec.s > t + tol || rec.e < t - tol) continue;
        if (!best || (rec.e - rec.s) < (best.e - best.s)) best = rec;
      }
      if (!best) return false;
      const r = best;
      line(tip, ln.kind, r.l);
      line(tip, "media", fmt(r.s) + " \u2013 " + fmt(r.e) + "  (" + (r.e - r.s).toFixed(2) + " s)");
      if (r.ws) line(tip, "wall", r.ws);
      if (r.p != null) line(tip, "score", (+r.p).toFixed(3));
      if (r.c != null) line(tip, "count", String(r.c));
      if (r.d != null) line(tip, "detail", r.d);
      if (r.mo) line(tip, "modality", r.mo);
      if (r.su) line(tip, "subject", r.su);
      if (r.tr != null) line(tip, "track", String(r.tr));
      if (r.k && r.k.length > 1) line(tip, "top k", r.k.map((x) => x[0] + " " + x[1].toFixed(2)).join(", "));
      if (r.v) line(tip, "values", Object.entries(r.v).map(([k, v]) => k + " " + v.toFixed(2)).join(", "));
      if (r.o != null) line(tip, "operator", S[r.o]);
      line(tip, "model", S[r.m]);
      line(tip, "record", r.i);
      if (r.ep) line(tip, "episode", r.ep);
      return true;
    }
    const b = ln.bins, row = b.rows[j];
    if (!row) return false;
    const k = Math.floor((t - b.t0) / b.dt);
    const i = row.b.indexOf(k);
    if (i < 0) return false;
    line(tip, ln.kind, row.label ? row.label[i] : ln.rows[j].label);
    line(tip, "bin", fmt(b.t0 + k * b.dt) + " \u2013 " + fmt(b.t0 + (k + 1) * b.dt) + " (aggregated: " + ln.n + " records in this lane)");
    line(tip, "records", String(row.n[i]));
    line(tip, "covered", Math.round(row.cover[i] * 100) + "%");
    if (row.best[i] != null) line(tip, "best score", row.best[i].toFixed(3));
    line(tip, "at", when);
    return true;
  }

  // ---- start ---------------------------------------------------------------------------------------
  function drawAll() { for (const s of state.streams) draw(s); }
  window.addEventListener("resize", drawAll);
  drawAll();
  const pending = state.streams.flatMap((s) => s.images.map(([, img]) => img.decode ? img.decode().catch(() => null) : null));
  Promise.all(pending).then(() => {
    drawAll();
    state.layout = state.streams.map((s) => ({ id: s.id, canvas: s.canvas.id, v0: s.v0, v1: s.v1, ...s.layout }));
    state.ready = true;
    document.body.setAttribute("data-ready", "1");
  });
})();
