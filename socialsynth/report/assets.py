"""The style sheet and the script inlined into every report (kept as Python strings, so an installed wheel needs no
package data and the page needs no network).

The script turns each ``<section class="browser">`` into a paged, sortable, filterable list of items. Its data
sits in a ``<script type="application/json">`` beside it (gzip + base64 when large, decoded with the browser's
DecompressionStream), and every text reaches the page through ``textContent``, never as HTML, so a comment that
holds markup shows as text. An item is::

    {"id": str, "t": title, "m": meta line, "f": [item flags], "k": {sort key: number},
     "c": [{"l": column label, "t": text, "n": [notes], "f": [flags], "b": failed?, "d": [[i1, i2, j1, j2]...],
            "h": [terms to highlight], "x": [{"t": text, "n": [notes], "kept": bool}]}]}

``d`` are difflib's non-equal opcodes between the words of the first cell and this cell's words (words are split
on ASCII white space on both sides). The state of each list (sort, order, filters, page) is kept in the URL
fragment as ``#<list id>.sort=<key>&<list id>.dir=desc&...``, so a link or a reload shows the same view.
"""

CSS = """
:root { --fg: #1d2330; --muted: #5b6475; --line: #d9dee7; --bg: #f6f7f9; --bad: #b42318; --ok: #067647;
        --ins: #d1fadf; --del: #fee4e2; --mark: #fef0c7; --accent: #2e5aac; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); margin: 0;
       background: var(--bg); }
header.top { background: #fff; border-bottom: 1px solid var(--line); padding: 12px 24px; }
header.top h1 { font-size: 20px; margin: 0 0 4px; }
nav.runs a { margin-right: 14px; color: var(--accent); text-decoration: none; }
main { padding: 8px 24px 40px; }
section.run { background: #fff; border: 1px solid var(--line); border-radius: 6px; margin: 16px 0; padding: 12px 18px; }
section.run > h2 { font-size: 18px; margin: 4px 0 8px; }
h3 { font-size: 15px; margin: 16px 0 6px; }
.muted { color: var(--muted); }
table.t { border-collapse: collapse; margin: 6px 0 10px; font-size: 13px; }
table.t th, table.t td { border: 1px solid var(--line); padding: 3px 8px; text-align: left; vertical-align: top; }
table.t th { background: var(--bg); font-weight: 600; }
table.t td.num { text-align: right; font-variant-numeric: tabular-nums; }
img.plot { max-width: 560px; width: 100%; border: 1px solid var(--line); margin: 4px 12px 8px 0; }
.tables { display: flex; flex-wrap: wrap; gap: 0 28px; align-items: flex-start; }
.plots { display: flex; flex-wrap: wrap; align-items: flex-start; }
pre { background: var(--bg); padding: 8px; overflow: auto; max-height: 360px; font-size: 12px; }
.badge { display: inline-block; border-radius: 10px; padding: 0 7px; font-size: 11px; margin: 1px 3px 1px 0;
         background: var(--del); color: var(--bad); border: 1px solid #fda29b; }
.badge.mark { background: #fff6ed; color: #b93815; border-color: #f9dbaf; }
.badge.ok { background: var(--ins); color: var(--ok); border-color: #a6f4c5; }
.controls { display: flex; flex-wrap: wrap; gap: 8px; align-items: center; margin: 8px 0; padding: 8px;
            background: var(--bg); border-radius: 6px; }
.controls label { font-size: 12px; color: var(--muted); }
.controls input[type=number] { width: 70px; }
.item { border-top: 1px solid var(--line); padding: 10px 0; }
.item .head { font-size: 12px; color: var(--muted); margin-bottom: 4px; }
.item .head b { color: var(--fg); }
.cells { display: grid; grid-template-columns: repeat(auto-fit, minmax(210px, 1fr)); gap: 8px; }
.cell { border: 1px solid var(--line); border-radius: 5px; padding: 6px 8px; background: #fff; }
.cell.base { background: #f8fafc; }
.cell.bad { border-color: var(--bad); box-shadow: inset 3px 0 0 var(--bad); }
.cell .lab { font-size: 11px; font-weight: 600; color: var(--muted); text-transform: uppercase; }
.cell .txt { white-space: pre-wrap; word-wrap: break-word; margin: 3px 0; }
.cell .note { font-size: 11px; color: var(--muted); }
ins { background: var(--ins); text-decoration: none; }
del { background: var(--del); color: #912018; }
mark { background: var(--mark); border-bottom: 2px solid #f79009; }
.pager button { margin: 0 2px; }
details { margin: 4px 0; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 8px 12px; margin: 8px 0; }
.bar { display: inline-block; height: 10px; background: var(--accent); vertical-align: middle; }
td.heat { text-align: right; }
"""

JS = r"""
"use strict";
(function () {
  const WS = /[ \t\n\r\f\v]+/;
  const words = (t) => (t || "").split(WS).filter((w) => w.length);
  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  async function loadData(node) {
    const raw = node.textContent;
    if (node.dataset.encoding !== "gzip+base64") return JSON.parse(raw);
    const bin = atob(raw.trim());
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    return JSON.parse(await new Response(stream).text());
  }
  function hashParams() { return new URLSearchParams(location.hash.replace(/^#/, "")); }

  function appendWords(parent, list, tag) {
    if (!list.length) return;
    if (parent.childNodes.length) parent.appendChild(document.createTextNode(" "));
    if (tag) parent.appendChild(el(tag, null, list.join(" ")));
    else parent.appendChild(document.createTextNode(list.join(" ")));
  }
  function renderDiff(box, baseText, text, ops) {
    const a = words(baseText), b = words(text);
    let j = 0;
    for (const [i1, i2, j1, j2] of ops) {
      appendWords(box, b.slice(j, j1), null);
      appendWords(box, a.slice(i1, i2), "del");
      appendWords(box, b.slice(j1, j2), "ins");
      j = j2;
    }
    appendWords(box, b.slice(j), null);
  }
  function renderMarked(box, text, terms) {
    const clean = (terms || []).filter((t) => t && t.length).sort((x, y) => y.length - x.length);
    if (!clean.length) { box.textContent = text; return; }
    const re = new RegExp(clean.map((t) => t.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join("|"), "g");
    let last = 0, m;
    while ((m = re.exec(text)) !== null) {
      if (m.index > last) box.appendChild(document.createTextNode(text.slice(last, m.index)));
      box.appendChild(el("mark", null, m[0]));
      last = m.index + m[0].length;
      if (m[0].length === 0) re.lastIndex++;
    }
    if (last < text.length) box.appendChild(document.createTextNode(text.slice(last)));
  }
  function badges(parent, flags, cls) {
    for (const f of flags || []) parent.appendChild(el("span", "badge" + (cls ? " " + cls : ""), f));
  }

  class Browser {
    constructor(root, data) {
      this.root = root; this.data = data; this.id = root.id;
      this.state = { sort: "", dir: "asc", flag: "", col: "", q: "", min: "", max: "", page: "1", diff: "1" };
      const p = hashParams();
      for (const k of Object.keys(this.state)) if (p.has(this.id + "." + k)) this.state[k] = p.get(this.id + "." + k);
      this.fixed = data.fixed === undefined ? 1 : data.fixed;
      this.buildControls();
      this.list = el("div", "items"); this.root.appendChild(this.list);
      this.pager = el("div", "pager"); this.root.appendChild(this.pager);
      this.render();
    }
    select(name, label, options) {
      const wrap = el("label", null, label + " ");
      const s = el("select"); s.name = name;
      for (const [value, text] of options) { const o = el("option", null, text); o.value = value; s.appendChild(o); }
      s.value = this.state[name];
      s.addEventListener("change", () => { this.state[name] = s.value; this.state.page = "1"; this.render(); });
      wrap.appendChild(s); this.controls.appendChild(wrap);
    }
    input(name, label, type) {
      const wrap = el("label", null, label + " ");
      const i = el("input"); i.type = type; i.name = name; i.value = this.state[name];
      if (type === "number") i.step = "any";
      i.addEventListener("input", () => { this.state[name] = i.value; this.state.page = "1"; this.render(); });
      wrap.appendChild(i); this.controls.appendChild(wrap);
    }
    buildControls() {
      const d = this.data;
      this.controls = el("div", "controls"); this.root.appendChild(this.controls);
      this.select("sort", "sort by", [["", "file order"], ...(d.sorts || []).map((s) => [s.key, s.label])]);
      this.select("dir", "", [["asc", "ascending"], ["desc", "descending"]]);
      this.select("flag", "flag", [["", "all items"], ["*", "any flag"], ["-", "no flag"],
        ...(d.flags || []).map((f) => [f, f])]);
      if ((d.columns || []).length > this.fixed + 1)
        this.select("col", d.column_name || "column", [["", "all"], ...d.columns.slice(this.fixed).map((c) => [c, c])]);
      this.input("q", "search", "search");
      if ((d.sorts || []).length) {
        this.input("min", "sort key \u2265", "number");
        this.input("max", "\u2264", "number");
      }
      if (d.diff) {
        const wrap = el("label", null, " word diff "); const c = el("input"); c.type = "checkbox"; c.name = "diff";
        c.checked = this.state.diff === "1";
        c.addEventListener("change", () => { this.state.diff = c.checked ? "1" : "0"; this.render(); });
        wrap.appendChild(c); this.controls.appendChild(wrap);
      }
      this.count = el("span", "muted"); this.controls.appendChild(this.count);
    }
    visibleCells(item) {
      const cells = item.c || [];
      if (!this.state.col) return cells;
      return cells.filter((c, i) => i < this.fixed || c.l === this.state.col);
    }
    matches(item) {
      const st = this.state, cells = this.visibleCells(item);
      if (st.col && cells.length <= this.fixed) return false;
      const flags = new Set(item.f || []);
      for (const c of cells) for (const f of c.f || []) flags.add(f);
      if (st.flag === "*" && !flags.size) return false;
      if (st.flag === "-" && flags.size) return false;
      if (st.flag && st.flag !== "*" && st.flag !== "-" && !flags.has(st.flag)) return false;
      if (st.q) {
        const q = st.q.toLowerCase();
        const hay = [item.id, item.t || "", ...cells.map((c) => c.t || "")].join("\n").toLowerCase();
        if (!hay.includes(q)) return false;
      }
      if (st.sort && (st.min !== "" || st.max !== "")) {
        const v = (item.k || {})[st.sort];
        if (v === undefined || v === null) return false;
        if (st.min !== "" && v < Number(st.min)) return false;
        if (st.max !== "" && v > Number(st.max)) return false;
      }
      return true;
    }
    ordered() {
      const st = this.state;
      const rows = this.data.items.filter((it) => this.matches(it));
      if (!st.sort) return st.dir === "desc" ? rows.reverse() : rows;
      const sign = st.dir === "desc" ? -1 : 1;
      const key = (it) => { const v = (it.k || {})[st.sort]; return v === undefined || v === null ? null : v; };
      return rows.map((it, i) => [it, i]).sort((x, y) => {
        const a = key(x[0]), b = key(y[0]);
        if (a === null || b === null) return a === null && b === null ? x[1] - y[1] : a === null ? 1 : -1;
        return a === b ? x[1] - y[1] : (a < b ? -sign : sign);
      }).map((p) => p[0]);
    }
    saveHash() {
      const p = hashParams(), defaults = { dir: "asc", page: "1", diff: "1" };
      for (const [k, v] of Object.entries(this.state)) {
        if (v === "" || defaults[k] === v) p.delete(this.id + "." + k); else p.set(this.id + "." + k, v);
      }
      const text = p.toString();
      history.replaceState(null, "", text ? "#" + text : location.pathname + location.search);
    }
    render() {
      const rows = this.ordered(), size = this.data.page_size || 50;
      const pages = Math.max(1, Math.ceil(rows.length / size));
      let page = Math.min(Math.max(1, parseInt(this.state.page, 10) || 1), pages);
      this.state.page = String(page);
      this.list.textContent = "";
      for (const item of rows.slice((page - 1) * size, page * size)) this.list.appendChild(this.renderItem(item));
      this.count.textContent = rows.length + " of " + this.data.items.length + " shown";
      this.renderPager(page, pages);
      this.saveHash();
    }
    renderPager(page, pages) {
      this.pager.textContent = "";
      const go = (p) => { this.state.page = String(p); this.render(); this.root.scrollIntoView(); };
      const prev = el("button", null, "\u2190 previous"); prev.disabled = page <= 1; prev.onclick = () => go(page - 1);
      const next = el("button", null, "next \u2192"); next.disabled = page >= pages; next.onclick = () => go(page + 1);
      this.pager.append(prev, el("span", "muted", " page " + page + " of " + pages + " "), next);
    }
    renderItem(item) {
      const box = el("div", "item"); box.dataset.id = item.id;
      const head = el("div", "head"); head.appendChild(el("b", null, item.id));
      if (item.t) head.appendChild(document.createTextNode(" \u00b7 " + item.t));
      if (item.m) head.appendChild(document.createTextNode(" \u00b7 " + item.m));
      head.appendChild(document.createTextNode(" ")); badges(head, item.f, "mark");
      box.appendChild(head);
      const grid = el("div", "cells"), cells = this.visibleCells(item), base = (item.c || [])[0];
      cells.forEach((c, i) => grid.appendChild(this.renderCell(c, i < this.fixed, base)));
      box.appendChild(grid);
      return box;
    }
    renderCell(c, isBase, base) {
      const cell = el("div", "cell" + (isBase ? " base" : "") + (c.b ? " bad" : ""));
      cell.dataset.label = c.l;
      cell.appendChild(el("div", "lab", c.l));
      const txt = el("div", "txt");
      if (c.t === null || c.t === undefined) txt.appendChild(el("i", "muted", "(none)"));
      else if (c.d && base && this.state.diff === "1") renderDiff(txt, base.t, c.t, c.d);
      else renderMarked(txt, c.t, c.h);
      cell.appendChild(txt);
      badges(cell, c.f);
      for (const n of c.n || []) cell.appendChild(el("div", "note", n));
      if (c.x && c.x.length) cell.appendChild(this.renderExtra(c.x));
      return cell;
    }
    renderExtra(extra) {
      const det = el("details"); det.appendChild(el("summary", "note", extra.length + " candidates"));
      for (const x of extra) {
        const row = el("div", "cell" + (x.kept ? " base" : ""));
        row.appendChild(el("div", "lab", x.kept ? "kept" : "not kept"));
        row.appendChild(el("div", "txt", x.t));
        for (const n of x.n || []) row.appendChild(el("div", "note", n));
        det.appendChild(row);
      }
      return det;
    }
  }

  async function start() {
    for (const root of document.querySelectorAll("section.browser")) {
      const node = document.getElementById(root.id + "-data");
      try {
        new Browser(root, await loadData(node));
      } catch (e) {
        root.appendChild(el("p", "badge", "could not show this list: " + e));
      }
    }
    document.body.dataset.ready = "1";
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start); else start();
})();
"""
