// Page buttons for the long lists of the 目录导入 and 管理 screens.
import { h } from "./ui.js";

// Page buttons for a list whose length is known (the check's errors).
export function pager(page, pages, go, name) {
  return h("div.pager", { dataset: { list: name } },
    h("button", { type: "button", disabled: page === 0, onclick: () => go(page - 1) }, "上一页"),
    h("span.muted", `第 ${page + 1} / ${pages} 页`),
    h("button", { type: "button", disabled: page >= pages - 1, onclick: () => go(page + 1) }, "下一页"));
}

// Page buttons for a list read a page at a time (one more asked for: is there a next page?).
export function pagerOpen(page, more, go, name) {
  if (page === 0 && !more) return null;
  return h("div.pager", { dataset: { list: name } },
    h("button", { type: "button", disabled: page === 0, onclick: () => go(page - 1) }, "上一页"),
    h("span.muted", `第 ${page + 1} 页`),
    h("button", { type: "button", disabled: !more, onclick: () => go(page + 1) }, "下一页"));
}
