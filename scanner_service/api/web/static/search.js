// 检索: one box and the filters 全宗, 门类, 年度; hits with their snippet, 档号, 题名 and page, 20 at a time.
// A hit opens the item at its page. The search is in the URL (?q=&fonds=&category=&year=&p=).
import { start, api, h, clear, $, $$, showError } from "./ui.js";
import { CATEGORY, categoryLabel, itemHref, snippetNodes, keyHints, typing, noModifier } from "./archive-lib.js";

const PER_PAGE = 20;
const SEARCHABLE = /[\p{L}\p{N}]/u;

start(async (who, main) => {
  const params = new URLSearchParams(location.search);
  const box = h("input#q", {
    type: "search", name: "q", value: params.get("q") || "", maxLength: 200, autocomplete: "off",
    placeholder: "姓名、地名、文号……", "aria-label": "检索内容",
  });
  const fonds = h("select#fonds", { name: "fonds", "aria-label": "全宗" }, h("option", { value: "" }, "全部全宗"));
  const category = h("select#category", { name: "category", "aria-label": "门类" },
    h("option", { value: "" }, "全部门类"),
    Object.keys(CATEGORY).map((c) => h("option", { value: c }, categoryLabel(c))));
  const year = h("input#year", {
    name: "year", inputMode: "numeric", maxLength: 4, placeholder: "年度", "aria-label": "年度", size: 6,
    value: params.get("year") || "",
  });
  const yearError = h("span.field-error#year-error", { role: "alert" });
  const results = h("section#results", { "aria-live": "polite" });
  const form = h("form.search-form", { role: "search", onsubmit: (e) => { e.preventDefault(); go(1); } },
    box, fonds, category, h("span.year-field", year, yearError), h("button.primary", { type: "submit" }, "检索"));
  clear(main, h("h1", "检索"), form, results,
    keyHints([["/", "输入检索词"], ["↑ ↓", "选择结果"], ["Enter", "打开"], ["← →", "翻页"], ["Esc", "回到检索框"]]));

  // The fonds the caller may see; a chosen category that is not a standard code is kept as an option.
  try {
    for (const f of await api("/api/fonds")) {
      fonds.append(h("option", { value: f.code }, f.name ? `${f.code} ${f.name}` : f.code));
    }
  } catch (err) { showError(err); }
  const wanted = (params.get("category") || "").toUpperCase();
  if (wanted && !CATEGORY[wanted]) category.append(h("option", { value: wanted }, wanted));
  category.value = wanted;
  const wantedFonds = (params.get("fonds") || "").toUpperCase();
  if (wantedFonds && ![...fonds.options].some((o) => o.value === wantedFonds)) {
    fonds.append(h("option", { value: wantedFonds }, wantedFonds));
  }
  fonds.value = wantedFonds;

  function go(page) {
    const y = year.value.trim();
    const wrongYear = y && !(/^\d{4}$/.test(y) && Number(y) >= 1900 && Number(y) <= 2100);
    yearError.textContent = wrongYear ? "年度请填 1900 到 2100 之间的四位数。" : "";
    year.setAttribute("aria-invalid", wrongYear ? "true" : "false");
    if (wrongYear) { year.focus(); return; }
    const s = new URLSearchParams();
    if (box.value.trim()) s.set("q", box.value.trim());
    if (fonds.value) s.set("fonds", fonds.value);
    if (category.value) s.set("category", category.value);
    if (y) s.set("year", y);
    if (page > 1) s.set("p", page);
    history.pushState(null, "", `/search${s.toString() ? "?" + s : ""}`);
    run();
  }

  let pending = null;
  async function run() {
    const s = new URLSearchParams(location.search);
    const q = (s.get("q") || "").trim();
    const page = Math.max(1, Number(s.get("p")) || 1);
    box.value = q;
    if (!q) {
      clear(results, h("p.empty", "输入要找的字词，例如一个姓名，按 Enter 检索。"));
      return;
    }
    if (!SEARCHABLE.test(q)) {
      clear(results, h("p.empty", "请输入文字或数字：只有标点符号无法检索。"));
      return;
    }
    pending?.abort();
    pending = new AbortController();
    const query = new URLSearchParams({ q, limit: PER_PAGE, offset: (page - 1) * PER_PAGE });
    for (const k of ["fonds", "category", "year"]) if (s.get(k)) query.set(k, s.get(k));
    clear(results, h("p.muted", "正在检索…"));
    let found;
    try {
      found = await api(`/api/search?${query}`, { signal: pending.signal });
    } catch (err) {
      if (err.name !== "AbortError") showError(err, results);
      return;
    }
    render(found, q, page);
  }

  function render(found, q, page) {
    if (!found.total) {
      clear(results, h("p.empty#no-hits", `没有找到“${q}”。`,
        h("span.muted", " 请检查用字，或放宽全宗、门类、年度的范围。")));
      return;
    }
    const pages = Math.ceil(found.total / PER_PAGE);
    const list = h("ol.hits#hits", { start: (page - 1) * PER_PAGE + 1 }, found.hits.map((hit) => {
      const filed = Boolean(hit.archival_code);
      const href = filed ? itemHref(hit.archival_code, hit.page, q) : `/batches/${hit.batch_id}`;
      return h("li.hit",
        h("a.hit-link", { href, dataset: { code: hit.archival_code || "", page: hit.page } },
          h("span.hit-head",
            h("span.code", filed ? hit.archival_code : `批次 ${hit.batch_id}（未归档）`),
            h("span.hit-title", hit.title || ""),
            h("span.badge.hit-page", `第 ${hit.page} 页`)),
          h("span.snippet", snippetNodes(hit.snippet))));
    }));
    const pager = pages > 1 ? h("div.pager",
      h("button#prev-page", { type: "button", disabled: page <= 1, onclick: () => go(page - 1) }, "← 上一页"),
      h("span.muted", `第 ${page} / ${pages} 页`),
      h("button#next-page", { type: "button", disabled: page >= pages, onclick: () => go(page + 1) }, "下一页 →"))
      : null;
    clear(results, h("p.muted#hit-count", `找到 ${found.total} 处`), list, pager);
  }

  addEventListener("popstate", run);
  addEventListener("keydown", (e) => {
    if (!noModifier(e)) return;
    const hits = $$("#hits a.hit-link");
    const at = hits.indexOf(document.activeElement);
    // "/" to the box; in the box still empty (it has the focus when the screen opens) it types nothing.
    if (e.key === "/" && (!typing(e) || (document.activeElement === box && !box.value))) {
      e.preventDefault();
      box.focus();
      box.select();
    } else if (e.key === "Escape") {
      box.focus();
    } else if (e.key === "ArrowDown" && (at >= 0 || document.activeElement === box) && hits.length) {
      e.preventDefault();
      hits[Math.min(hits.length - 1, at + 1)].focus();
    } else if (e.key === "ArrowUp" && at >= 0) {
      e.preventDefault();
      (at === 0 ? box : hits[at - 1]).focus();
    } else if ((e.key === "ArrowLeft" || e.key === "ArrowRight") && !typing(e)) {
      const pager = $(e.key === "ArrowLeft" ? "#prev-page" : "#next-page");
      if (pager && !pager.disabled) { e.preventDefault(); pager.click(); }
    }
  });
  await run();
  if (!$("#hits")) box.focus();
});
