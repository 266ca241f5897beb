// 目录导入: check an 归档文件目录 (CSV/XLSX) row by row before anything is stored, import it (all rows or none),
// then print separator sheets (分隔页) for chosen items not scanned yet.
import { api, start, h, clear, $, $$, toast, showError, enc } from "./ui.js";
import { pager, pagerOpen } from "./admin-paging.js";

const XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";
const ERRORS_PER_PAGE = 50;
const ITEMS_PER_PAGE = 50;

start(async (who, main) => {
  let file = null;      // the File chosen
  let checked = null;   // the dry run's answer for it, or null
  let errorPage = 0;
  let refreshSeparators = async () => {}; // set by separatorsSection: the fonds and their items read again

  const input = h("input#catalogue-file", { type: "file", accept: ".csv,.xlsx,text/csv," + XLSX, hidden: true,
    onchange: () => { if (input.files[0]) choose(input.files[0]); } });
  const fileName = h("span#file-name.muted", "尚未选择文件");
  const drop = h("label#drop.drop", { for: "catalogue-file" },
    h("strong", "把目录文件（.csv 或 .xlsx）拖到这里"),
    h("span.muted", "或 ", h("span.link-like", "点击选择文件"), " ", h("kbd", "O")),
    fileName, input);
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    const f = e.dataTransfer?.files?.[0];
    if (f) choose(f);
  });

  const checkButton = h("button#check", { type: "button", disabled: true, onclick: () => check() }, "重新检查 ", h("kbd", "C"));
  const importButton = h("button.primary#import", { type: "button", disabled: true, onclick: () => doImport() },
    "导入 ", h("kbd", "I"));
  const result = h("div#check-result", { "aria-live": "polite" });

  clear(main,
    h("h1", "目录导入"),
    h("section.card.step#step-import",
      h("h2", "1. 导入归档文件目录"),
      h("p.muted", "先检查整个文件：有错误的行会逐行列出，改正后重新检查；没有错误才能导入。导入时所有行一起导入，有一行出错就一行也不导入。"),
      drop,
      h("div.toolbar", checkButton, importButton),
      result),
    separatorsSection());

  function choose(f) {
    if (!/\.(csv|xlsx)$/i.test(f.name)) {
      file = null; checked = null;
      fileName.textContent = f.name;
      checkButton.disabled = importButton.disabled = true;
      clear(result, h("p.error", { role: "alert" }, "请选择 .csv 或 .xlsx 文件（旧版 .xls 请先在 Excel 或 WPS 中另存为 .xlsx）。"));
      return;
    }
    file = f;
    fileName.textContent = f.name;
    if (!f.size) {
      checked = null;
      importButton.disabled = true;
      clear(result, h("p.error", { role: "alert" }, `${f.name} 是空文件，请选择填好的目录文件。`));
      return;
    }
    check();
  }

  async function check() {
    if (!file) return;
    checked = null;
    importButton.disabled = true;
    checkButton.disabled = true;
    clear(result, h("p.muted", "正在检查…"));
    try {
      const data = await send(true);
      checked = data;
      errorPage = 0;
      drawCheck();
    } catch (err) {
      showError(err, result);
    } finally {
      checkButton.disabled = !file;
    }
  }

  function send(dryRun) {
    const type = /\.xlsx$/i.test(file.name) ? XLSX : "text/csv";
    return api(`/api/catalogue?filename=${enc(file.name)}${dryRun ? "&dry_run=true" : ""}`, { method: "POST", body: file, type });
  }

  function drawCheck() {
    const d = checked;
    const ignored = d.ignored_columns.length
      ? h("p.muted#ignored", `以下列不是归档文件目录的列，导入时忽略：${d.ignored_columns.join("、")}`) : null;
    if (!d.errors.length) {
      importButton.disabled = false;
      clear(result,
        h("p.ok#check-summary", `检查通过：共 ${d.rows} 行，导入后将新建 ${d.created} 件、更新 ${d.updated} 件。尚未导入，请点“导入”。`),
        ignored);
      return;
    }
    importButton.disabled = true;
    const pages = Math.ceil(d.errors.length / ERRORS_PER_PAGE);
    const shown = d.errors.slice(errorPage * ERRORS_PER_PAGE, (errorPage + 1) * ERRORS_PER_PAGE);
    clear(result,
      h("p.error#check-summary", { role: "alert" },
        `发现 ${d.errors.length} 处错误，未导入任何一行。请在文件中改正后重新选择文件（或点“重新检查”）。`),
      h("div.table-wrap", h("table#check-errors",
        h("thead", h("tr", h("th.num", "行号"), h("th", "列"), h("th", "问题"))),
        h("tbody", shown.map((e) => h("tr", { dataset: { row: e.row ?? "" } },
          h("td.num", e.row == null ? "整个文件" : `第 ${e.row} 行`),
          h("td", e.column || "—"),
          h("td", e.message_zh || e.message)))))),
      pages > 1 ? pager(errorPage, pages, (p) => { errorPage = p; drawCheck(); }, "errors") : null,
      ignored);
  }

  async function doImport() {
    if (!file || !checked || checked.errors.length) return;
    importButton.disabled = checkButton.disabled = true;
    clear(result, h("p.muted", "正在导入…"));
    try {
      const d = await send(false);
      clear(result, h("p.ok#import-done", { role: "status" },
        `已导入 ${d.rows} 行：新建 ${d.created} 件，更新 ${d.updated} 件。`));
      toast(`目录已导入：新建 ${d.created} 件，更新 ${d.updated} 件`, "ok");
      checked = null;
      await refreshSeparators();
    } catch (err) {
      if (err.errors?.length) {  // changed since it was checked: show its rows as the check does
        checked = { rows: 0, created: 0, updated: 0, ignored_columns: [], errors: err.errors };
        drawCheck();
      } else showError(err, result);
    } finally {
      checkButton.disabled = !file;
    }
  }

  // ---- separator sheets ---------------------------------------------------------------------------

  function separatorsSection() {
    const chosen = new Set();
    let offset = 0;
    const fondsSelect = h("select#sep-fonds", { onchange: () => { chosen.clear(); offset = 0; load(); } });
    const list = h("div#sep-list");
    const count = h("span#sep-count.muted", "已选 0 件");
    const print = h("a.button.primary#print-separators", { target: "_blank", rel: "noopener", "aria-disabled": "true" },
      "打印所选分隔页 ", h("kbd", "P"));
    print.addEventListener("click", (e) => { if (!chosen.size) e.preventDefault(); });
    const all = h("button#sep-all", { type: "button", onclick: () => toggleAll() }, "全选本页 ", h("kbd", "A"));
    let pageItems = [];

    function updatePrint() {
      count.textContent = `已选 ${chosen.size} 件`;
      if (chosen.size) {
        const codes = [...chosen].map((c) => "&code=" + enc(c)).join("");
        print.href = `/api/catalogue/separators?fonds=${enc(fondsSelect.value)}${codes}`;
        print.removeAttribute("aria-disabled");
      } else {
        print.removeAttribute("href");
        print.setAttribute("aria-disabled", "true");
      }
    }

    function toggleAll() {
      const every = pageItems.length && pageItems.every((i) => chosen.has(i.archival_code));
      for (const i of pageItems) every ? chosen.delete(i.archival_code) : chosen.add(i.archival_code);
      for (const box of $$("input.sep-choose", list)) box.checked = chosen.has(box.value);
      updatePrint();
    }

    async function load() {
      updatePrint();
      if (!fondsSelect.value) { clear(list, h("p.empty", "还没有全宗：请先导入目录。")); return; }
      clear(list, h("p.muted", "正在加载…"));
      try {
        const items = await api(`/api/items?fonds=${enc(fondsSelect.value)}&filed=false&limit=${ITEMS_PER_PAGE + 1}&offset=${offset}`);
        const more = items.length > ITEMS_PER_PAGE;
        pageItems = items.slice(0, ITEMS_PER_PAGE);
        if (!pageItems.length && offset === 0) { clear(list, h("p.empty", "这个全宗的目录条目都已扫描，没有要打印的分隔页。")); return; }
        clear(list,
          h("div.table-wrap", h("table#sep-items",
            h("thead", h("tr", h("th.check", ""), h("th", "档号"), h("th", "题名"), h("th.num", "页数"))),
            h("tbody", pageItems.map((i) => h("tr",
              h("td.check", h("input.sep-choose", { type: "checkbox", value: i.archival_code, checked: chosen.has(i.archival_code),
                "aria-label": "选择 " + i.archival_code,
                onchange: (e) => { e.target.checked ? chosen.add(i.archival_code) : chosen.delete(i.archival_code); updatePrint(); } })),
              h("td.code", i.archival_code),
              h("td", i.title || ""),
              h("td.num", i.pages ?? "")))))),
          pagerOpen(offset / ITEMS_PER_PAGE, more, (p) => { offset = p * ITEMS_PER_PAGE; load(); }, "sep"));
      } catch (err) { showError(err, list); }
    }

    async function loadFonds() {
      const keep = fondsSelect.value;
      let fonds = [];
      try { fonds = await api("/api/fonds"); } catch (err) { showError(err); }
      clear(fondsSelect, fonds.map((f) => h("option", { value: f.code }, f.name ? `${f.code} ${f.name}` : f.code)));
      if (fonds.some((f) => f.code === keep)) fondsSelect.value = keep;
      await load();
    }
    refreshSeparators = loadFonds;
    loadFonds();

    return h("section.card.step#step-separators",
      h("h2", "2. 打印分隔页"),
      h("p.muted", "列出所选全宗中尚未扫描的目录条目。勾选要扫描的件，打印分隔页，放在每件的第一页前面一起扫描，工作站就会按档号自动分件归档。"),
      h("div.toolbar", h("label.inline", "全宗", fondsSelect), all, count, h("span.spacer"), print),
      list);
  }

  // ---- keys ---------------------------------------------------------------------------------------

  addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || e.target.closest?.("input, select, textarea")) return;
    const key = e.key.toLowerCase();
    if (key === "o") { e.preventDefault(); input.click(); }
    else if (key === "c" && !checkButton.disabled) { e.preventDefault(); check(); }
    else if (key === "i" && !importButton.disabled) { e.preventDefault(); doImport(); }
    else if (key === "a") { e.preventDefault(); $("#sep-all")?.click(); }
    else if (key === "p") { const p = $("#print-separators"); if (p?.href) { e.preventDefault(); p.click(); } }
  });
}, { archivistOnly: true });
