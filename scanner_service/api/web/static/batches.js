// 批次: the board of every batch, newest first, kept up to date by the live events (no reload): state,
// progress, speed and time left, flags by kind, problems, 档号. Above it the station: queue, workers, disk.
// The first 50 rows come at once; more as the person scrolls (GET /api/batches?before=<last id>). An event
// marks its batch's row; marked rows are asked for again together, at most once a second.
import {
  api, start, h, clear, $, $$, showError, zhError, STATE, FLAG, fmtTime, fmtBytes, fmtDuration, liveEvents,
  throttle, enc, typing, noModifier,
} from "./ui.js";

const PAGE = 50;
const FLAG_KINDS = ["blank", "orientation_unsure", "low_confidence", "low_resolution", "resolution_mismatch", "failed"];
const RUNNING = new Set(["receiving", "queued", "processing"]);
const TABS = [
  { key: "all", label: "全部", states: null },
  { key: "running", label: "处理中", states: ["receiving", "queued", "processing"] },
  { key: "needs_review", label: "待审核", states: ["needs_review"] },
  { key: "failed", label: "失败", states: ["failed"] },
  { key: "done", label: "完成", states: ["done"] },
];
const STATION_EVERY_MS = 5000;
const EVENTS = ["batch_state", "page_progress", "page_flagged", "correction", "item_filed", "item_pages_changed"];

// What stopped a batch (error_code) or its filing (filing.problems[].code), in words an operator acts on.
// The station's own sentence (English, naming the file or page) is kept as the tooltip.
const PROBLEM = {
  duplicate: "重复扫描：内容与之前的批次相同",
  bad_name: "文件名无法识别",
  empty_batch: "文件夹是空的",
  only_hidden_files: "文件夹里只有隐藏文件",
  nothing_usable: "没有可用的页面",
  vanished: "接收时文件不见了",
  intake_failed: "接收失败（磁盘或共享目录写不进去）",
  all_pages_failed: "所有页面都处理失败",
  assembly_failed: "生成 PDF 失败",
  discarded: "已作废",
  unreadable: "文件无法读取",
  broken: "文件已损坏",
  bad_image: "图像已损坏",
  symlink: "是快捷方式（符号链接），未读取",
  not_an_image: "不是图像或 PDF",
  encrypted: "PDF 已加密",
  too_large: "图像过大",
  pages_failed: "有页面处理失败，需要手动归档",
  not_in_catalogue: "目录中没有这个档号",
  item_has_pages: "这个档号已有页面：请选择追加、插入或替换",
  page_count_mismatch: "页数与目录登记的不符（漏扫或多扫）",
  count_mismatch: "页数与目录登记的不符（漏扫或多扫）",
  partly_filed: "只归档了一部分页面",
  disk_full: "存档磁盘已满，腾出空间后会自动重试",
  read_only: "存档目录无法写入，恢复后会自动重试",
  catalogue_busy: "目录数据库繁忙，稍后会自动重试",
  filing_interrupted: "归档中断，存档目录恢复可写后会自动完成",
  filing_error: "归档出错",
  set_aside: "有文件被移到隔离区，可能缺页",
};

const board = {
  tab: TABS[0],
  rows: new Map(), // batch id → <tr>
  oldest: null, // the smallest id loaded: the next page is the batches before it
  end: false,
  loading: false,
  generation: 0, // a new tab starts a new generation: answers of the old one are dropped
  dirty: new Set(),
  firstDrawn: false,
  station: null,
};

start(render, { staffOnly: true });

async function render(_who, main) {
  const wanted = new URLSearchParams(location.search).get("state");
  board.tab = TABS.find((t) => t.key === wanted) || TABS[0];

  clear(main,
    h("div.board-head",
      h("h1", "批次"),
      h("section.station#station", { "aria-label": "工作站状态" },
        stationBox("station-queue", "排队"),
        stationBox("station-workers", "工作进程"),
        stationBox("station-disk", "存档磁盘"),
        h("div.station-box#station-live", h("span.label", "实时更新"), h("span.value.muted", "连接中…")),
      ),
    ),
    h("div.banner.warn#disk-warning", { role: "alert", hidden: true }),
    h("div.toolbar.board-tabs", { role: "tablist", "aria-label": "按状态筛选" },
      TABS.map((tab, i) => h("button.tab", {
        type: "button", role: "tab", id: "tab-" + tab.key, dataset: { tab: tab.key },
        "aria-selected": String(tab === board.tab), tabindex: tab === board.tab ? "0" : "-1",
        title: `${tab.label}（按 ${i + 1}）`, onclick: () => chooseTab(tab, true),
      }, tab.label, h("span.count", ""))),
      h("span.spacer"),
      h("p.keys.muted#keys", { "aria-label": "快捷键" },
        h("kbd", "/"), " 筛选 ", h("kbd", "←"), h("kbd", "→"), " 切换 ", h("kbd", "1"), "–", h("kbd", "5"), " 直接选 · ",
        h("kbd", "↓"), h("kbd", "↑"), " 选批次 · ", h("kbd", "Enter"), " 打开"),
    ),
    h("table.board#board",
      h("colgroup", ["c-name", "c-code", "c-state", "c-progress", "c-speed", "c-flags", "c-problem", "c-time"]
        .map((c) => h("col." + c))),
      h("thead", h("tr",
        h("th", "批次"), h("th", "档号"), h("th", "状态"), h("th", "进度"), h("th", "速度 / 剩余"),
        h("th", "标记"), h("th", "问题"), h("th", "创建时间"))),
      h("tbody#batch-rows"),
    ),
    h("p.empty#board-more", "正在加载…"),
  );

  addEventListener("keydown", onKey);
  new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting)) loadMore();
  }, { rootMargin: "400px" }).observe($("#board-more"));

  liveEvents(onEvent, EVENTS, (open) => {
    const live = $("#station-live .value");
    live.textContent = open ? "已连接" : "已断开，正在重连…";
    live.className = "value " + (open ? "ok" : "warn");
  });
  refreshStation();
  setInterval(() => { if (!document.hidden) refreshStation(); }, STATION_EVERY_MS);
  await loadMore();
}

// ---- the list: first page, more on scrolling, a tab ---------------------------------------------------

function listQuery(extra) {
  const parts = [`limit=${PAGE}`];
  for (const state of board.tab.states || []) parts.push("state=" + state);
  return "/api/batches?" + parts.concat(extra || []).join("&");
}

async function loadMore() {
  if (board.loading || board.end) return;
  board.loading = true;
  const generation = board.generation;
  const more = $("#board-more");
  try {
    const list = await api(listQuery(board.oldest ? [`before=${board.oldest}`] : []));
    if (generation !== board.generation) return;
    const body = $("#batch-rows");
    for (const batch of list) {
      if (!board.rows.has(batch.id)) {
        const tr = row(batch);
        board.rows.set(batch.id, tr);
        body.append(tr);
      }
      board.oldest = board.oldest === null ? batch.id : Math.min(board.oldest, batch.id);
    }
    board.end = list.length < PAGE;
    more.textContent = board.end ? (board.rows.size ? `共 ${board.rows.size} 个批次` : emptyText()) : "向下滚动加载更多…";
    more.classList.toggle("muted", true);
    if (!board.firstDrawn) {
      board.firstDrawn = true;
      performance.mark("batches-first-rows");
      window.batchesFirstRows = performance.now();
      document.body.dataset.firstRows = String(board.rows.size);
    }
  } catch (err) {
    if (generation === board.generation) showError(err, more);
  } finally {
    board.loading = false;
  }
  // Still in view (a tall screen, a short page): the observer fires only on a change, so ask again.
  if (!board.end && generation === board.generation && inView($("#board-more"))) loadMore();
}

function inView(el) {
  const box = el.getBoundingClientRect();
  return box.top < innerHeight + 400 && box.bottom > 0;
}

function emptyText() {
  return board.tab.states ? `没有“${board.tab.label}”的批次。` : "还没有批次：把扫描好的文件夹放进收件箱，这里会自动出现。";
}

function chooseTab(tab, focus) {
  for (const b of $$(".board-tabs .tab")) {
    const on = b.dataset.tab === tab.key;
    b.setAttribute("aria-selected", String(on));
    b.tabIndex = on ? 0 : -1;
    if (on && focus) b.focus();
  }
  if (tab === board.tab) return;
  board.tab = tab;
  const url = new URL(location.href);
  if (tab.states) url.searchParams.set("state", tab.key); else url.searchParams.delete("state");
  history.replaceState(null, "", url);
  board.generation++;
  board.rows.clear();
  board.oldest = null;
  board.end = false;
  board.loading = false;
  clear($("#batch-rows"));
  $("#board-more").textContent = "正在加载…";
  loadMore();
}

const matches = (batch) => !board.tab.states || board.tab.states.includes(batch.state);

// ---- one row ------------------------------------------------------------------------------------------

function row(batch) {
  const tr = h("tr.batch", {
    tabindex: "0", dataset: { id: String(batch.id), state: batch.state },
    onclick: (e) => { if (!e.target.closest("a")) open(batch.id); },
  });
  fill(tr, batch);
  return tr;
}

function fill(tr, batch) {
  tr.dataset.state = batch.state;
  clear(tr,
    h("td.name", h("a", { href: `/batches/${batch.id}` }, batch.name), h("div.muted.small", `#${batch.id}`)),
    h("td.code", codeCell(batch)),
    h("td.state", h("span.badge." + batch.state, STATE[batch.state] || batch.state),
      batch.assembling ? h("div.muted.small", "正在生成 PDF") : null),
    h("td.progress-cell", progressCell(batch)),
    h("td.speed", speedCell(batch)),
    h("td.flags", flagsCell(batch)),
    h("td.problem", problemCell(batch)),
    h("td.time", fmtTime(batch.created_at)),
  );
}

function codeCell(batch) {
  if (batch.archival_code) {
    return h("a", { href: `/items/${enc(batch.archival_code)}`, title: "已归档：打开这件档案" }, batch.archival_code);
  }
  const filed = (batch.filing?.items || []).map((i) => i.archival_code || i.code).filter(Boolean);
  if (filed.length) return filed.map((c) => h("div", h("a", { href: `/items/${enc(c)}` }, c)));
  if (batch.filing?.target) return [h("span", batch.filing.target), h("div.muted.small", "待归档")];
  return h("span.muted", "未定");
}

function progressCell(batch) {
  const { total, done, failed } = batch.pages;
  const final = done + failed;
  const pct = total ? Math.round((final * 100) / total) : 0;
  const kind = batch.state === "failed" ? ".failed" : final === total && total ? ".done" : "";
  return [
    h("div.progress" + kind, {
      role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100", "aria-valuenow": String(pct),
      "aria-label": `已处理 ${final} / ${total} 页`,
    }, h("span", { style: { width: pct + "%" } })),
    h("div.small", total ? `${final} / ${total} 页` : batch.state === "receiving" ? "正在接收…" : "0 页"),
  ];
}

function speedCell(batch) {
  if (RUNNING.has(batch.state)) {
    if (!batch.pages_per_minute) return h("span.muted", batch.pages.done + batch.pages.failed ? "正在测速…" : "等待处理");
    return [
      h("div", `${batch.pages_per_minute} 页/分钟`),
      batch.seconds_left != null ? h("div.muted.small", `约剩 ${fmtDuration(batch.seconds_left)}`) : null,
    ];
  }
  if (batch.finished_at && batch.created_at) {
    const seconds = (new Date(batch.finished_at) - new Date(batch.created_at)) / 1000;
    return h("span.muted", `用时 ${fmtDuration(seconds)}`);
  }
  return h("span.muted", "—");
}

function flagsCell(batch) {
  const flags = FLAG_KINDS.filter((k) => batch.flags?.[k] > 0).map((k) => h(
    "span.badge.flag." + (k === "failed" ? "bad" : "warn"),
    { dataset: { flag: k, count: String(batch.flags[k]) }, title: `${batch.flags[k]} 页${FLAG[k]}` },
    `${FLAG[k]} ${batch.flags[k]}`,
  ));
  if (flags.length) return flags;
  return h("span.muted", RUNNING.has(batch.state) ? "" : "无");
}

function problemCell(batch) {
  const out = [];
  if (batch.pages.failed) out.push(h("div.error", `${batch.pages.failed} 页处理失败`));
  if (batch.error || batch.error_code) {
    const said = PROBLEM[batch.error_code] || (batch.state === "failed" ? "处理失败" : "需要查看");
    out.push(h("div.error", { title: batch.error || "" }, said,
      batch.duplicate_of ? [" ", h("a", { href: `/batches/${batch.duplicate_of}` }, `#${batch.duplicate_of}`)] : null));
  }
  for (const problem of batch.filing?.problems || []) {
    if (problem.code === "pages_failed" && batch.pages.failed) continue; // said above
    out.push(h("div.warn", { title: problem.message || "" }, PROBLEM[problem.code] || "需要处理后才能归档"));
  }
  if (!out.length && batch.state === "needs_review") out.push(h("div.warn", "标记待确认"));
  return out.length ? out : h("span.muted", "");
}

// ---- live: events mark rows, marked rows are asked for together -----------------------------------------

function onEvent(kind, event) {
  if (!event.batch_id) return;
  board.dirty.add(event.batch_id);
  refreshRows();
  if (kind === "batch_state") refreshStationSoon();
}

const refreshRows = throttle(async () => {
  const ids = [...board.dirty].slice(0, 200);
  ids.forEach((id) => board.dirty.delete(id));
  if (!ids.length) return;
  const generation = board.generation;
  let list;
  try {
    list = await api(`/api/batches?limit=200&${ids.map((id) => "ids=" + id).join("&")}`);
  } catch (err) {
    ids.forEach((id) => board.dirty.add(id)); // asked again with the next event
    showError(err);
    return;
  }
  if (generation !== board.generation) return;
  for (const batch of list) place(batch);
  if (board.dirty.size) refreshRows();
}, 1000);

// A batch as it is now: its row redrawn, or added where it belongs (newest first), or taken off the list
// when it no longer matches the tab.
function place(batch) {
  const tr = board.rows.get(batch.id);
  if (tr && !matches(batch)) {
    tr.remove();
    board.rows.delete(batch.id);
    return;
  }
  if (tr) { fill(tr, batch); return; }
  if (!matches(batch)) return;
  // Older than every row loaded while more are still to come: it will come with its page.
  if (!board.end && board.oldest !== null && batch.id < board.oldest) return;
  const fresh = row(batch);
  board.rows.set(batch.id, fresh);
  const after = $$("#batch-rows tr.batch").find((other) => Number(other.dataset.id) < batch.id);
  $("#batch-rows").insertBefore(fresh, after || null);
  if (board.end) $("#board-more").textContent = `共 ${board.rows.size} 个批次`;
  fresh.classList.add("new");
  setTimeout(() => fresh.classList.remove("new"), 3000);
}

// ---- the station panel ----------------------------------------------------------------------------------

function stationBox(id, label) {
  return h("div.station-box#" + id, h("span.label", label), h("span.value", "…"));
}

function setBox(id, value, cls = "", title = "") {
  const box = $("#" + id + " .value");
  box.textContent = value;
  box.className = "value " + cls;
  box.title = title;
}

let stationFailed = false;
async function refreshStation() {
  let status;
  try {
    status = await api("/api/station");
  } catch (err) {
    setBox("station-queue", "无法获取", "error", zhError(err));
    if (!stationFailed) showError(err);
    stationFailed = true;
    return;
  }
  stationFailed = false;
  board.station = status;
  const { queue, disk, batches } = status;
  if (!queue.redis) {
    setBox("station-queue", "队列服务连接不上", "error", "Redis 没有响应：页面不会被处理");
    setBox("station-workers", "—", "muted");
  } else {
    setBox("station-queue", `${queue.queued} 个等待` + (queue.running ? ` · ${queue.running} 个进行中` : "") +
      (queue.scheduled ? ` · ${queue.scheduled} 个稍后重试` : ""));
    setBox("station-workers", queue.workers ? `${queue.workers} 个在线 · ${queue.busy} 个忙` : "没有在线的工作进程",
      queue.workers ? "" : "error", queue.workers ? "" : "页面不会被处理：请检查工作站是否在运行");
  }
  const share = disk.total_bytes ? Math.round((disk.free_bytes * 100) / disk.total_bytes) : 0;
  setBox("station-disk", `剩余 ${fmtBytes(disk.free_bytes)}（${share}%）· 约可存 ${disk.pages_fit.toLocaleString("zh-CN")} 页`,
    disk.warning ? "error" : "", `${disk.path}，共 ${fmtBytes(disk.total_bytes)}；按每页约 3 MB 估算`);
  const banner = $("#disk-warning");
  banner.hidden = !disk.warning;
  if (disk.warning) {
    clear(banner, h("strong", "警告："), disk.pages_fit < 1
      ? "存档磁盘已满，新的批次无法归档。请立即清理空间或更换磁盘。"
      : `存档磁盘快满了：只剩 ${fmtBytes(disk.free_bytes)}，约还能存 ${disk.pages_fit.toLocaleString("zh-CN")} 页。` +
        "请尽快清理空间或更换更大的磁盘，磁盘满了将无法归档。");
  }
  for (const tab of TABS) {
    const n = tab.states ? tab.states.reduce((sum, s) => sum + (batches[s] || 0), 0)
      : Object.values(batches).reduce((sum, v) => sum + v, 0);
    const count = $(`#tab-${tab.key} .count`);
    if (count) count.textContent = String(n);
  }
}
const refreshStationSoon = throttle(refreshStation, 1000);

// ---- keys -------------------------------------------------------------------------------------------------

function onKey(e) {
  if (typing(e) || !noModifier(e)) return;
  const onTab = e.target.closest?.(".board-tabs .tab");
  const onRow = e.target.closest?.("tr.batch");
  if (e.key === "/") {
    e.preventDefault();
    $(".board-tabs .tab[aria-selected=true]").focus();
  } else if (/^[1-5]$/.test(e.key)) {
    chooseTab(TABS[Number(e.key) - 1], true);
  } else if (onTab && (e.key === "ArrowRight" || e.key === "ArrowLeft")) {
    e.preventDefault();
    const i = TABS.findIndex((t) => t.key === onTab.dataset.tab);
    chooseTab(TABS[(i + (e.key === "ArrowRight" ? 1 : TABS.length - 1)) % TABS.length], true);
  } else if (e.key === "ArrowDown" || e.key === "j") {
    e.preventDefault();
    moveRow(onRow, 1);
  } else if (e.key === "ArrowUp" || e.key === "k") {
    e.preventDefault();
    moveRow(onRow, -1);
  } else if (e.key === "Enter" && onRow && !e.target.closest("a")) {
    e.preventDefault();
    open(Number(onRow.dataset.id));
  }
}

function moveRow(from, step) {
  const rows = $$("#batch-rows tr.batch");
  if (!rows.length) return;
  const i = from ? rows.indexOf(from) + step : step > 0 ? 0 : rows.length - 1;
  const to = rows[Math.max(0, Math.min(rows.length - 1, i))];
  to.focus();
  to.scrollIntoView({ block: "nearest" });
}

function open(id) {
  location.assign(`/batches/${id}`);
}
