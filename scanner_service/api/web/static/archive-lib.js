// What the archive screens share (档案, 档案详情, 检索): labels of the standard's terms, badges, links, the
// snippet of a search hit as DOM nodes, and the keyboard rule (no single-key shortcut while typing).
import { h, enc } from "./ui.js";

// 门类 codes (DA/T 22-2015 and local ones): the label an archivist reads beside the code.
export const CATEGORY = {
  WS: "文书", KJ: "会计", KU: "会计", ZP: "照片", LY: "录音", LX: "录像", SW: "实物", TD: "土地承包",
  JJ: "基建", SB: "设备", KY: "科研", DZ: "电子", HJ: "户籍", SX: "声像",
};
export const RETENTION = { Y: "永久", D30: "30 年", D10: "10 年" };
export const categoryLabel = (code) => (CATEGORY[code] ? `${code} ${CATEGORY[code]}` : code);

// The item screen at one page (its number in the PDF, as a search hit and the PDF viewer count it).
export function itemHref(code, page, query) {
  const params = new URLSearchParams();
  if (page) params.set("page", page);
  if (query) params.set("q", query);
  const tail = params.toString();
  return `/items/${enc(code)}${tail ? "?" + tail : ""}`;
}
export const apiItem = (code) => `/api/items/${enc(code)}`;

// 页数核对 of an item: 漏扫 / 多扫 against 页数, 相符, or why there is nothing to check.
export function pageCheckBadge(item) {
  if (item.page_check === "missing_pages") {
    return h("span.badge.bad.page-check", { title: `目录登记 ${item.pages} 页，已扫描 ${item.pages_filed} 页` }, "漏扫");
  }
  if (item.page_check === "extra_pages") {
    return h("span.badge.warn.page-check", { title: `目录登记 ${item.pages} 页，已扫描 ${item.pages_filed} 页` }, "多扫");
  }
  if (!item.pages_filed) return h("span.badge.page-check", "未扫描");
  if (item.pages == null) return h("span.badge.page-check", { title: "目录未登记页数" }, "未登记页数");
  return h("span.badge.ok.page-check", "相符");
}

// 密级 and 开放标识: what decides whether a reader may open the item.
export function accessBadges(item) {
  const out = [];
  if (item.classification) out.push(h("span.badge.bad", item.classification));
  out.push(item.open_status === "开放"
    ? h("span.badge.ok", "开放")
    : h("span.badge.warn", { title: "未标为开放：查阅者需经档案员授权才能看到" }, item.open_status || "未开放"));
  return out;
}

// A search snippet is HTML from the station: its text escaped, the matches in <mark>. Rebuilt here as text
// nodes and <mark> elements, so nothing in it is ever parsed as markup.
const ENTITIES = { "&amp;": "&", "&lt;": "<", "&gt;": ">", "&quot;": '"', "&#x27;": "'", "&#39;": "'" };
const unescape = (s) => s.replace(/&(amp|lt|gt|quot|#x27|#39);/g, (m) => ENTITIES[m]);
export function snippetNodes(snippet) {
  const nodes = [];
  const parts = String(snippet || "").split(/(<mark>|<\/mark>)/);
  let marked = false;
  for (const part of parts) {
    if (part === "<mark>") marked = true;
    else if (part === "</mark>") marked = false;
    else if (part) nodes.push(marked ? h("mark", unescape(part)) : unescape(part));
  }
  return nodes;
}

// The words of a query marked in a plain text (the page's OCR text), as nodes. Spaces and line breaks that
// OCR put between characters do not hide a match, as in the station's search.
export function markWords(text, query) {
  const words = String(query || "").split(/\s+/).filter(Boolean);
  if (!words.length) return [text];
  const pattern = words
    .map((w) => [...w].map((c) => c.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join("\\s*"))
    .join("|");
  const re = new RegExp(`(${pattern})`, "giu");
  const nodes = [];
  let last = 0;
  for (const m of text.matchAll(re)) {
    if (m.index > last) nodes.push(text.slice(last, m.index));
    nodes.push(h("mark", m[0]));
    last = m.index + m[0].length;
  }
  nodes.push(text.slice(last));
  return nodes;
}

export { typing, noModifier, ACCESS_ACTION as ACTION } from "./ui.js";

// The keys of a screen, shown on it: [["←", "上一页"], …].
export function keyHints(pairs) {
  return h("p.keys.muted", pairs.map(([key, what]) => h("span", h("kbd", key), " ", what)));
}

