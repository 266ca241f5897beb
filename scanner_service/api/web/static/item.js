// 档案详情: one 件. Its DA/T 18 description in a form (archivists change it, each field checked as the API
// checks it), its pages as thumbnails, a page viewer (image and text, ← →), the PDF at the page shown, the
// page-count check and, for archivists, its 利用登记. The page shown is in the URL: ?page=N is its number
// in the PDF (as a search hit and the PDF viewer count), ?seq=S a page left out of the PDF.
import {
  start, api, h, clear, $, $$, toast, showError, zhError, ApiError, isArchivist, isStaff,
  fmtTime, enc, ROLE, FLAG, PAGE_STATE,
} from "./ui.js";
import {
  categoryLabel, RETENTION, apiItem, pageCheckBadge, accessBadges, markWords, keyHints, typing, noModifier, ACTION,
} from "./archive-lib.js";

// The fields PUT /api/items/{code} takes, with the API's own limits (ItemDescription).
const FIELDS = [
  { name: "title", label: "题名", max: 2000, area: true, wide: true },
  { name: "author", label: "责任者", max: 500 },
  { name: "date", label: "日期", max: 40, hint: "如 20130512" },
  { name: "doc_number", label: "文件编号", max: 200 },
  { name: "serial", label: "序号", int: [1, 999999] },
  { name: "pages", label: "页数", int: [1, 9999] },
  { name: "classification", label: "密级", max: 20, list: ["秘密", "机密", "绝密"], hint: "不涉密请留空" },
  { name: "open_status", label: "开放标识", max: 20, list: ["开放", "控制"] },
  { name: "note", label: "附注", max: 10000, area: true, wide: true },
];
const BY_NAME = Object.fromEntries(FIELDS.map((f) => [f.name, f]));

// The check of one field's text, as the API makes it; null when it passes.
function checkField(field, text) {
  if (text.includes("\u0000")) return "不能含有控制字符。";
  if (field.int) {
    if (text === "") return null;
    const [lo, hi] = field.int;
    if (!/^\d+$/.test(text) || Number(text) < lo || Number(text) > hi) return `请填 ${lo} 到 ${hi} 之间的整数。`;
    return null;
  }
  if ([...text].length > field.max) return `最多 ${field.max} 个字，现在 ${[...text].length} 个。`;
  return null;
}

// A 422 of the API for one field, in Chinese.
function apiFieldError(field, issue) {
  const type = issue.type || "";
  if (type.startsWith("int") || type.includes("greater") || type.includes("less")) {
    return field.int ? `请填 ${field.int[0]} 到 ${field.int[1]} 之间的整数。` : "请填整数。";
  }
  if (type === "string_too_long") return `最多 ${field.max} 个字。`;
  if (type === "string_pattern_mismatch") return "不能含有控制字符。";
  if (type === "string_type") return "请填文字。";
  return `填写有误（${issue.msg}）。`;
}

const fieldValue = (item, name) => (item[name] ?? "") === "" ? "" : String(item[name]);

start(async (who, main) => {
  const code = decodeURIComponent(location.pathname.slice("/items/".length));
  let item;
  try {
    item = await api(apiItem(code));
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) {
      clear(main, h("h1", "档案详情"),
        h("p.error#not-found", { role: "alert" }, `找不到或无权查看这件档案：${code}`),
        h("p", h("a", { href: "/archive" }, "返回档案"), " · ", h("a", { href: "/search" }, "检索")));
      return;
    }
    throw err;
  }
  const query = new URLSearchParams(location.search).get("q") || "";
  const screen = new ItemScreen(who, main, item, query);
  screen.render();
});

class ItemScreen {
  constructor(who, main, item, query) {
    this.who = who;
    this.main = main;
    this.item = item;
    this.query = query;
    this.editable = isArchivist(who);
    this.current = this.pageFromUrl();
    this.textRequest = null;
  }

  get base() { return apiItem(this.item.archival_code); }

  // The page the URL names, or the first page.
  pageFromUrl() {
    const params = new URLSearchParams(location.search);
    const pages = this.item.page_list;
    const n = Number(params.get("page"));
    const seq = Number(params.get("seq"));
    return pages.find((p) => n && p.pdf_page === n) || pages.find((p) => seq && p.page === seq) || pages[0] || null;
  }

  pdfHref(page) {
    const at = page?.pdf_page;
    return `${this.base}/pdf${at ? `#page=${at}` : ""}`;
  }

  render() {
    const item = this.item;
    this.head = h("div.item-head");
    this.describe = h("section.card.describe#describe");
    this.check = h("section.card#page-check");
    this.viewer = h("section.card.viewer#viewer");
    this.strip = h("div.thumbs#thumbs", { role: "listbox", "aria-label": "页面" });
    const side = [this.describe, this.check];
    if (this.editable) {
      this.log = h("section.card#access-log");
      side.push(this.log);
    }
    clear(this.main, this.head,
      h("div.item-layout", h("div.item-side", side), h("div.item-main", this.viewer, this.strip)),
      keyHints([["←", "上一页"], ["→", "下一页"], ["P", "打开 PDF"], ["Ctrl+Enter", "保存著录"]]));
    this.renderHead();
    this.renderDescription();
    this.renderCheck();
    this.renderThumbs();
    this.show(this.current, { push: false });
    if (this.log) this.renderLog();
    addEventListener("keydown", (e) => this.onKey(e));
    addEventListener("popstate", () => this.show(this.pageFromUrl(), { push: false }));
  }

  renderHead() {
    const item = this.item;
    clear(this.head,
      h("p.crumbs", h("a", { href: "/archive" }, "档案"), h("span.sep", "›"),
        h("a", { href: `/archive?fonds=${enc(item.fonds)}` }, `全宗 ${item.fonds}`), h("span.sep", "›"),
        h("a", { href: `/archive?fonds=${enc(item.fonds)}&category=${enc(item.category)}` }, categoryLabel(item.category)),
        h("span.sep", "›"),
        h("a", { href: `/archive?fonds=${enc(item.fonds)}&category=${enc(item.category)}&year=${item.year}` },
          `${item.year} 年度`)),
      h("h1", h("span.code#item-code", item.archival_code), " ", h("span#item-title", item.title || "（无题名）")),
      h("div.row", pageCheckBadge(item), accessBadges(item),
        h("span.muted", `已扫描 ${item.pages_filed} 页${item.pages != null ? ` · 目录登记 ${item.pages} 页` : ""}`),
        item.filed_at ? h("span.muted", `归档于 ${fmtTime(item.filed_at)}`) : null));
  }

  // ---- the description ---------------------------------------------------------------------------

  renderDescription() {
    const item = this.item;
    const fixed = [
      ["档号", item.archival_code], ["全宗号", item.fonds], ["门类", categoryLabel(item.category)],
      ["年度", item.year], ["保管期限", RETENTION[item.retention] || item.retention],
      ["机构（问题）", item.org || "—"], [item.volume ? "案卷号 / 件号" : "件号",
        item.volume ? `${item.volume} / ${item.item}` : item.item],
    ];
    this.inputs = {};
    const fields = FIELDS.map((f) => {
      const id = `f-${f.name}`;
      const attrs = {
        id, name: f.name, value: fieldValue(item, f.name), readOnly: !this.editable,
        "aria-describedby": `${id}-error`,
        oninput: () => this.setError(f.name, checkField(f, this.inputs[f.name].value.trim())),
      };
      let input;
      if (f.area) input = h("textarea", { ...attrs, rows: f.name === "title" ? 2 : 2 });
      else if (f.int) input = h("input", { ...attrs, inputMode: "numeric", autocomplete: "off" });
      else input = h("input", { ...attrs, autocomplete: "off", list: f.list ? `${id}-list` : null });
      if (f.area) input.value = fieldValue(item, f.name);
      this.inputs[f.name] = input;
      return h(`label.field${f.wide ? ".wide" : ""}`, { for: id },
        h("span.field-label", f.label, f.hint ? h("span.muted", `（${f.hint}）`) : null),
        input,
        f.list ? h("datalist", { id: `${id}-list` }, f.list.map((v) => h("option", { value: v }))) : null,
        h("span.field-error", { id: `${id}-error`, role: "alert" }));
    });
    this.status = h("p.form-status", { role: "status" });
    const save = this.editable
      ? h("div.row", h("button.primary#save", { type: "submit" }, "保存著录"), h("kbd", "Ctrl+Enter"), this.status)
      : h("p.muted", "只有档案员可以修改著录。");
    this.form = h("form#describe-form", { novalidate: true, onsubmit: (e) => { e.preventDefault(); this.save(); } },
      h("dl.fixed", fixed.map(([k, v]) => [h("dt", k), h("dd", String(v))])),
      h("div.fields", fields),
      save);
    clear(this.describe, h("h2", "著录项（DA/T 18）"), this.form);
  }

  setError(name, text) {
    const input = this.inputs[name];
    input.setAttribute("aria-invalid", text ? "true" : "false");
    $(`#f-${name}-error`).textContent = text || "";
  }

  // Only the fields changed are sent; an emptied field is sent as null (cleared).
  async save() {
    if (!this.editable) return;
    const body = {};
    let wrong = null;
    for (const f of FIELDS) {
      const text = this.inputs[f.name].value.trim();
      const problem = checkField(f, text);
      this.setError(f.name, problem);
      if (problem) { wrong = wrong || f.name; continue; }
      if (text === fieldValue(this.item, f.name)) continue;
      body[f.name] = text === "" ? null : f.int ? Number(text) : text;
    }
    if (wrong) {
      this.status.textContent = "有填写错误，请按提示改正后再保存。";
      this.status.className = "form-status error";
      this.inputs[wrong].focus();
      return;
    }
    if (!Object.keys(body).length) {
      this.status.textContent = "没有改动。";
      this.status.className = "form-status muted";
      return;
    }
    const button = $("#save");
    button.disabled = true;
    try {
      const updated = await api(this.base, { method: "PUT", body });
      this.item = { ...updated };
      this.renderHead();
      this.renderDescription();
      this.renderCheck();
      $("#save").focus();
      this.status.textContent = `已保存（${fmtTime(updated.updated_at)}）。`;
      this.status.className = "form-status ok";
      toast("著录已保存。", "ok");
    } catch (err) {
      this.status.className = "form-status error";
      const issues = (err instanceof ApiError && err.errors) || [];
      let placed = false;
      for (const issue of issues) {
        const name = Array.isArray(issue.loc) ? issue.loc[issue.loc.length - 1] : null;
        if (BY_NAME[name]) {
          this.setError(name, apiFieldError(BY_NAME[name], issue));
          placed = true;
        }
      }
      this.status.textContent = placed ? "有填写错误，请按提示改正后再保存。" : zhError(err);
    } finally {
      if ($("#save")) $("#save").disabled = false;
    }
  }

  // ---- page-count check ------------------------------------------------------------------------------

  renderCheck() {
    const item = this.item;
    let text;
    if (!item.pages_filed) text = "尚未扫描，没有页面。";
    else if (item.pages == null) text = `已扫描 ${item.pages_filed} 页；目录未登记页数，无法核对。`;
    else if (item.page_check === "missing_pages") {
      text = `目录登记 ${item.pages} 页，只扫描了 ${item.pages_filed} 页：漏扫 ${item.pages - item.pages_filed} 页，请补扫。`;
    } else if (item.page_check === "extra_pages") {
      text = `目录登记 ${item.pages} 页，扫描了 ${item.pages_filed} 页：多扫 ${item.pages_filed - item.pages} 页，请核对。`;
    } else text = `目录登记 ${item.pages} 页，已扫描 ${item.pages_filed} 页，相符。`;
    clear(this.check, h("h2", "页数核对 ", pageCheckBadge(item)), h("p#page-check-text", text));
  }

  // ---- pages ----------------------------------------------------------------------------------------

  renderThumbs() {
    const pages = this.item.page_list;
    if (!pages.length) {
      clear(this.strip);
      this.strip.hidden = true;
      return;
    }
    clear(this.strip, pages.map((p) => h("button.thumb", {
      type: "button", role: "option", dataset: { page: p.page },
      title: p.pdf_page ? `第 ${p.pdf_page} 页` : `件内第 ${p.page} 页（不在 PDF 中）`,
      onclick: () => this.show(p),
    },
    h("img", { src: p.thumbnail_url, alt: `第 ${p.pdf_page ?? p.page} 页缩略图`, loading: "lazy", width: 96 }),
    h("span", p.pdf_page ? `${p.pdf_page}` : `（${p.page}）`))));
  }

  step(delta) {
    const pages = this.item.page_list;
    const at = pages.indexOf(this.current);
    const next = pages[at + delta];
    if (next) this.show(next);
  }

  show(page, { push = true } = {}) {
    const pages = this.item.page_list;
    if (!page) {
      clear(this.viewer, h("h2", "页面"), h("p.empty", "这件档案还没有扫描的页面。"),
        this.item.pdf_url ? null : null);
      return;
    }
    this.current = page;
    if (push) {
      const params = new URLSearchParams(location.search);
      params.delete("page");
      params.delete("seq");
      if (page.pdf_page) params.set("page", page.pdf_page); else params.set("seq", page.page);
      history.pushState(null, "", `${location.pathname}?${params}`);
    }
    const at = pages.indexOf(page);
    const inPdf = pages.filter((p) => p.pdf_page).length;
    for (const t of $$(".thumb", this.strip)) {
      const here = Number(t.dataset.page) === page.page;
      t.setAttribute("aria-selected", here ? "true" : "false");
      if (here) t.scrollIntoView({ block: "nearest", inline: "nearest" });
    }
    const pdf = h("a.button.primary#open-pdf", { href: this.pdfHref(page), target: "_blank", rel: "noopener" },
      "打开 PDF", h("kbd", "P"));
    const flags = isStaff(this.who) && page.flags?.length
      ? page.flags.map((f) => h("span.badge.warn", FLAG[f] || f)) : [];
    const image = h("img.page-image#page-image", {
      src: `${page.image_url.replace(/\/image$/, "/preview")}?width=1400`,
      alt: `第 ${page.pdf_page ?? page.page} 页的图像`,
    });
    const text = h("pre.page-text#page-text", h("span.muted", "正在加载文字…"));
    clear(this.viewer,
      h("div.viewer-bar",
        h("button#prev", { type: "button", disabled: at <= 0, onclick: () => this.step(-1) }, "← 上一页"),
        h("strong#page-no", page.pdf_page ? `第 ${page.pdf_page} 页` : `件内第 ${page.page} 页（不在 PDF 中）`),
        h("span.muted", `共 ${inPdf} 页`),
        h("button#next", { type: "button", disabled: at >= pages.length - 1, onclick: () => this.step(1) }, "下一页 →"),
        page.state !== "done" ? h("span.badge.processing", PAGE_STATE[page.state] || page.state) : null,
        flags,
        h("span.spacer"),
        page.pdf_page ? pdf : null),
      h("div.viewer-body", h("div.page-picture", image), h("div.page-words", h("h3", "识别文字"), text)));
    this.loadText(page, text);
  }

  async loadText(page, into) {
    this.textRequest?.abort();
    const request = new AbortController();
    this.textRequest = request;
    try {
      const words = await api(page.text_url, { signal: request.signal });
      if (request.signal.aborted) return;
      clear(into, words.trim() ? markWords(words, this.query) : h("span.muted", "这一页没有识别出文字。"));
    } catch (err) {
      if (err.name === "AbortError") return;
      clear(into, h("span.error", zhError(err)));
    }
  }

  onKey(e) {
    if (e.ctrlKey && e.key === "Enter" && this.editable && this.form.contains(document.activeElement)) {
      e.preventDefault();
      this.save();
      return;
    }
    if (!noModifier(e) || typing(e)) return;
    if (e.key === "ArrowLeft") { e.preventDefault(); this.step(-1); }
    else if (e.key === "ArrowRight") { e.preventDefault(); this.step(1); }
    else if ((e.key === "p" || e.key === "P") && $("#open-pdf")) { e.preventDefault(); $("#open-pdf").click(); }
  }

  // ---- 利用登记 (archivists) ----------------------------------------------------------------------

  async renderLog() {
    const code = this.item.archival_code;
    clear(this.log, h("h2", "利用登记"), h("p.muted", "正在加载…"));
    try {
      const rows = await api(`/api/access-log?archival_code=${enc(code)}&limit=20`);
      clear(this.log,
        h("div.row", h("h2", "利用登记"), h("span.spacer"),
          h("a", { href: `/api/access-log?archival_code=${enc(code)}&format=csv` }, "导出 CSV")),
        rows.length
          ? h("table.log#access-rows",
            h("thead", h("tr", ["时间", "利用者", "操作", "页", "目的"].map((t) => h("th", t)))),
            h("tbody", rows.map((r) => h("tr",
              h("td.nowrap", fmtTime(r.at)),
              h("td", r.who, h("span.muted", `（${ROLE[r.role] || r.role}）`)),
              h("td", ACTION[r.action] || r.action),
              h("td", r.page ?? ""),
              h("td", r.purpose || "")))))
          : h("p.muted", "还没有人查看或下载过这件档案。"),
        rows.length === 20 ? h("p.muted", "只显示最近 20 条；全部请导出 CSV。") : null);
    } catch (err) {
      showError(err, this.log);
    }
  }
}
