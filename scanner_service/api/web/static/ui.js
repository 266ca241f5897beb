// Shared by every screen: the API client (login cookie + CSRF token), errors in Chinese, the header,
// element building, labels, live events. No other host is ever asked for anything.

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.detail || `HTTP ${status}`);
    this.status = status;
    this.code = body?.error || "http_" + status;
    this.reason = body?.reason || null;
    this.detail = body?.detail || "";
    this.errors = body?.errors || [];
    this.part = body?.part || null;
  }
  get zh() { return zhError(this); }
}

let me = null; // the session: {name, kind, role, fonds, csrf_token}

// fetch the API. body: an object (sent as JSON), or a Blob/File/string sent as is with opts.type.
export async function api(path, opts = {}) {
  const method = (opts.method || (opts.body !== undefined ? "POST" : "GET")).toUpperCase();
  const headers = { Accept: "application/json", ...(opts.headers || {}) };
  let body = opts.body;
  if (body !== undefined && !(body instanceof Blob) && typeof body !== "string") {
    body = JSON.stringify(body);
    headers["Content-Type"] = "application/json";
  } else if (opts.type) {
    headers["Content-Type"] = opts.type;
  }
  if (method !== "GET" && method !== "HEAD" && me?.csrf_token) headers["X-CSRF-Token"] = me.csrf_token;
  let reply;
  try {
    reply = await fetch(path, { method, headers, body, credentials: "same-origin", signal: opts.signal });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, { error: "network", detail: String(err) });
  }
  if (reply.status === 401 && !opts.noRedirect) {
    goLogin();
    throw new ApiError(401, { error: "unauthorized", detail: "login needed" });
  }
  if (!reply.ok) {
    let data = null;
    try { data = await reply.json(); } catch (_) { /* not JSON */ }
    throw new ApiError(reply.status, data);
  }
  if (opts.raw) return reply;
  if (reply.status === 204) return null;
  const type = reply.headers.get("Content-Type") || "";
  return type.includes("json") ? reply.json() : reply.text();
}

export function goLogin() {
  const here = location.pathname + location.search + location.hash;
  if (location.pathname !== "/login") location.assign("/login?next=" + encodeURIComponent(here));
}

// ---- errors in Chinese ---------------------------------------------------------------------------

const ERRORS = {
  network: "连接不上工作站，请检查网络或工作站是否在运行。",
  unauthorized: "请先登录。",
  forbidden: "您的账号没有这项权限。",
  csrf: "页面已过期，请刷新后再试。",
  not_found: "找不到，或您无权查看。",
  invalid_request: "填写的内容有误。",
  invalid_archival_code: "档号格式不对。",
  account_locked: "登录失败次数过多，账号已暂时锁定，请稍后再试。",
  stale_version: "这一页刚被别人改过，已为您刷新，请再操作一次。",
  batch_busy: "批次正在生成 PDF 或归档，请稍候几秒再试。",
  filing_refused: "无法归档。",
  catalogue_import: "目录文件有错误，未导入任何一行。",
  conflict: "与现有内容冲突。",
  too_many_requests: "操作太频繁，请稍后再试。",
  unusable_input: "提交的内容无法使用。",
  bad_query: "检索词无法使用，请换个写法。",
  disk_full: "存档磁盘已满：请腾出空间后再试。",
  read_only: "存档磁盘只读，无法写入：请联系管理员。",
  storage: "存档磁盘读写出错：请联系管理员。",
  catalogue_busy: "目录数据库正忙，请稍后再试。",
  filing_interrupted: "上一次归档中途停止，正在撤回：请稍后再试。",
};
const REASONS = {
  bad_login: "用户名或密码不对。",
  session_expired: "登录已过期，请重新登录。",
  session_ended: "登录已结束，请重新登录。",
  csrf: "页面已过期，请刷新后再试。",
  stale_version: "这一页刚被别人改过，已为您刷新，请再操作一次。",
  item_changed: "这件档案刚被别人改过，已为您刷新，请再操作一次。",
  batch_busy: "批次正在生成 PDF 或归档，请稍候几秒再试。",
  item_busy: "这件档案正在重新生成，请稍候几秒再试。",
  page_queued: "这一页正在重新处理，请稍候。",
  pages_not_done: "批次还有页面没处理完，请稍候。",
  open_flags: "还有未处理的标记：请先逐页更正或确认。",
  item_has_pages: "这个档号已有页面：请选择追加、插入或替换。",
  page_count_mismatch: "页数与目录登记的页数不符（漏扫或多扫）。",
  count_mismatch: "页数与目录登记的页数不符（漏扫或多扫）。",
  page_already_filed: "有页面已归档，不能再归一次。",
  page_filed: "这一页已归档。",
  discarded: "批次已作废。",
  not_a_catalogue: "请上传 .csv 或 .xlsx 文件。",
  catalogue_import: "目录文件有错误，未导入任何一行。",
  invalid_archival_code: "档号格式不对。",
  weak_password: "密码太短：请至少用 8 个字符。",
  bad_name: "用户名不可用。",
  disabled: "账号已停用。",
  bad_crop: "裁切框超出了页面。",
  bad_order: "页序不完整：每一页都要出现一次。",
  bad_split: "分件有误：每一页只能归入一件。",
  same_item: "源和目标是同一件。",
  page_not_ready: "这一页还没处理完，请稍候。",
  page_failed: "这一页处理失败。",
  original_set_aside: "原件已移入隔离区。",
  original_unreadable: "原件无法显示。",
  too_large: "图像太大，无法显示。",
  damaged_file: "文件已损坏，无法读取：请联系管理员（scanstation audit）。",
  not_processed: "这一页还没处理完，暂时不能转向。",
  no_pages: "批次没有可以归档的页面。",
  bad_mode: "归档方式不对。",
  bad_position: "插入或替换的页码不对。",
  bad_pages: "页码不完整：每一页都要出现一次。",
  own_account: "不能停用自己的账号或更改自己的角色、全宗：请另一位管理员操作。",
  admin_fonds: "管理员不限全宗：请清空全宗，或改为档案员。",
  bad_years: "年度写法不对：写一个年度（2013）或一个范围（1998-2013）。",
  bad_volume_size: "分卷大小写法不对：写 CD、DVD，或如 650M、4.7G 的大小。",
  disc_failed: "光盘映像（ISO）没有做成：请查看工作站日志后重试。",
  nothing_to_export: "没有可导出的档案：所选范围内没有已归档的开放档案。",
  iso_inside: "光盘映像（ISO）不能放在导出文件夹里面。",
};

export function zhError(err) {
  if (!(err instanceof ApiError)) return "出错了：" + String(err?.message || err);
  const base = REASONS[err.reason] || REASONS[err.code] || ERRORS[err.code] ||
    (err.status >= 500 ? "工作站内部出错，请联系管理员。" : "操作未完成。");
  // The station's own sentence (English) is kept after the Chinese one: it names the page, the file, the field.
  return err.detail && !base.includes(err.detail) ? `${base}（${err.detail}）` : base;
}

// ---- elements ------------------------------------------------------------------------------------

// h("div.card#x", {onclick, title, dataset: {…}}, child, …): children are nodes, strings, arrays or null.
export function h(spec, attrs, ...children) {
  if (attrs === null || typeof attrs !== "object" || attrs instanceof Node || Array.isArray(attrs)) {
    children.unshift(attrs);
    attrs = {};
  }
  const [, tag, rest] = spec.match(/^([a-z0-9-]*)(.*)$/i);
  const el = document.createElement(tag || "div");
  for (const m of rest.matchAll(/([.#])([^.#]+)/g)) {
    if (m[1] === ".") el.classList.add(m[2]); else el.id = m[2];
  }
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "class") el.className = v;
    else if (k === "style" && typeof v === "object") Object.assign(el.style, v);
    else if (k in el && typeof v !== "string") el[k] = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : String(c));
  }
}

export function clear(el, ...children) { el.replaceChildren(); append(el, children); return el; }
export const $ = (sel, root = document) => root.querySelector(sel);
export const $$ = (sel, root = document) => [...root.querySelectorAll(sel)];

export function toast(text, kind = "info", ms = 5000) {
  const box = $("#toasts");
  const t = h("div.toast." + kind, { role: kind === "error" ? "alert" : "status" }, text);
  box.append(t);
  setTimeout(() => t.remove(), ms);
  return t;
}

export function showError(err, where) {
  const text = zhError(err);
  if (where) clear(where, h("p.error", { role: "alert" }, text));
  else toast(text, "error", 9000);
  return text;
}

// ---- labels --------------------------------------------------------------------------------------

export const STATE = {
  receiving: "接收中", queued: "排队中", processing: "处理中", done: "完成",
  needs_review: "待审核", failed: "失败", discarded: "已作废",
};
export const PAGE_STATE = { queued: "排队中", processing: "处理中", done: "完成", failed: "失败" };
export const FLAG = {
  blank: "空白", orientation_unsure: "方向不确定", low_confidence: "低置信度",
  low_resolution: "分辨率不足", resolution_mismatch: "分辨率不符", page_count_mismatch: "页数不符",
  failed: "失败", separator: "分隔页",
};
export const ROLE = { admin: "管理员", archivist: "档案员", operator: "操作员", reader: "查阅者" };
// What the 利用登记 says was done (its action codes), in one wording for every screen that lists it.
export const ACCESS_ACTION = {
  pdf: "下载 PDF", page_text: "查看文字", page_hocr: "查看文字位置", page_image: "查看图像", thumbnail: "缩略图", export: "离线导出（送档下乡）", transfer: "移交",
};

// A single-key shortcut applies unless the person is typing in a field.
export function typing(event) {
  const el = event.target;
  return el instanceof HTMLElement && (el.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(el.tagName));
}
export const noModifier = (e) => !e.ctrlKey && !e.metaKey && !e.altKey;
export const isStaff = (who) => ["admin", "archivist", "operator"].includes(who?.role);
export const isArchivist = (who) => ["admin", "archivist"].includes(who?.role);

export function fmtTime(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}`;
}
export function fmtBytes(n) {
  if (n == null) return "";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}
export function fmtDuration(seconds) {
  if (!isFinite(seconds) || seconds < 0) return "—";
  if (seconds < 60) return `${Math.ceil(seconds)} 秒`;
  const m = Math.round(seconds / 60);
  return m < 60 ? `${m} 分钟` : `${Math.floor(m / 60)} 小时 ${m % 60} 分`;
}
export const enc = encodeURIComponent;

// ---- the header and the start of every screen ----------------------------------------------------

const NAV = [
  ["/batches", "批次", isStaff],
  ["/archive", "档案", () => true],
  ["/search", "检索", () => true],
  ["/import", "目录导入", isArchivist],
  ["/admin", "管理", isArchivist],
];

export async function session() {
  if (me) return me;
  me = await api("/api/session");
  return me;
}
export const whoami = () => me;

function header(who) {
  const here = location.pathname;
  const links = NAV.filter(([, , may]) => may(who)).map(([href, label]) =>
    h("a", { href, "aria-current": here === href || here.startsWith(href + "/") ? "page" : null }, label));
  const logout = h("button.link#logout", { type: "button", onclick: async () => {
    try { await api("/api/session", { method: "DELETE", noRedirect: true }); } catch (_) { /* gone already */ }
    location.assign("/login");
  } }, "退出");
  return [
    h("a.brand", { href: "/" }, "扫描工作站"),
    h("nav", links),
    h("span.who", `${who.name}（${ROLE[who.role] || who.role}${who.fonds.length ? " · " + who.fonds.join("、") : ""}）`),
    logout,
  ];
}

// Every screen but the login: the session (or off to the login), the header, then render(who, main, ahead).
// staffOnly / archivistOnly screens tell a person without the role so, instead of an empty page.
// ahead: a request the screen needs first, sent beside the session's instead of after it; render awaits
// the promise it is handed (its error, if any, is thrown there).
export async function start(render, { staffOnly = false, archivistOnly = false, ahead = null } = {}) {
  const main = $("#app");
  const first = ahead && ahead();
  first?.catch(() => {}); // not "unhandled" while the session is asked: render awaits it, and sees its error
  let who;
  try { who = await session(); } catch (err) {
    if (err.status !== 401) showError(err, main);
    return;
  }
  clear($("#top"), header(who));
  if ((staffOnly && !isStaff(who)) || (archivistOnly && !isArchivist(who))) {
    if (location.pathname === "/batches" && !isStaff(who)) { location.replace("/archive"); return; }
    clear(main, h("p.error", { role: "alert" }, "您的账号没有这项权限。"));
    return;
  }
  try { await render(who, main, first); } catch (err) { showError(err, main); }
}

// ---- live events (SSE) ---------------------------------------------------------------------------

// Calls onEvent(kind, data) for every event the caller may see, from now on; the browser reconnects by
// itself (Last-Event-ID). onState(open: bool) tells the screen whether it is live. Every tab shares one
// stream (stream-worker.js): one per tab would take all six connections a browser allows to one host.
export function liveEvents(onEvent, kinds, onState = () => {}) {
  // A page shown again from the back/forward cache missed what happened meanwhile: it is loaded afresh.
  addEventListener("pageshow", (e) => { if (e.persisted) location.reload(); });
  if (typeof SharedWorker === "function") {
    const wanted = new Set(kinds);
    // One shared stream per login, never across logins: a stream is opened with the cookie of the login that
    // started it, which stays valid after another person logs in at the same browser; a tab of the new login
    // joined to it would be handed the events of the first person's fonds.
    const port = new SharedWorker("/static/stream-worker.js", { name: "scanstation-stream-" + loginKey() }).port;
    port.onmessage = (m) => {
      const { state, kind, data } = m.data || {};
      if (state !== undefined) { onState(state); return; }
      if (!wanted.has(kind)) return;
      let event;
      try { event = JSON.parse(data); } catch (_) { return; }
      onEvent(kind, event);
    };
    port.start();
    port.postMessage({ kinds });
    addEventListener("pagehide", () => port.postMessage({ bye: true }));
    return port;
  }
  const source = new EventSource("/api/stream");
  for (const kind of kinds) {
    source.addEventListener(kind, (e) => {
      let data;
      try { data = JSON.parse(e.data); } catch (_) { return; }
      onEvent(kind, data);
    });
  }
  source.onopen = () => onState(true);
  source.onerror = () => onState(false);
  addEventListener("pagehide", () => source.close());
  return source;
}

// Names this tab's login (not the person: a person may log in again with other fonds), without the CSRF
// token itself appearing where the browser lists its workers.
function loginKey() {
  const text = `${me?.name}|${me?.role}|${me?.fonds}|${me?.csrf_token}`;
  let a = 0x811c9dc5, b = 0x01000193;
  for (let i = 0; i < text.length; i++) {
    a = Math.imul(a ^ text.charCodeAt(i), 0x01000193) >>> 0;
    b = Math.imul(b ^ text.charCodeAt(i), 0x5bd1e995) >>> 0;
  }
  return a.toString(36) + b.toString(36);
}

// Run fn at most once per ms (the last call wins): for redraws driven by bursts of events.
export function throttle(fn, ms) {
  let timer = null, again = false;
  return (...args) => {
    if (timer) { again = true; return; }
    fn(...args);
    timer = setTimeout(() => { timer = null; if (again) { again = false; fn(...args); } }, ms);
  };
}

export function debounce(fn, ms) {
  let timer = null;
  return (...args) => { clearTimeout(timer); timer = setTimeout(() => fn(...args), ms); };
}
