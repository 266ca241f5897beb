// 批次详情 /batches/{id}: review and correct one batch. Thumbnails of every page in the batch's order with
// their flags, a viewer (master beside the processed page, zoom and pan), every correction from the keyboard,
// reordering by drag and drop, filing, splitting into items, discarding. A client of /api/batches/{id}/…:
// what the API refuses is said in Chinese (zhError), nothing is decided here that the API does not allow.
import {
  api, ApiError, start, h, clear, $, $$, toast, showError, zhError, STATE, PAGE_STATE, FLAG, enc,
  liveEvents, throttle, debounce, fmtTime, typing,
} from "./ui.js";

const THUMB_WIDTH = 240; // pixels asked for: sharp in a ~120 px cell on a 2x screen (previews.THUMB_WIDTH: made as each page is processed)
const BUSY = new Set(["queued", "processing"]);
const FILTERS = [
  ["all", "全部页面"], ["open", "仅待处理"], ["corrected", "已更正或确认"],
  ...["blank", "orientation_unsure", "low_confidence", "low_resolution", "resolution_mismatch", "failed"]
    .map((f) => [f, FLAG[f]]),
];
const MODES = { new: "新建（这件的第一批页面）", append: "追加到末尾", insert: "插入到第几页之前", replace: "替换其中几页" };
const PROBLEM = {
  unreadable_separator: "有分隔页读不出档号。",
  empty_segment: "两张分隔页之间没有页面。",
  repeated_separator: "同一档号的分隔页出现了两次。",
  pages_before_first_separator: "第一张分隔页之前还有页面。",
  pages_failed: "有页面处理失败：请先重新识别或排除这些页面，再手动归档。",
  not_in_catalogue: "档号不在目录中，且该全宗不接受扫描新建条目。",
  partly_filed: "这件档案已有本批次的部分页面；之后可用的页面还没归入。",
  item_has_pages: "这个档号已有页面：归档时请选择追加、插入或替换。",
  page_count_mismatch: "页数与目录登记的页数不符（漏扫或多扫）。",
  disk_full: "存储空间已满，归档暂停；腾出空间后会自动重试。",
  read_only: "档案目录不可写，归档暂停；恢复可写后会自动重试。",
  catalogue_busy: "目录数据库繁忙，稍后会自动重试。",
  filing_interrupted: "归档中断：档案目录恢复可写后会自动撤销未完成的部分。",
  page_already_filed: "有页面已归档，不能再归一次。",
};
const CHECK = { missing_pages: "漏扫", extra_pages: "多扫" };

// The keys, as shown on screen and handled below. [keys, label, action name]
const KEYS = [
  [["→", "J"], "下一页", "next"], [["←", "K"], "上一页", "prev"], [["N"], "下一处待处理", "nextOpen"],
  [["[", "Q"], "向左转", "turnLeft"], [["]", "E"], "向右转", "turnRight"], [["B"], "空白 / 非空白", "blank"],
  [["X"], "排除 / 恢复", "exclude"], [["A", "Enter"], "确认本页", "accept"], [["U"], "撤销更正", "undo"],
  [["R"], "重新识别", "rerun"], [["+"], "放大", "zoomIn"], [["-"], "缩小", "zoomOut"], [["0"], "适合窗口", "zoomFit"],
];
const MORE_KEYS = [
  [["Shift+←", "Shift+→"], "本页前移 / 后移"], [["空格"], "选中 / 取消选中"], [["Shift+A"], "全部确认"],
  [["F"], "归档"], [["S"], "分件"], [["D"], "作废"],
];

let batchId, batch = null, pages = [], bySeq = new Map(), originals = new Map();
let current = null; // seq of the page in the viewer
let filter = "all";
const selected = new Set();
const cells = new Map(); // seq → cell element
const lastThumb = new Map(); // seq → last picture URL shown (kept while the page is derived again)
let observer = null, live = false;
const els = {};
const zoom = { z: 1, x: 0, y: 0 };

batchId = Number(location.pathname.split("/").filter(Boolean)[1]);
start(async (who, main, detail) => {
  const params = new URLSearchParams(location.search);
  filter = FILTERS.some(([k]) => k === params.get("filter")) ? params.get("filter") : "all";
  document.body.classList.add("review");
  build(main);
  apply(await detail, { first: true });
  const wanted = Number(params.get("page"));
  show(bySeq.has(wanted) ? wanted : (firstOpen() ?? pages[0]?.seq ?? null));
  performance.mark("review-grid");
  document.body.dataset.ready = "1";
  liveEvents((kind, data) => { if (data.batch_id === batchId) reloadSoon(); },
    ["page_progress", "page_flagged", "correction", "batch_state"], (open) => { live = open; });
  addEventListener("keydown", onKey);
  addEventListener("resize", debounce(() => layoutZoom(), 100));
  pollWhileBusy();
}, { staffOnly: true, ahead: () => api(`/api/batches/${batchId}`) });

// ---- the screen's frame ----------------------------------------------------------------------------

function build(main) {
  els.title = h("h1");
  els.summary = h("div.summary");
  els.filing = h("section.filing", { hidden: true, "aria-live": "polite" });
  els.actions = h("div.actions",
    button("全部确认", "Shift+A", acceptAll, "#accept-all"),
    button("归档…", "F", openFile, "#file-open.primary"),
    button("分件…", "S", openSplit, "#split-open"),
    button("作废…", "D", openDiscard, "#discard-open.danger"));
  els.filter = h("select#flag-filter", { "aria-label": "按标记筛选", onchange: (e) => setFilter(e.target.value) },
    FILTERS.map(([k, label]) => h("option", { value: k, selected: k === filter }, label)));
  els.count = h("span.muted#grid-count");
  els.selection = h("span#selection");
  els.thumbs = h("div.thumbs#thumbs", { role: "listbox", "aria-label": "页面缩略图" });
  els.viewer = h("section.viewer#viewer", { "aria-label": "页面查看" });
  clear(main,
    h("div.review-head",
      h("div.titles", h("a.back", { href: "/batches" }, "← 批次列表"), els.title, els.summary),
      els.actions),
    els.filing,
    h("div.review-body",
      h("section.grid-pane",
        h("div.toolbar", h("label.inline", "筛选", els.filter), els.count, h("span.spacer"), els.selection),
        els.thumbs),
      els.viewer));
  buildViewer();
  // A thumbnail is fetched as it comes near the grid's visible part; those on screen first, the ones just
  // above or below once these have come (a browser opens six connections to the station: the nearby ones
  // would otherwise hold the first screen back).
  observer = new IntersectionObserver((entries) => {
    const box = els.thumbs.getBoundingClientRect();
    const near = [];
    for (const e of entries) {
      if (!e.isIntersecting) continue;
      observer.unobserve(e.target);
      const r = e.boundingClientRect;
      if (r.bottom > box.top && r.top < box.bottom) fetchThumb(e.target); else near.push(e.target);
    }
    if (near.length) {
      nearby.push(...near);
      setTimeout(() => fetchNearby(true), NEARBY_WAIT_MS);
    }
    fetchNearby();
  }, { root: els.thumbs, rootMargin: "300px 0px" });
  wireDrag();
}

const NEARBY_WAIT_MS = 1500; // at most this long behind the screen's own (a cell redrawn meanwhile never loads)
let onScreenLoading = new Set(), nearby = [];
function fetchThumb(img, onScreen = true) {
  if (!img.dataset.src) return;
  if (onScreen) {
    onScreenLoading.add(img);
    const done = () => { onScreenLoading.delete(img); fetchNearby(); };
    img.addEventListener("load", done, { once: true });
    img.addEventListener("error", done, { once: true });
  }
  img.src = img.dataset.src;
  delete img.dataset.src;
}
function fetchNearby(anyway = false) {
  for (const img of onScreenLoading) if (!img.isConnected) onScreenLoading.delete(img);
  if (onScreenLoading.size > 0 && !anyway) return;
  for (const img of nearby.splice(0)) if (img.isConnected) fetchThumb(img, false);
}

function button(label, key, onclick, spec = "") {
  return h("button" + spec, { type: "button", onclick, title: `${label}（${key}）` }, label, " ", h("kbd", key));
}

// ---- the batch's state -----------------------------------------------------------------------------

function apply(detail, { first = false } = {}) {
  const before = new Map(pages.map((p) => [p.seq, p]));
  const orderBefore = pages.map((p) => p.seq).join(",");
  const discarding = batch !== null && batch.state !== "discarded" && detail.state === "discarded";
  batch = detail;
  // An answer sent before a correction's own answer came (a reload asked for while the PATCH ran) must not
  // put a page back to its older version: the next correction would go with a stale If-Match (409).
  let older = false;
  pages = detail.page_list.map((p) => {
    const was = before.get(p.seq);
    if (was && was.version > p.version) { older = true; return was; }
    return p;
  }).sort((a, b) => a.position - b.position);
  bySeq = new Map(pages.map((p) => [p.seq, p]));
  originals = new Map(detail.originals.map((o) => [o.name, o]));
  for (const seq of [...selected]) if (!bySeq.has(seq)) selected.delete(seq);
  drawHead();
  if (first || discarding || orderBefore !== pages.map((p) => p.seq).join(",")) {
    drawGrid();
  } else {
    for (const p of pages) if (pageKey(before.get(p.seq)) !== pageKey(p)) redrawCell(p);
  }
  drawCount();
  if (current !== null && bySeq.has(current)) {
    const was = before.get(current);
    if (first || discarding || pageKey(was) !== pageKey(bySeq.get(current))) drawViewer();
  }
  if (older) reloadSoon(); // that answer was older than what is shown: ask for the batch as it is now
}

const pageKey = (p) => p && `${p.version}|${p.state}|${p.position}|${p.flags.join()}|${p.open_flags.join()}|${p.blank}|${JSON.stringify(p.correction)}|${p.filed_in}`;

function putPage(view) {
  // One page as a correction answered it: the rest of the batch as it was.
  const old = bySeq.get(view.seq);
  const i = pages.indexOf(old);
  if (i >= 0) pages[i] = view;
  bySeq.set(view.seq, view);
  redrawCell(view);
  drawCount();
  if (view.seq === current) drawViewer();
}

let reloading = null;
async function reload() {
  if (reloading) return reloading;
  reloading = (async () => {
    try { apply(await api(`/api/batches/${batchId}`)); } catch (err) { showError(err); } finally { reloading = null; }
  })();
  return reloading;
}
const reloadSoon = throttle(() => reload(), 600);

function busy() {
  return batch && (batch.assembling || pages.some((p) => BUSY.has(p.state)) || BUSY.has(batch.state));
}

function pollWhileBusy() {
  // The live stream says when a page is done; polling is the fallback when it is not connected.
  setTimeout(async () => {
    if (busy() && !document.hidden) await reload();
    pollWhileBusy();
  }, live ? 5000 : 2000);
}

function openCount() { return pages.filter((p) => p.open_flags.length).length; }
function firstOpen() { return pages.find((p) => p.open_flags.length)?.seq ?? null; }
function filed() { return [...(batch.filing.items || []), ...(batch.filing.by_hand || [])]; }

function drawHead() {
  const b = batch;
  document.title = `${b.name} · 批次详情 · 扫描工作站`;
  clear(els.title, b.name, " ", h(`span.badge.${b.state}#batch-state`, STATE[b.state] || b.state),
    b.assembling ? h("span.badge.processing", "正在生成 PDF") : null);
  const codes = [...new Set(filed().map((e) => e.archival_code))];
  clear(els.summary,
    h("span", `共 ${b.pages.total} 页`), h("span", `待处理 ${openCount()} 页`),
    b.pages.blank ? h("span", `空白 ${b.pages.blank} 页`) : null,
    b.pages.failed ? h("span.error", `失败 ${b.pages.failed} 页`) : null,
    h("span.muted", `接收于 ${fmtTime(b.created_at)}`),
    codes.length ? h("span#filed-as", "已归档：", codes.map((c, i) => [i ? "、" : "", h("a", { href: `/items/${enc(c)}` }, c)])) : null,
    b.pdf_url ? h("a", { href: b.pdf_url, target: "_blank" }, "批次 PDF") : null);
  for (const id of ["#file-open", "#split-open", "#discard-open", "#accept-all"]) $(id, els.actions).disabled = b.state === "discarded";
  els.actions.hidden = b.state === "discarded";
  drawFiling();
}

function drawFiling() {
  const f = batch.filing || {};
  const parts = [];
  if (batch.state === "discarded") parts.push(h("p.error", "批次已作废，原件已移入隔离区（未删除）。", batch.error ? h("span.muted", `（${batch.error}）`) : null));
  else if (batch.error) parts.push(h("p.warn", "批次问题：", batch.error));
  for (const e of filed()) {
    parts.push(h("p.ok.filed-entry", "已归档到 ", h("a", { href: `/items/${enc(e.archival_code)}` }, e.archival_code),
      `：本批次 ${e.batch_pages.length} 页`, e.pages_filed != null ? `，这件现有 ${e.pages_filed} 页` : "",
      e.page_check ? h("span.badge.warn", `页数核对：${CHECK[e.page_check] || e.page_check}`) : null));
  }
  if (f.problems?.length) {
    parts.push(h("h3", "未能自动归档的原因"),
      h("ul.problems", f.problems.map((p) => h("li", PROBLEM[p.code] || "无法归档。",
        p.page ? ` 见扫描第 ${p.page} 页。` : "", h("span.muted.detail", p.message)))));
  }
  if (f.proposed?.length) {
    const waiting = openCount() ? "处理完所有标记后会按此自动归档。" : "";
    parts.push(h("h3", "建议的归档"), h("ul.proposed", f.proposed.map((p) => h("li", h("b", p.archival_code),
      `：${describeSeqs(p.batch_pages)}`))), waiting ? h("p.muted", waiting) : null);
  } else if (f.target && !filed().length && batch.state !== "discarded") {
    parts.push(h("p.muted", "按文件夹名归档到 ", h("b", f.target), "。"));
  }
  clear(els.filing, parts);
  els.filing.hidden = !parts.length;
}

function describeSeqs(seqs) {
  const positions = seqs.map((s) => bySeq.get(s)?.position).filter(Boolean);
  return `${seqs.length} 页（第 ${ranges(positions)} 页）`;
}

function ranges(numbers) {
  const sorted = [...numbers].sort((a, b) => a - b), out = [];
  for (let i = 0; i < sorted.length; i++) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j] + 1) j++;
    out.push(i === j ? `${sorted[i]}` : `${sorted[i]}–${sorted[j]}`);
    i = j;
  }
  return out.join("、");
}

// ---- the grid --------------------------------------------------------------------------------------

function matches(p) {
  if (filter === "all") return true;
  if (filter === "open") return p.open_flags.length > 0;
  if (filter === "corrected") return corrected(p);
  if (filter === "failed") return p.state === "failed";
  return p.flags.includes(filter);
}
const corrected = (p) => Object.keys(p.correction || {}).some((k) => k !== "note") || (p.history || []).length > 0;
const visiblePages = () => pages.filter(matches);

function drawGrid() {
  observer.disconnect();
  cells.clear();
  onScreenLoading = new Set();
  nearby = [];
  const frag = document.createDocumentFragment();
  for (const p of pages) frag.append(cell(p));
  clear(els.thumbs, frag);
  if (!pages.length) els.thumbs.append(h("p.empty", "这个批次还没有页面。"));
}

function redrawCell(p) {
  const old = cells.get(p.seq);
  const fresh = cell(p);
  if (old) old.replaceWith(fresh); else els.thumbs.append(fresh);
}

function thumbUrl(p) {
  if (batch.state === "discarded") return null; // its pages are shown no more (the API answers 409 discarded)
  if (p.state === "done") return `/api/batches/${batchId}/pages/${p.seq}/image?width=${THUMB_WIDTH}&v=${p.version}`;
  if (BUSY.has(p.state) && lastThumb.has(p.seq)) return lastThumb.get(p.seq); // the picture before the correction
  if (masterShown(p)) return `/api/batches/${batchId}/pages/${p.seq}/image?view=master&width=${THUMB_WIDTH}&v=${p.version}`;
  return null;
}
const masterShown = (p) => { const o = originals.get(p.source_file); return o && !o.quarantined; };

function cell(p) {
  const url = thumbUrl(p);
  if (url) lastThumb.set(p.seq, url);
  let pic;
  if (url) {
    pic = h("img", { alt: `第 ${p.position} 页`, decoding: "async", draggable: false, dataset: { src: url } });
  } else {
    pic = h("div.placeholder", batch.state === "discarded" ? "已作废" : p.state === "failed" ? "处理失败" : PAGE_STATE[p.state] || p.state);
  }
  const mark = personMark(p);
  const el = h(`div.thumb${p.seq === current ? ".current" : ""}${selected.has(p.seq) ? ".selected" : ""}${p.open_flags.length ? ".open" : ""}`, {
    role: "option", draggable: true, "aria-selected": p.seq === current ? "true" : "false",
    title: `第 ${p.position} 页（扫描第 ${p.seq} 页，${p.source_file}${p.source_page > 1 ? " 第 " + p.source_page + " 页" : ""}）`,
    dataset: { seq: p.seq, state: p.state },
    hidden: !matches(p),
    onclick: (e) => onCellClick(e, p.seq),
  },
  h("div.pic", pic, BUSY.has(p.state) ? h("span.busy", PAGE_STATE[p.state]) : null,
    p.correction?.excluded ? h("span.excluded", "已排除") : null),
  h("div.cap",
    h("span.pos", String(p.position)),
    h("input.pick", { type: "checkbox", checked: selected.has(p.seq), "aria-label": `选中第 ${p.position} 页`, tabindex: -1,
      onclick: (e) => { e.stopPropagation(); toggleSelect(p.seq); } }),
    mark ? h(`span.mark.${mark[0]}`, { title: mark[1] }, mark[1]) : null),
  h("div.flags", badges(p)));
  if (url) observer.observe(pic);
  cells.set(p.seq, el);
  return el;
}

function badges(p) {
  const open = new Set(p.open_flags);
  const flags = p.state === "failed" && !p.flags.includes("failed") ? [...p.flags, "failed"] : p.flags;
  return flags.filter((f) => FLAG[f] && f !== "separator").map((f) =>
    h(`span.badge.flag${open.has(f) ? ".warn" : ".settled"}`, { dataset: { flag: f }, title: open.has(f) ? "待处理" : "已处理" }, FLAG[f]))
    .concat(p.flags.includes("separator") ? [h("span.badge", "分隔页")] : []);
}

function personMark(p) {
  const c = p.correction || {};
  const changed = ["turn", "skew_deg", "crop", "blank", "excluded", "engine"].some((k) => k in c);
  if (changed) return ["fixed", "✎ 已更正"];
  if (c.accepted?.length) return ["accepted", "✔ 已确认"];
  return null;
}

function drawCount() {
  const shown = visiblePages().length;
  clear(els.count, filter === "all" ? `${pages.length} 页` : `显示 ${shown} / ${pages.length} 页`, ` · 待处理 ${openCount()} 页`);
  clear(els.selection, selected.size ? [`已选 ${selected.size} 页 `, h("button.link", { type: "button", onclick: clearSelection }, "取消选择")] : "");
  for (const [seq, el] of cells) el.hidden = !matches(bySeq.get(seq));
  let none = $(".none", els.thumbs);
  if (!shown && pages.length) {
    if (!none) els.thumbs.append(none = h("p.empty.none"));
    none.textContent = filter === "open" ? "没有待处理的页面了。" : "没有符合筛选的页面。";
  } else if (none) none.remove();
}

function setFilter(value) {
  filter = value;
  els.filter.value = value;
  els.filter.blur(); // the review keys work again at once
  const url = new URL(location.href);
  if (value === "all") url.searchParams.delete("filter"); else url.searchParams.set("filter", value);
  history.replaceState(null, "", url);
  drawCount();
  if (current !== null && !matches(bySeq.get(current))) {
    const next = visiblePages()[0];
    if (next) show(next.seq);
  }
}

function onCellClick(e, seq) {
  if (e.shiftKey && current !== null) {
    const a = bySeq.get(current).position, b = bySeq.get(seq).position;
    for (const p of pages) if (p.position >= Math.min(a, b) && p.position <= Math.max(a, b)) selected.add(p.seq);
    refreshSelection();
    return;
  }
  if (e.ctrlKey || e.metaKey) { toggleSelect(seq); return; }
  show(seq);
}

function toggleSelect(seq) {
  if (selected.has(seq)) selected.delete(seq); else selected.add(seq);
  refreshSelection();
}
function clearSelection() { selected.clear(); refreshSelection(); }
function refreshSelection() {
  for (const [seq, el] of cells) {
    el.classList.toggle("selected", selected.has(seq));
    const box = $("input.pick", el);
    if (box) box.checked = selected.has(seq);
  }
  drawCount();
}

// ---- drag and drop reordering ----------------------------------------------------------------------

function wireDrag() {
  let dragged = null;
  els.thumbs.addEventListener("dragstart", (e) => {
    const el = e.target.closest?.(".thumb");
    if (!el) return;
    dragged = Number(el.dataset.seq);
    el.classList.add("dragging");
    e.dataTransfer.effectAllowed = "move";
    e.dataTransfer.setData("text/plain", String(dragged));
  });
  els.thumbs.addEventListener("dragend", () => {
    $$(".thumb.dragging, .thumb.drop-before, .thumb.drop-after", els.thumbs).forEach((el) => el.classList.remove("dragging", "drop-before", "drop-after"));
    dragged = null;
  });
  const side = (e, el) => { const r = el.getBoundingClientRect(); return e.clientX < r.left + r.width / 2 ? "before" : "after"; };
  els.thumbs.addEventListener("dragover", (e) => {
    const el = e.target.closest?.(".thumb");
    if (!el || dragged === null) return;
    e.preventDefault();
    e.dataTransfer.dropEffect = "move";
    $$(".thumb.drop-before, .thumb.drop-after", els.thumbs).forEach((x) => x.classList.remove("drop-before", "drop-after"));
    el.classList.add("drop-" + side(e, el));
  });
  els.thumbs.addEventListener("drop", (e) => {
    const el = e.target.closest?.(".thumb");
    if (!el || dragged === null) return;
    e.preventDefault();
    const target = Number(el.dataset.seq);
    const where = side(e, el);
    const moving = dragged;
    dragged = null;
    if (target === moving) return;
    const seqs = pages.map((p) => p.seq).filter((s) => s !== moving);
    seqs.splice(seqs.indexOf(target) + (where === "after" ? 1 : 0), 0, moving);
    serial(() => saveOrder(seqs, moving));
  });
}

async function saveOrder(seqs, moved) {
  try {
    apply(await api(`/api/batches/${batchId}/order`, { body: { seqs } }));
    toast(`已调整页序：原扫描第 ${moved} 页现在是第 ${bySeq.get(moved).position} 页。`, "ok");
    if (current !== null) markCurrent();
  } catch (err) { await failed(err); }
}

function moveCurrent(delta) {
  if (current === null) return;
  const seqs = pages.map((p) => p.seq);
  const i = seqs.indexOf(current), j = i + delta;
  if (j < 0 || j >= seqs.length) return;
  [seqs[i], seqs[j]] = [seqs[j], seqs[i]];
  return saveOrder(seqs, current);
}

// ---- the viewer ------------------------------------------------------------------------------------

function buildViewer() {
  els.vhead = h("div.vhead");
  els.master = h("div.frame#master-frame");
  els.processed = h("div.frame#processed-frame");
  els.vdetails = h("div.vdetails");
  const tools = KEYS.map(([keys, label, action]) =>
    h("button", { type: "button", dataset: { action }, title: `${label}（${keys.join(" 或 ")}）`, onclick: () => run(action) },
      label, " ", keys.map((k) => h("kbd", k))));
  els.tools = h("div.tools", tools);
  clear(els.viewer,
    els.vhead,
    h("div.panes",
      h("figure.pane", h("figcaption", "原件（扫描所得）"), els.master),
      h("figure.pane", h("figcaption", "处理后（纠偏、转正、裁边）"), els.processed)),
    els.vdetails,
    els.tools,
    h("p.morekeys.muted", MORE_KEYS.map(([keys, label]) => h("span", keys.map((k) => h("kbd", k)), " ", label))));
  for (const frame of [els.master, els.processed]) wirePan(frame);
}

function show(seq) {
  current = seq;
  markCurrent();
  const url = new URL(location.href);
  if (seq === null) url.searchParams.delete("page"); else url.searchParams.set("page", String(seq));
  history.replaceState(null, "", url);
  zoom.z = 1; zoom.x = 0; zoom.y = 0;
  drawViewer();
}

function markCurrent() {
  for (const [seq, el] of cells) {
    el.classList.toggle("current", seq === current);
    el.setAttribute("aria-selected", seq === current ? "true" : "false");
  }
  const el = cells.get(current);
  if (el && !el.hidden) el.scrollIntoView({ block: "nearest" });
}

function drawViewer() {
  const p = bySeq.get(current);
  if (!p) {
    clear(els.vhead, h("p.muted", "选择一页查看。"));
    clear(els.master); clear(els.processed); clear(els.vdetails);
    return;
  }
  const mark = personMark(p);
  clear(els.vhead,
    h("h2#viewer-title", `第 ${p.position} 页`, h("span.muted", ` · 扫描第 ${p.seq} 页 · ${p.source_file}${p.source_page > 1 ? " 第 " + p.source_page + " 页" : ""}`)),
    h(`span.badge.${p.state}#viewer-state`, PAGE_STATE[p.state] || p.state),
    h("span#viewer-flags", badges(p)),
    mark ? h(`span.mark.${mark[0]}`, mark[1]) : null,
    p.filed_in ? h("span", "已归档到 ", h("a", { href: `/items/${enc(p.filed_in)}` }, p.filed_in)) : null);
  const shown = batch.state !== "discarded"; // a discarded batch's pages are shown no more (409 discarded)
  picture(els.master, shown && masterShown(p) ? `/api/batches/${batchId}/pages/${p.seq}/image?view=master&v=${p.version}` : null,
    "原件已移入隔离区，无法显示。");
  const processedUrl = shown && p.state === "done" ? `/api/batches/${batchId}/pages/${p.seq}/image?v=${p.version}` : null;
  picture(els.processed, processedUrl,
    !shown ? "批次已作废，页面不再显示。" : p.state === "failed" ? `处理失败：${p.error || ""}` : BUSY.has(p.state) ? "正在重新处理，完成后自动显示…" : "无处理结果。");
  const d = p.details || {};
  const c = p.correction || {};
  const facts = [
    ["转向", `${d.turn ?? 0}°${c.turn ? `（人工加转 ${c.turn}°）` : ""}`],
    ["纠偏", d.skew_deg != null ? `${Number(d.skew_deg).toFixed(2)}°` : "—"],
    ["置信度", p.confidence != null ? `${Math.round(p.confidence)}` : "—"],
    ["分辨率", p.dpi ? `${Math.round(p.dpi)} dpi` : "—"],
    ["空白", (("blank" in c) ? c.blank : p.blank) ? "是" : "否"],
  ];
  if (c.excluded) facts.push(["排除", "是（不进 PDF，原件保留）"]);
  clear(els.vdetails,
    facts.map(([k, v]) => h("span", h("b", k), " ", v)),
    p.error ? h("span.error", p.error) : null,
    p.history?.length ? h("span.muted", `最近：${p.history.at(-1).who} ${fmtTime(p.history.at(-1).at)} ${ACTION[p.history.at(-1).action] || p.history.at(-1).action}`) : null);
  for (const b of $$("button", els.tools)) {
    const a = b.dataset.action;
    const needs = ["turnLeft", "turnRight", "blank", "exclude", "accept", "undo", "rerun"].includes(a);
    b.disabled = needs && (batch.state === "discarded" || Boolean(p.filed_in));
  }
}
const ACTION = { page: "更正", accept: "确认", undo: "撤销", rerun: "重新识别", order: "调整页序", file: "归档", split: "分件", discard: "作废" };

function picture(frame, url, placeholder) {
  const had = $("img", frame);
  if (url && had && had.dataset.url === url) return;
  if (!url) { clear(frame, h("div.placeholder", placeholder)); return; }
  const img = h("img", { alt: "", draggable: false, decoding: "async", dataset: { url } });
  img.addEventListener("load", () => layoutZoom());
  img.src = url;
  clear(frame, img, h("div.loading.muted", "加载中…"));
  img.addEventListener("load", () => $(".loading", frame)?.remove(), { once: true });
}

function layoutZoom() {
  for (const frame of [els.master, els.processed]) {
    const img = $("img", frame);
    if (!img || !img.naturalWidth) continue;
    const fw = frame.clientWidth, fh = frame.clientHeight;
    const fit = Math.min(fw / img.naturalWidth, fh / img.naturalHeight);
    const s = fit * zoom.z;
    const left = (fw - img.naturalWidth * s) / 2 + zoom.x, top = (fh - img.naturalHeight * s) / 2 + zoom.y;
    img.style.width = `${img.naturalWidth}px`;
    img.style.transform = `translate(${left}px, ${top}px) scale(${s})`;
  }
}

function setZoom(z, around, frame) {
  z = Math.min(12, Math.max(0.5, z));
  if (around && frame) {
    // Keep the point under the cursor where it is: the pan moves by the zoom's growth around it.
    const r = frame.getBoundingClientRect();
    const cx = around.x - r.left - r.width / 2 - zoom.x, cy = around.y - r.top - r.height / 2 - zoom.y;
    zoom.x -= cx * (z / zoom.z - 1);
    zoom.y -= cy * (z / zoom.z - 1);
  } else {
    zoom.x *= z / zoom.z; zoom.y *= z / zoom.z;
  }
  zoom.z = z;
  if (z === 1) { zoom.x = 0; zoom.y = 0; }
  layoutZoom();
}

function wirePan(frame) {
  frame.addEventListener("wheel", (e) => {
    e.preventDefault();
    setZoom(zoom.z * (e.deltaY < 0 ? 1.2 : 1 / 1.2), { x: e.clientX, y: e.clientY }, frame);
  }, { passive: false });
  frame.addEventListener("pointerdown", (e) => {
    if (e.button !== 0) return;
    const start = { x: e.clientX, y: e.clientY, zx: zoom.x, zy: zoom.y };
    frame.setPointerCapture(e.pointerId);
    frame.classList.add("panning");
    const move = (m) => { zoom.x = start.zx + m.clientX - start.x; zoom.y = start.zy + m.clientY - start.y; layoutZoom(); };
    const up = () => {
      frame.classList.remove("panning");
      frame.removeEventListener("pointermove", move);
      frame.removeEventListener("pointerup", up);
      frame.removeEventListener("pointercancel", up);
    };
    frame.addEventListener("pointermove", move);
    frame.addEventListener("pointerup", up);
    frame.addEventListener("pointercancel", up);
  });
  frame.addEventListener("dblclick", () => setZoom(1));
}

// ---- corrections -----------------------------------------------------------------------------------

function step(delta) {
  const list = visiblePages();
  if (!list.length) return;
  const i = list.findIndex((p) => p.seq === current);
  const next = i < 0 ? list[0] : list[Math.min(list.length - 1, Math.max(0, i + delta))];
  show(next.seq);
}

function nextOpen({ quiet = false } = {}) {
  const open = pages.filter((p) => p.open_flags.length && p.seq !== current);
  if (!open.length) {
    if (!quiet) toast(openCount() ? "没有别的待处理页面了。" : "所有标记都已处理。", "ok");
    return false;
  }
  const here = bySeq.get(current)?.position ?? 0;
  const next = open.find((p) => p.position > here) || open[0];
  if (!matches(next)) setFilter(filter === "open" ? "open" : "all");
  show(next.seq);
  return true;
}

const ifMatch = (p) => ({ "If-Match": `"${p.version}"` });

async function pageCall(path, { body, method = "POST", moveOn = false, said } = {}) {
  const p = bySeq.get(current);
  if (!p) return;
  if (p.filed_in) { toast(`这一页已归档到 ${p.filed_in}，请在档案详情里更正。`, "error"); return; }
  try {
    const view = await api(`/api/batches/${batchId}/pages/${p.seq}${path}`, { method, body, headers: ifMatch(p) });
    putPage(view);
    if (said) toast(said(view), "ok", 2500);
    reloadSoon();
    if (moveOn) nextOpen({ quiet: true });
  } catch (err) { await failed(err); }
}

async function failed(err) {
  if (err instanceof ApiError && (err.reason === "stale_version" || err.code === "stale_version")) {
    await reload();
    toast(zhError(err), "error", 9000);
    return;
  }
  showError(err);
  if (err instanceof ApiError && err.status === 409) reload();
}

function turn(delta) {
  const p = bySeq.get(current);
  if (!p) return;
  const now = p.correction?.turn || 0;
  const next = (now + delta + 360) % 360;
  return pageCall("", { method: "PATCH", body: { turn: next },
    said: () => `第 ${p.position} 页${delta > 0 ? "向右" : "向左"}转 90°（人工共加转 ${next}°），正在重新处理…` });
}

function toggleBlank() {
  const p = bySeq.get(current);
  if (!p) return;
  const c = p.correction || {};
  const blank = "blank" in c ? c.blank : p.blank;
  return pageCall("", { method: "PATCH", body: { blank: !blank }, moveOn: true,
    said: () => blank ? `第 ${p.position} 页标为非空白，正在重新识别…` : `第 ${p.position} 页标为空白。` });
}

function toggleExclude() {
  const p = bySeq.get(current);
  if (!p) return;
  const out = !p.correction?.excluded;
  return pageCall("", { method: "PATCH", body: { excluded: out }, moveOn: out,
    said: () => out ? `第 ${p.position} 页已排除（不进 PDF，原件保留）。` : `第 ${p.position} 页已恢复。` });
}

async function acceptPage() {
  const p = bySeq.get(current);
  if (!p) return;
  if (!p.open_flags.length) { toast("这一页没有待处理的标记。", "info", 2500); nextOpen({ quiet: true }); return; }
  try {
    apply(await api(`/api/batches/${batchId}/accept`, { body: { seqs: [p.seq] } }));
    toast(`第 ${p.position} 页已确认。`, "ok", 2500);
    nextOpen({ quiet: true });
  } catch (err) { await failed(err); }
}

// Corrections and moves run one after another: a second key pressed before the first answer came works on
// the page as that answer left it (its new version), never on the one before (409 stale_version).
let chain = Promise.resolve();
function serial(fn) {
  const next = chain.then(fn, fn);
  chain = next.catch(() => {});
  return next;
}

const INSTANT = new Set(["zoomIn", "zoomOut", "zoomFit"]);

function run(action) {
  if (!INSTANT.has(action)) { serial(() => runNow(action)); return; }
  runNow(action);
}

function runNow(action) {
  const actions = {
    next: () => step(1), prev: () => step(-1), nextOpen: () => nextOpen(),
    turnLeft: () => turn(-90), turnRight: () => turn(90), blank: toggleBlank, exclude: toggleExclude,
    accept: acceptPage,
    undo: () => pageCall("/undo", { said: (v) => `已撤销第 ${v.position} 页的更正。` }),
    rerun: () => pageCall("/rerun", { said: (v) => `第 ${v.position} 页正在重新识别…` }),
    zoomIn: () => setZoom(zoom.z * 1.25), zoomOut: () => setZoom(zoom.z / 1.25), zoomFit: () => setZoom(1),
  };
  return actions[action]?.();
}

function onKey(e) {
  if (e.defaultPrevented || e.altKey || e.ctrlKey || e.metaKey) return;
  if ($("dialog[open]")) return;
  const t = e.target;
  if (typing(e) && t.type !== "checkbox") return;
  // Enter and Space on a button or a link are its own click (a link followed), never a correction.
  if (t?.closest?.("button, a[href], summary") && (e.key === "Enter" || e.key === " ")) return;
  const key = e.key;
  const byKey = {
    ArrowRight: "next", j: "next", J: "next", ArrowLeft: "prev", k: "prev", K: "prev", n: "nextOpen", N: "nextOpen",
    "[": "turnLeft", q: "turnLeft", Q: "turnLeft", "]": "turnRight", e: "turnRight", E: "turnRight",
    b: "blank", B: "blank", x: "exclude", X: "exclude", a: "accept", Enter: "accept", u: "undo", U: "undo",
    r: "rerun", R: "rerun", "+": "zoomIn", "=": "zoomIn", "-": "zoomOut", "0": "zoomFit",
  };
  let handled = true;
  if (e.shiftKey && key === "ArrowLeft") serial(() => moveCurrent(-1));
  else if (e.shiftKey && key === "ArrowRight") serial(() => moveCurrent(1));
  else if (e.shiftKey && key === "A") acceptAll();
  else if (key === " ") { if (current !== null) toggleSelect(current); }
  else if (key === "f" || key === "F") openFile();
  else if (key === "s" || key === "S") openSplit();
  else if (key === "d" || key === "D") openDiscard();
  else if (byKey[key]) run(byKey[key]);
  else handled = false;
  if (handled) e.preventDefault();
}

// ---- dialogs: accept all, file, split, discard -----------------------------------------------------

function dialog(title, body, { ok, okLabel, danger = false, id }) {
  const error = h("p.error", { role: "alert", hidden: true });
  const form = h("form", { method: "dialog" }, h("h2", title), body, error,
    h("div.row.dialog-buttons",
      h("span.spacer"),
      h("button", { type: "button", value: "cancel", onclick: () => dlg.close() }, "取消", " ", h("kbd", "Esc")),
      h(`button${danger ? ".danger" : ".primary"}`, { type: "submit", value: "ok" }, okLabel)));
  const dlg = h("dialog.review-dialog", { id }, form);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const submit = $("button[type=submit]", form);
    submit.disabled = true;
    error.hidden = true;
    try {
      if (await ok()) dlg.close();
    } catch (err) {
      error.hidden = false;
      error.textContent = err instanceof ApiError ? zhError(err) : err.message;
      if (err instanceof ApiError && err.reason === "stale_version") reload();
    } finally { submit.disabled = false; }
  });
  dlg.addEventListener("close", () => dlg.remove());
  document.body.append(dlg);
  dlg.showModal();
  return dlg;
}

function acceptAll() {
  if (batch.state === "discarded") return;
  const open = pages.filter((p) => p.open_flags.length);
  const note = h("input#accept-note", { type: "text", maxLength: 2000, placeholder: "例如：已与纸质原件核对" });
  dialog("全部确认", [
    h("p", open.length ? `将确认 ${open.length} 页上仍待处理的标记（${ranges(open.map((p) => p.position))}），保持现状。` : "没有待处理的页面标记；将确认批次本身的问题（如页数不符）。"),
    h("label", "备注（可不填）", note)], {
    id: "accept-dialog", okLabel: "全部确认",
    ok: async () => {
      apply(await api(`/api/batches/${batchId}/accept`, { body: { note: note.value.trim() || null } }));
      toast("已全部确认。", "ok");
      return true;
    },
  });
  note.focus();
}

// File and split wait while the batch's PDF is rebuilt after a correction (409 batch_busy), then go on.
async function whenIdle(call, status) {
  for (let tries = 0; ; tries++) {
    try { return await call(); } catch (err) {
      if (!(err instanceof ApiError && err.reason === "batch_busy") || tries >= 20) throw err;
      status.hidden = false;
      status.textContent = "批次正在生成 PDF，完成后自动继续…";
      await new Promise((r) => setTimeout(r, 1500));
    }
  }
}

// A 档号 input that searches the catalogue as one types (GET /api/items?q=): words in the 档号 (either style) or 题名.
function codeInput(value = "", id = "") {
  const input = h("input.code", { type: "text", value, required: true, maxLength: 128, autocomplete: "off",
    placeholder: "输入档号或题名中的字词", id: id || null, role: "combobox", "aria-autocomplete": "list" });
  const list = h("ul.suggest", { role: "listbox", hidden: true });
  let seq = 0;
  const search = debounce(async () => {
    const q = input.value.trim();
    const mine = ++seq;
    if (!q) { list.hidden = true; return; }
    try {
      const items = await api(`/api/items?limit=8&q=${enc(q)}`);
      if (mine !== seq) return;
      clear(list, items.map((it) => h("li", { role: "option", tabindex: -1, dataset: { code: it.archival_code },
        onmousedown: (e) => { e.preventDefault(); pick(it.archival_code); } },
        h("b", it.archival_code), " ", it.title || "", it.pages != null ? h("span.muted", ` · 页数 ${it.pages}`) : null,
        it.pages_filed ? h("span.muted", ` · 已有 ${it.pages_filed} 页`) : null)));
      if (!items.length) list.append(h("li.muted", "目录中没有找到；按所填档号新建。"));
      list.hidden = false;
    } catch (err) { if (mine === seq) clear(list, h("li.error", zhError(err))); }
  }, 200);
  const pick = (code) => { input.value = code; list.hidden = true; input.dispatchEvent(new Event("change")); };
  input.addEventListener("input", search);
  input.addEventListener("blur", () => setTimeout(() => { list.hidden = true; }, 150));
  input.addEventListener("keydown", (e) => {
    const options = $$("li[data-code]", list);
    if (list.hidden || !options.length) return;
    const at = options.indexOf(document.activeElement);
    if (e.key === "ArrowDown") { e.preventDefault(); options[Math.min(options.length - 1, at + 1)].focus(); }
  });
  list.addEventListener("keydown", (e) => {
    const options = $$("li[data-code]", list);
    const at = options.indexOf(document.activeElement);
    if (e.key === "ArrowDown") { e.preventDefault(); options[Math.min(options.length - 1, at + 1)]?.focus(); }
    else if (e.key === "ArrowUp") { e.preventDefault(); (at <= 0 ? input : options[at - 1]).focus(); }
    else if (e.key === "Enter") { e.preventDefault(); const code = document.activeElement?.dataset?.code; if (code) { pick(code); input.focus(); } }
  });
  return { input, wrap: h("div.code-field", input, list) };
}

function suggestedCode() {
  const f = batch.filing || {};
  return f.proposed?.[0]?.archival_code || f.target || "";
}

function parsePositions(text) {
  // "1-5, 7、9" → positions; null if it cannot be read.
  const out = [];
  for (const part of text.split(/[,，、\s]+/).filter(Boolean)) {
    const m = part.match(/^(\d+)(?:[-–~～](\d+))?$/);
    if (!m) return null;
    const a = Number(m[1]), b = Number(m[2] || m[1]);
    for (let i = Math.min(a, b); i <= Math.max(a, b); i++) out.push(i);
  }
  return out;
}
const seqsAt = (positions) => positions.map((n) => pages.find((p) => p.position === n)?.seq);

function openFile() {
  if (batch.state === "discarded") return;
  const { input, wrap } = codeInput(suggestedCode(), "file-code");
  const mode = h("select#file-mode", Object.entries(MODES).map(([k, label]) => h("option", { value: k }, label)));
  const at = h("input#file-at", { type: "number", min: 1, placeholder: "这件的第几页" });
  const replace = h("input#file-replace", { type: "text", placeholder: "这件要替换的页，如 2-3" });
  const which = h("select#file-which",
    h("option", { value: "all" }, "全部可用页（空白和已排除的不归）"),
    selected.size ? h("option", { value: "selected", selected: true }, `仅所选的 ${selected.size} 页`) : null);
  const atRow = h("label", "插入位置", at), replaceRow = h("label", "替换哪几页", replace);
  const sync = () => { atRow.hidden = mode.value !== "insert"; replaceRow.hidden = mode.value !== "replace"; };
  mode.addEventListener("change", sync);
  sync();
  const status = h("p.muted#file-status", { hidden: true });
  dialog("归档到档号", [
    h("label", "档号", wrap), h("label", "方式", mode), atRow, replaceRow, h("label", "页面", which), status,
    h("p.muted", "在目录里输入档号或题名中的字词即可查找；目录中没有的档号会新建（全宗允许时）。")], {
    id: "file-dialog", okLabel: "归档",
    ok: async () => {
      const body = { archival_code: input.value.trim(), mode: mode.value };
      if (mode.value === "insert") body.at = Number(at.value) || 1;
      if (mode.value === "replace") {
        const list = parsePositions(replace.value);
        if (!list?.length) throw new Error("请填写要替换的页，如 2-3。");
        body.replace = list;
      }
      if (which.value === "selected") body.seqs = pages.filter((p) => selected.has(p.seq)).map((p) => p.seq);
      apply(await whenIdle(() => api(`/api/batches/${batchId}/file`, { body }), status));
      toast(`已归档到 ${body.archival_code}。`, "ok");
      clearSelection();
      return true;
    },
  });
  input.focus();
}

function openSplit() {
  if (batch.state === "discarded") return;
  const parts = h("div.parts#split-parts");
  const usable = pages.filter((p) => p.state === "done" && !p.blank && !p.correction?.excluded && !p.filed_in);
  const addPart = (code = "", positions = []) => {
    const { input, wrap } = codeInput(code);
    const which = h("input.pages", { type: "text", value: ranges(positions).replaceAll("–", "-"), placeholder: "如 1-5、8", required: true });
    const row = h("div.part", h("label", "档号", wrap), h("label", "页（本批次的第几页）", which),
      h("button.link", { type: "button", onclick: () => row.remove() }, "删去"));
    parts.append(row);
    return input;
  };
  const proposed = batch.filing?.proposed || [];
  if (proposed.length > 1) for (const p of proposed) addPart(p.archival_code, p.batch_pages.map((s) => bySeq.get(s)?.position).filter(Boolean));
  else if (selected.size) {
    addPart("", pages.filter((p) => selected.has(p.seq)).map((p) => p.position));
    addPart("", usable.filter((p) => !selected.has(p.seq)).map((p) => p.position));
  } else addPart(suggestedCode(), usable.map((p) => p.position));
  const status = h("p.muted", { hidden: true });
  dialog("分件：把本批次分成几件归档", [
    h("p.muted", "每件填一个档号和它的页（按网格里的页号）；每页只能归入一件。"), parts, status,
    h("button", { type: "button", onclick: () => addPart().focus() }, "添加一件")], {
    id: "split-dialog", okLabel: "分件归档",
    ok: async () => {
      const items = $$(".part", parts).map((row) => {
        const positions = parsePositions($("input.pages", row).value);
        if (!positions?.length) throw new Error("页的写法不对：请写成 1-5、8 这样。");
        const seqs = seqsAt(positions);
        if (seqs.some((s) => s === undefined)) throw new Error(`本批次只有 ${pages.length} 页。`);
        return { archival_code: $("input.code", row).value.trim(), seqs };
      });
      if (!items.length) throw new Error("请至少填一件。");
      apply(await whenIdle(() => api(`/api/batches/${batchId}/split`, { body: { items } }), status));
      toast(`已分成 ${items.length} 件归档。`, "ok");
      clearSelection();
      return true;
    },
  });
}

function openDiscard() {
  if (batch.state === "discarded") return;
  const note = h("textarea#discard-note", { rows: 3, maxLength: 2000, required: true, placeholder: "例如：扫描错了，整批重扫" });
  dialog("作废这个批次？", [
    h("p", `“${batch.name}”的 ${pages.length} 页将不再归档。原件会移入隔离区保存，不会删除。`),
    h("label", "作废原因", note)], {
    id: "discard-dialog", okLabel: "作废批次", danger: true,
    ok: async () => {
      apply(await api(`/api/batches/${batchId}/discard`, { body: { note: note.value.trim() } }));
      toast("批次已作废。", "ok");
      return true;
    },
  });
  note.focus();
}
