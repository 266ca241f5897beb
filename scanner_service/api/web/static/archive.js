// 档案: the archive level by level, 全宗 → 门类 → 年度 → 件, each level a list with its counts; a year's
// items in a paged table. Where one is, is in the URL (?fonds=&category=&year=&p=&q=), so it can be bookmarked.
import { start, api, h, clear, $, $$, enc } from "./ui.js";
import {
  categoryLabel, itemHref, pageCheckBadge, accessBadges, keyHints, typing, noModifier,
} from "./archive-lib.js";

const PER_PAGE = 50;

start(async (who, main) => {
  const params = new URLSearchParams(location.search);
  const fonds = (params.get("fonds") || "").toUpperCase();
  const category = fonds ? (params.get("category") || "").toUpperCase() : "";
  const yearText = fonds && category ? params.get("year") || "" : "";
  const year = /^\d{4}$/.test(yearText) ? Number(yearText) : null;
  const p = Math.max(1, Number(params.get("p")) || 1);
  const q = params.get("q") || "";

  const href = (f, c, y, extra = {}) => {
    const s = new URLSearchParams();
    if (f) s.set("fonds", f);
    if (c) s.set("category", c);
    if (y) s.set("year", y);
    for (const [k, v] of Object.entries(extra)) if (v) s.set(k, v);
    const t = s.toString();
    return "/archive" + (t ? "?" + t : "");
  };

  // The levels above as a breadcrumb; the last is where one is.
  const crumbs = [["全部全宗", href()]];
  if (fonds) crumbs.push([`全宗 ${fonds}`, href(fonds)]);
  if (category) crumbs.push([`门类 ${categoryLabel(category)}`, href(fonds, category)]);
  if (year) crumbs.push([`${year} 年度`, href(fonds, category, year)]);
  const up = crumbs.length > 1 ? crumbs[crumbs.length - 2][1] : null;
  const breadcrumb = h("nav.crumbs", { "aria-label": "位置" },
    crumbs.map(([label, link], i) => i === crumbs.length - 1
      ? h("span", { "aria-current": "location" }, label)
      : [h("a", { href: link }, label), h("span.sep", "›")]));

  const body = h("section#level");
  clear(main, h("div.archive-head", h("h1", "档案"), breadcrumb), body);

  const facets = await api(`/api/facets?fonds=${enc(fonds)}&category=${enc(category)}`);
  if (!year) {
    renderLevel(body, facets, { fonds, category, href });
  } else {
    const here = facets.values.find((v) => v.value === String(year));
    await renderItems(body, { fonds, category, year, p, q, total: here ? here.items : 0, href });
  }
  main.append(keyHints([
    ["↑ ↓", "选择"], ["Enter", year ? "打开" : "进入"],
    ...(year ? [["← →", "翻页"], ["/", "筛选"]] : []), ...(up ? [["Backspace", "上一级"]] : []),
  ]));

  addEventListener("keydown", (e) => {
    if (!noModifier(e)) return;
    if (e.key === "/" && !typing(e)) {
      const box = $("#item-filter");
      if (box) { e.preventDefault(); box.focus(); }
      return;
    }
    if (typing(e)) return;
    const links = $$(".level-link, #items a.code");
    const at = links.indexOf(document.activeElement);
    if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      if (!links.length) return;
      e.preventDefault();
      const next = e.key === "ArrowDown" ? Math.min(links.length - 1, at + 1) : Math.max(0, at - 1);
      links[at < 0 ? 0 : next].focus();
    } else if (e.key === "Backspace" && up) {
      e.preventDefault();
      location.assign(up);
    } else if (e.key === "ArrowLeft" || e.key === "ArrowRight") {
      const pager = $(e.key === "ArrowLeft" ? "#prev-page" : "#next-page");
      if (pager && !pager.hasAttribute("aria-disabled")) { e.preventDefault(); pager.click(); }
    }
  });
  $(".level-link, #items a.code")?.focus({ preventScroll: true });
});

const LEVEL = {
  fonds: { what: "全宗", label: (v) => `全宗 ${v.value}`, empty: "没有您可以查看的档案。" },
  category: { what: "门类", label: (v) => categoryLabel(v.value), empty: "这个全宗里没有您可以查看的档案。" },
  year: { what: "年度", label: (v) => `${v.value} 年度`, empty: "这个门类里没有您可以查看的档案。" },
};

function renderLevel(body, facets, { fonds, category, href }) {
  const level = LEVEL[facets.level];
  if (!facets.values.length) {
    clear(body, h("p.empty#level-empty", level.empty));
    return;
  }
  const total = facets.values.reduce((n, v) => n + v.items, 0);
  const link = (v) => facets.level === "fonds" ? href(v.value)
    : facets.level === "category" ? href(fonds, v.value) : href(fonds, category, v.value);
  clear(body,
    h("h2", `${level.what}（${facets.values.length} 个，共 ${total} 件）`),
    h("ul.levels#levels", facets.values.map((v) => h("li",
      h("a.level-link", { href: link(v), dataset: { value: v.value } },
        h("span.level-name", level.label(v), v.name ? h("span.muted", ` ${v.name}`) : null),
        h("span.level-counts",
          h("span.count", `${v.items} 件`),
          h("span.muted", `已扫描 ${v.filed} 件 · ${v.pages_filed} 页`),
          v.missing_pages ? h("span.badge.bad", `漏扫 ${v.missing_pages}`) : null,
          v.extra_pages ? h("span.badge.warn", `多扫 ${v.extra_pages}`) : null),
      )))),
  );
}

async function renderItems(body, { fonds, category, year, p, q, total, href }) {
  const offset = (p - 1) * PER_PAGE;
  const query = new URLSearchParams({ fonds, category, year, limit: PER_PAGE + 1, offset });
  if (q) query.set("q", q);
  const rows = await api(`/api/items?${query}`);
  const more = rows.length > PER_PAGE;
  const items = rows.slice(0, PER_PAGE);
  const filter = h("input#item-filter", {
    type: "search", name: "q", value: q, maxLength: 128, placeholder: "在本年度中筛选：档号或题名里的字",
    "aria-label": "筛选档号或题名",
  });
  const form = h("form.toolbar", { onsubmit: (e) => {
    e.preventDefault();
    location.assign(href(fonds, category, year, { q: filter.value.trim() }));
  } }, filter, h("button", { type: "submit" }, "筛选"),
  q ? h("a.button", { href: href(fonds, category, year) }, "清除筛选") : null,
  h("span.spacer"),
  h("span.muted#items-count", q ? `筛选出 ${items.length + offset}${more ? "+" : ""} 件` : `共 ${total} 件`));
  if (!items.length) {
    clear(body, form, h("p.empty#items-empty", q ? `没有找到含“${q}”的档案。` : "这个年度里没有您可以查看的档案。"));
    return;
  }
  const pages = q ? null : Math.max(1, Math.ceil(total / PER_PAGE));
  const pager = h("div.pager",
    h("a.button#prev-page", p > 1 ? { href: href(fonds, category, year, { p: p - 1, q }) } : { "aria-disabled": "true" },
      "← 上一页"),
    h("span.muted", pages ? `第 ${p} / ${pages} 页` : `第 ${p} 页`),
    h("a.button#next-page", more ? { href: href(fonds, category, year, { p: p + 1, q }) } : { "aria-disabled": "true" },
      "下一页 →"));
  clear(body, form,
    h("table#items.items",
      h("thead", h("tr", ["档号", "题名", "责任者", "日期", "页数 / 已扫描", "页数核对", "密级 / 开放"].map((t) => h("th", t)))),
      h("tbody", items.map((item) => h("tr", { dataset: { code: item.archival_code } },
        h("td.nowrap", h("a.code", { href: itemHref(item.archival_code) }, item.archival_code)),
        h("td.title", item.title || h("span.muted", "（无题名）")),
        h("td", item.author || ""),
        h("td.nowrap", item.date || ""),
        h("td.nowrap.num", `${item.pages ?? "—"} / ${item.pages_filed}`),
        h("td", pageCheckBadge(item)),
        h("td.nowrap", accessBadges(item)),
      )))),
    pager);
}
