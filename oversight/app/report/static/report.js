// oversight report: renders the job browser, question pages and side-by-side views from the data
// files next to this script. Everything that comes from records is set with textContent (or as an
// SVG text node): model output is never parsed as markup, and no link target is ever taken from it.
"use strict";

const OVERSIGHT = (() => {
  const waiting = {};
  const loaded = {};

  function data(key, value) {
    loaded[key] = value;
    if (waiting[key]) waiting[key].forEach((resolve) => resolve(value));
    delete waiting[key];
  }

  // A data file is a script (fetch() does not work from file://); each one calls OVERSIGHT.data.
  function load(key, src) {
    if (key in loaded) return Promise.resolve(loaded[key]);
    return new Promise((resolve, reject) => {
      const first = !waiting[key];
      (waiting[key] = waiting[key] || []).push(resolve);
      if (!first) return;
      const script = document.createElement("script");
      script.src = src;
      script.onerror = () => reject(new Error("missing data file " + src));
      document.head.appendChild(script);
    });
  }
  return { data, load };
})();

// ---- small DOM helpers ------------------------------------------------------------------------

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k === "on") for (const [ev, fn] of Object.entries(v)) node.addEventListener(ev, fn);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.appendChild(typeof child === "string" || typeof child === "number" ? document.createTextNode(String(child)) : child);
  }
  return node;
}

const SVG_NS = "http://www.w3.org/2000/svg";
function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function fmt(value, digits = 3) {
  if (value === null || value === undefined || Number.isNaN(value)) return "-";
  return typeof value === "number" ? value.toFixed(digits) : String(value);
}

function hashParams() {
  return new URLSearchParams(location.hash.slice(1));
}

function jobHref(job) { return "job.html#job=" + encodeURIComponent(job); }
function questionHref(job, n) { return "question.html#job=" + encodeURIComponent(job) + "&q=" + encodeURIComponent(n); }
function sideHref(id) { return "side.html#id=" + encodeURIComponent(id); }

function main() { return document.getElementById("main"); }
// replaceChildren, taking nested arrays and skipping absent parts (null, undefined, false)
function show(parent, ...parts) {
  parent.replaceChildren(...parts.flat(Infinity).filter((p) => p !== null && p !== undefined && p !== false));
}
function setCrumb(...parts) {
  const crumb = document.getElementById("crumb");
  crumb.replaceChildren(...parts.flatMap((p, i) => (i ? [" › ", p] : [p])));
}
function fail(error) {
  console.warn(error);
  show(main(), el("p", { class: "error", text: String(error.message || error) }));
}

const sweep = () => OVERSIGHT.load("sweep", "data/sweep.js");
const jobIndex = (i) => OVERSIGHT.load("job/" + i, "data/job-" + i + ".js");
const questionData = (i, n) => OVERSIGHT.load("q/" + i + "/" + n, "data/q/" + i + "/" + n + ".js");

// ---- index: sortable comparison table ---------------------------------------------------------

function sortable(table) {
  const heads = Array.from(table.tHead.rows[0].cells);
  heads.forEach((th, column) => {
    th.addEventListener("click", () => {
      const descending = th.dataset.order !== "desc" && th.dataset.order === "asc";
      heads.forEach((h) => delete h.dataset.order);
      th.dataset.order = descending ? "desc" : "asc";
      const numeric = th.dataset.type === "num";
      const body = table.tBodies[0];
      const rows = Array.from(body.rows);
      const key = (row) => row.cells[column].dataset.sort;
      rows.sort((a, b) => {
        const x = key(a), y = key(b);
        if (x === "" || y === "") return (x === "") - (y === "");  // empty cells last
        const c = numeric ? parseFloat(x) - parseFloat(y) : x.localeCompare(y);
        return descending ? -c : c;
      });
      rows.forEach((row) => body.appendChild(row));
    });
  });
}

function indexPage() {
  sortable(document.getElementById("comparison"));
  document.getElementById("find").addEventListener("submit", (event) => {
    event.preventDefault();
    const id = document.getElementById("find-id").value.trim();
    if (id) location.href = sideHref(id);
  });
}

// ---- job: the question browser ----------------------------------------------------------------

const FILTERS = {
  result: [["any", "right or wrong"], ["right", "right"], ["wrong", "wrong"], ["partial", "partly right"],
           ["unscored", "not scored"]],
  flip: [["any", "any position flip"], ["yes", "verdict flips with order"], ["no", "no flip"]],
  failed: [["any", "failed or not"], ["yes", "failed (error or parse failure)"], ["no", "not failed"]],
  verdict: [["any", "any verdict"], ["model", "model verdict only"], ["human", "judged by a person"],
            ["disagree", "person disagrees with the model"]],
};

function matches(q, f) {
  const s = q.score;
  if (f.result === "right" && s !== 1) return false;
  if (f.result === "wrong" && s !== 0) return false;
  if (f.result === "partial" && !(s > 0 && s < 1)) return false;
  if (f.result === "unscored" && s !== null) return false;
  if (f.flip !== "any" && q.flip !== (f.flip === "yes")) return false;
  if (f.failed !== "any" && q.failed !== (f.failed === "yes")) return false;
  if (f.verdict === "model" && q.sources.includes("human")) return false;
  if (f.verdict === "human" && !q.sources.includes("human")) return false;
  if (f.verdict === "disagree" && !q.human_disagrees) return false;
  if (f.field && f.value !== "") {
    const values = (q.fields[f.field] || []).map(String);
    if (!values.includes(f.value)) return false;
  }
  if (f.search) {
    const needle = f.search.toLowerCase();
    if (!q.id.toLowerCase().includes(needle) && !q.question.toLowerCase().includes(needle)) return false;
  }
  return true;
}

function scoreText(s) {
  if (s === null || s === undefined) return "not scored";
  return s === 1 ? "right" : s === 0 ? "wrong" : "right " + fmt(s, 2);
}

async function jobPage() {
  const i = hashParams().get("job");
  const [info, job] = await Promise.all([sweep(), jobIndex(i)]);
  document.title = job.label + ": questions";
  setCrumb(el("a", { href: "index.html", text: info.title }), job.label);
  const f = { result: "any", flip: "any", failed: "any", verdict: "any", field: "", value: "", search: "" };
  const count = el("span", { class: "muted", id: "count" });
  const tbody = el("tbody");
  const select = (name) => el("select", { id: "filter-" + name, "aria-label": name, on: { change: (e) => { f[name] = e.target.value; draw(); } } },
    FILTERS[name].map(([value, text]) => el("option", { value, text })));
  const valueSelect = el("select", { id: "filter-value", "aria-label": "field value", on: { change: (e) => { f.value = e.target.value; draw(); } } });
  const fieldSelect = el("select", { id: "filter-field", "aria-label": "protocol field", on: { change: (e) => {
    f.field = e.target.value; f.value = "";
    const values = new Set();
    job.questions.forEach((q) => (q.fields[f.field] || []).forEach((v) => values.add(String(v))));
    valueSelect.replaceChildren(el("option", { value: "", text: "any value" }), ...Array.from(values).sort().map((v) => el("option", { value: v, text: v })));
    draw();
  } } }, el("option", { value: "", text: "protocol field…" }), job.fields.map((k) => el("option", { value: k, text: k })));
  const search = el("input", { type: "search", id: "search", placeholder: "search question text or id", on: { input: (e) => { f.search = e.target.value; draw(); } } });

  function draw() {
    const shown = job.questions.filter((q) => matches(q, f));
    count.textContent = "showing " + shown.length + " of " + job.questions.length;
    tbody.replaceChildren(...shown.map((q) => el("tr", { class: q.score === 1 ? "right" : q.score === 0 ? "wrong" : "" },
      el("td", {}, el("a", { href: questionHref(i, q.n), class: "qid", text: q.id })),
      el("td", { text: q.question }),
      el("td", { class: "result", text: scoreText(q.score) }),
      el("td", { text: q.chosen.map((c) => (c === null ? "-" : c)).join(" / ") }),
      el("td", { class: "num", text: fmt(q.p_correct) }),
      el("td", { text: [q.flip ? "flip" : "", q.failed ? "failed" : "", q.pending ? "pending" : "", q.human_disagrees ? "person disagrees" : ""].filter(Boolean).join(", ") }),
      el("td", { class: "fields", text: Object.entries(q.fields).map(([k, v]) => k + "=" + v.join("|")).join("; ") }),
      el("td", {}, el("a", { href: sideHref(q.id), text: "all jobs" })),
    )));
  }

  show(main(), 
    el("h1", { text: job.label }),
    el("p", { class: "muted", text: job.dir + " · model " + (job.model || "?") + " · task " + (job.task || "?") }),
    el("div", { class: "filters" }, select("result"), select("flip"), select("failed"), select("verdict"), fieldSelect, valueSelect, search, count),
    el("table", { id: "questions", class: "questions" },
      el("thead", {}, el("tr", {}, ["question id", "question", "result", "chosen", "p(correct)", "flags", "protocol fields", "side by side"].map((h) => el("th", { text: h })))),
      tbody),
  );
  draw();
}

// ---- question page ----------------------------------------------------------------------------

const LETTERS = "ABCDEFGHIJ";

function optionList(q) {
  return el("ol", { class: "options", type: "A" }, q.options.map((o, k) => el("li", { class: k === q.correct_index ? "correct" : "" },
    el("span", { class: "option", text: o }), k === q.correct_index ? el("span", { class: "badge ok", text: "correct" }) : null)));
}

function passageBlock(q) {
  const note = q.passage_seen_by_judge ? "shown to the judge in this protocol" : "hidden from the judge";
  if (!q.passage) return el("p", { class: "muted", text: "Passage: " + q.passage_note });
  return el("details", { class: "passage" },
    el("summary", {}, "Passage ", el("span", { class: q.passage_seen_by_judge ? "badge" : "badge hidden", text: note })),
    el("p", { class: "passage-text", text: q.passage }));
}

function turnBlock(turn) {
  const who = el("div", { class: "speaker" },
    el("strong", { class: "label", text: turn.label }),
    turn.side_text !== null ? el("span", { text: " for \u201c" + turn.side_text + "\u201d" }) : null,
    turn.judge_question ? el("span", { class: "badge ask", text: "judge\u2019s question" }) : null,
    el("span", { class: "muted", text: " · round " + turn.round + (turn.node ? " · node " + turn.node : "") }));
  const body = el("p", { class: "turn-text" }, turn.segments.map((s) => {
    if (!s.quote) return el("span", { text: s.text });
    const state = s.verified === true ? "verified" : s.verified === false ? "unverified" : "unchecked";
    return el("span", { class: "quote " + state, title: state + " quote" },
      el("span", { class: "quote-text", text: s.text }),
      el("span", { class: "badge " + (state === "verified" ? "ok" : "bad"), text: state === "verified" ? "\u2713 verified" : "\u2717 " + state }));
  }));
  return el("div", { class: "turn side-" + (turn.side === null ? "none" : turn.side) + (turn.judge_question ? " judge-question" : "") }, who, body);
}

function transcriptBlock(q, t) {
  const head = ["episode " + t.episode];
  if (t.assigned_side !== null) head.push("argues for \u201c" + q.options[t.assigned_side] + "\u201d");
  if (t.sequential) head.push("sequential");
  const asked = t.turns.filter((turn) => turn.judge_question).length;
  if (asked) head.push("interactive: the judge asked " + asked + (asked === 1 ? " question" : " questions"));
  const info = Object.keys(t.info || {}).length ? el("details", { class: "info" }, el("summary", { text: "protocol facts (not shown to the judge)" }),
    el("pre", { text: JSON.stringify(t.info, null, 1) })) : null;
  return el("section", { class: "transcript" }, el("h3", { text: head.join(" · ") }),
    t.passage ? el("p", { class: "muted", text: "The judge reads the passage in this episode." }) : null,
    t.turns.length ? t.turns.map(turnBlock) : el("p", { class: "muted", text: "no turns (the judge reads the question alone)" }), info);
}

function judgmentBlock(q, j) {
  const orders = j.orders || [];
  const headers = ["option", "p (averaged)"].concat(orders.map((o) => "order " + o.order.map((k) => LETTERS[k]).join(",")));
  const rows = q.options.map((opt, k) => el("tr", { class: (k === j.chosen ? "chosen " : "") + (k === q.correct_index ? "correct" : "") },
    el("td", {}, LETTERS[k] + ") ", el("span", { text: opt }), k === j.chosen ? el("span", { class: "badge", text: "chosen" }) : null),
    el("td", { class: "num" }, bar(j.p ? j.p[k] : null)),
    orders.map((o) => el("td", { class: "num" }, bar(o.p ? o.p[k] : null)))));
  const flags = [j.source, j.pending ? "pending" : "", j.parse_failed ? "parse failed" : "", j.position_flip ? "verdict flips with order" : "",
    j.judge_id ? "judge " + j.judge_id : "", j.correct === null ? "not scored" : j.correct === 1 ? "right" : j.correct === 0 ? "wrong" : "right " + fmt(j.correct, 2)];
  const raws = orders.filter((o) => o.raw).map((o) => el("details", {}, el("summary", { text: "raw output, order " + o.order.map((k) => LETTERS[k]).join(",") }), el("pre", { text: o.raw })));
  return el("section", { class: "judgment" },
    el("h3", { text: "judge " + j.judge + " · episode " + j.episode }),
    el("p", { class: "muted", text: flags.filter(Boolean).join(" · ") }),
    el("table", { class: "probs" }, el("thead", {}, el("tr", {}, headers.map((h) => el("th", { text: h })))), el("tbody", {}, rows)),
    raws,
    j.machine ? el("div", { class: "machine" }, el("p", { text: "The model's own verdict, before any person:" }), judgmentBlock(q, j.machine)) : null);
}

function bar(p) {
  if (p === null || p === undefined) return el("span", { text: "-" });
  return el("span", { class: "bar" }, el("span", { class: "fill", style: "width:" + Math.round(p * 100) + "%" }), el("span", { class: "value", text: fmt(p) }));
}

function humanBlock(q) {
  if (!q.humans.length) return null;
  return el("section", { class: "humans" }, el("h2", { text: "Human judgments" }),
    el("table", {}, el("thead", {}, el("tr", {}, ["person", "episode", "status", "chosen", "confidence", "explanation", "seconds", "when", "saw the model"].map((h) => el("th", { text: h })))),
      el("tbody", {}, q.humans.map((h) => el("tr", {},
        el("td", { text: h.judge_id }), el("td", { text: h.episode }), el("td", { text: h.status }),
        el("td", { text: h.chosen === null ? "-" : q.options[h.chosen] }), el("td", { class: "num", text: fmt(h.confidence, 2) }),
        el("td", { class: "explanation", text: h.explanation }), el("td", { class: "num", text: fmt(h.seconds, 1) }),
        el("td", { text: h.ended_at }), el("td", { text: h.model_shown ? (h.approved === null ? "yes" : h.approved ? "yes, approved" : "yes, vetoed") : "no" }))))));
}

function graphBlock(g) {
  const panel = el("div", { class: "node-details", id: "node-details" }, el("p", { class: "muted", text: "Click a node to see its prompt, output, cache hit and tokens." }));
  if (!g.nodes.length) return el("section", { class: "graph" }, el("h2", { text: "Call graph" }), el("p", { class: "muted", text: "empty graph" }));
  const pic = svg("svg", { viewBox: "0 0 " + g.width + " " + g.height, width: g.width, height: g.height, class: "callgraph", role: "img" });
  const defs = svg("defs");
  const marker = svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: "10", refY: "5", markerWidth: "6", markerHeight: "6", orient: "auto" });
  marker.appendChild(svg("path", { d: "M0,0 L10,5 L0,10 z", class: "arrowhead" }));
  defs.appendChild(marker);
  pic.appendChild(defs);
  const at = Object.fromEntries(g.nodes.map((n) => [n.id, n]));
  for (const [s, t] of g.edges) {
    const a = at[s], b = at[t];
    if (!a || !b) continue;
    pic.appendChild(svg("line", { x1: a.x + g.node_w / 2, y1: a.y + g.node_h, x2: b.x + g.node_w / 2, y2: b.y, class: "edge", "marker-end": "url(#arrow)" }));
  }
  for (const n of g.nodes) {
    const out = n.output && typeof n.output === "object" ? n.output : null;
    const classes = ["node", n.kind === "call" ? "call" : "step", out && out.cached ? "cached" : "", out && out.error ? "failed" : ""];
    const group = svg("g", { class: classes.filter(Boolean).join(" "), tabindex: "0", "data-id": n.id, transform: "translate(" + n.x + "," + n.y + ")" });
    group.appendChild(svg("title", {}, n.id));
    group.appendChild(svg("rect", { width: g.node_w, height: g.node_h, rx: 5 }));
    group.appendChild(svg("text", { x: 6, y: 15 }, clip(String(n.label || n.id), 20)));
    group.appendChild(svg("text", { x: 6, y: 30, class: "sub" }, clip([n.role, n.call ? n.call.kind : n.kind].filter(Boolean).join(" · "), 22)));
    const pick = () => {
      pic.querySelectorAll(".node.selected").forEach((x) => x.classList.remove("selected"));
      group.classList.add("selected");
      show(panel, nodeDetails(n));
    };
    group.addEventListener("click", pick);
    group.addEventListener("keydown", (e) => { if (e.key === "Enter") pick(); });
    pic.appendChild(group);
  }
  return el("section", { class: "graph" }, el("h2", { text: "Call graph" }),
    el("p", { class: "muted", text: g.nodes.length + " nodes: blue are model calls (dashed: answered from the cache), yellow are steps; an arrow means one output is in the next input." }),
    el("div", { class: "graph-wrap" }, pic), panel);
}

function clip(text, n) { return text.length > n ? text.slice(0, n - 1) + "\u2026" : text; }

function nodeDetails(n) {
  const out = n.output && typeof n.output === "object" ? n.output : null;
  const facts = [["node", n.id], ["kind", n.kind], ["label", n.label], ["role", n.role], ["model", n.model]];
  if (out) facts.push(["cache hit", out.cached ? "yes" : "no"], ["prompt tokens", out.prompt_tokens], ["output tokens", out.output_tokens], ["error", out.error]);
  const parts = [el("h3", { text: String(n.label || n.id) }),
    el("dl", {}, facts.filter(([, v]) => v !== null && v !== undefined).flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: String(v) })]))];
  if (n.call) {
    parts.push(el("h4", { text: "prompt (" + n.call.kind + ")" }));
    (n.call.messages || []).forEach((m) => parts.push(el("div", { class: "message" }, el("span", { class: "role", text: m.role }), el("pre", { text: m.content }))));
    if (n.call.prefix) parts.push(el("div", { class: "message" }, el("span", { class: "role", text: "assistant prefix" }), el("pre", { text: n.call.prefix })));
    if (n.call.params) parts.push(el("p", { class: "muted", text: "params " + JSON.stringify(n.call.params) }));
  }
  parts.push(el("h4", { text: "output" }));
  if (out) {
    if (out.text !== null && out.text !== undefined) parts.push(el("pre", { class: "output", text: out.text }));
    if (out.logprobs) {
      const candidates = (n.call && n.call.candidates) || [];
      parts.push(el("table", { class: "logprobs" }, el("thead", {}, el("tr", {}, el("th", { text: "candidate" }), el("th", { text: "log-probability" }))),
        el("tbody", {}, out.logprobs.map((lp, k) => el("tr", {}, el("td", {}, el("code", { text: JSON.stringify(candidates[k] === undefined ? k : candidates[k]) })), el("td", { class: "num", text: fmt(lp, 3) }))))));
    }
  } else if (n.output !== null && n.output !== undefined) {
    parts.push(el("pre", { class: "output", text: typeof n.output === "string" ? n.output : JSON.stringify(n.output, null, 1) }));
  }
  if (n.details && Object.keys(n.details).length) parts.push(el("h4", { text: "other attributes" }), el("pre", { text: JSON.stringify(n.details, null, 1) }));
  return parts;
}

function questionHeader(q, oneJob = true) {
  return [
    el("h1", { class: "question", text: q.question }),
    oneJob ? el("p", { class: "muted" }, el("span", { class: "qid", text: q.id }), " · " + q.protocol + " · ", el("span", { class: "result", text: scoreText(q.score) }),
      " · ", el("a", { href: sideHref(q.id), text: "this question in every job" }))
      : el("p", { class: "muted" }, el("span", { class: "qid", text: q.id }), " in every job of the sweep"),
    optionList(q),
    q.error ? el("p", { class: "error", text: "error: " + q.error }) : null,
    passageBlock(q),
  ];
}

async function questionPage() {
  const p = hashParams();
  const i = p.get("job"), n = p.get("q");
  const [info, q] = await Promise.all([sweep(), questionData(i, n)]);
  const job = info.jobs[Number(i)];
  document.title = q.id + ": " + job.label;
  const nav = el("p", { class: "nav" },
    Number(n) > 0 ? el("a", { href: questionHref(i, Number(n) - 1), id: "prev", text: "\u2190 previous" }) : null, " ",
    Number(n) + 1 < job.n ? el("a", { href: questionHref(i, Number(n) + 1), id: "next", text: "next \u2192" }) : null);
  setCrumb(el("a", { href: "index.html", text: info.title }), el("a", { href: jobHref(i), text: job.label }), q.id);
  show(main(), nav, questionHeader(q),
    el("h2", { text: "Transcript" }), q.transcripts.length ? q.transcripts.map((t) => transcriptBlock(q, t)) : el("p", { class: "muted", text: "no transcript" }),
    el("h2", { text: "Judgments" }), q.judgments.map((j) => judgmentBlock(q, j)),
    humanBlock(q), graphBlock(q.graph),
    Object.keys(q.metadata || {}).length ? el("details", { class: "info" }, el("summary", { text: "question metadata" }), el("pre", { text: JSON.stringify(q.metadata, null, 1) })) : null);
}

// ---- side by side: one question in every job --------------------------------------------------

async function sidePage() {
  const id = hashParams().get("id") || "";
  const info = await sweep();
  setCrumb(el("a", { href: "index.html", text: info.title }), "side by side", id);
  const indexes = await Promise.all(info.jobs.map((j) => jobIndex(j.index)));
  const found = indexes.map((job, k) => [k, job.questions.find((q) => q.id === id)]).filter(([, q]) => q);
  if (!found.length) {
    show(main(), el("h1", { text: "side by side" }), el("p", { class: "error", text: "no job has a question with id " + JSON.stringify(id) }));
    return;
  }
  const pages = await Promise.all(found.map(([k, q]) => questionData(k, q.n)));
  const first = pages[0];
  const columns = pages.map((q, c) => {
    const job = info.jobs[found[c][0]];
    return el("div", { class: "column" },
      el("h2", {}, el("a", { href: questionHref(job.index, q.n), text: job.label })),
      el("p", { class: "result", text: scoreText(q.score) }),
      q.transcripts.map((t) => transcriptBlock(q, t)),
      q.judgments.map((j) => judgmentBlock(q, j)));
  });
  show(main(), questionHeader(first, false), el("div", { class: "side-by-side" }, columns));
}

// ---- dispatch ---------------------------------------------------------------------------------

const PAGES = { index: indexPage, job: jobPage, question: questionPage, side: sidePage };

function route() {
  const page = PAGES[document.body.dataset.page];
  Promise.resolve().then(page).catch(fail);
}

window.addEventListener("hashchange", () => { if (document.body.dataset.page !== "index") route(); });
route();
