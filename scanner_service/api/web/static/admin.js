// 管理: people and API tokens (admins), fonds settings, grants and the 利用登记 (admins and archivists).
// Each section is a client of its API route; what a person may do is what the route answers.
import { api, start, h, clear, $, $$, toast, showError, zhError, ROLE, ACCESS_ACTION, fmtTime, enc } from "./ui.js";
import { pager, pagerOpen } from "./admin-paging.js";

const PAGE = 20;
const LOG_PAGE = 50;
const ROLES = ["admin", "archivist", "operator", "reader"];
const ADMIN = (who) => who.role === "admin";
const ANY = () => true;
const SECTIONS = [
  ["people", "人员", ADMIN, people],
  ["tokens", "API 令牌", ADMIN, tokens],
  ["fonds", "全宗设置", ANY, fondsSettings],
  ["grants", "授权查阅", ANY, grants],
  ["log", "利用登记", ANY, accessLog],
];

start(async (who, main) => {
  const mine = SECTIONS.filter(([, , may]) => may(who));
  const nav = h("nav.admin-nav#admin-nav", { "aria-label": "管理" },
    mine.map(([id, label], i) => h("a", { href: "#" + id, dataset: { section: id } }, label, h("kbd", String(i + 1)))),
    h("p.keys.muted", h("kbd", "N"), " 新建　", h("kbd", "/"), " 筛选"));
  const body = h("div.admin-section#admin-section");
  clear(main, h("h1", "管理"), h("div.admin", nav, body));

  async function show() {
    const wanted = location.hash.slice(1);
    const [id, label, , draw] = mine.find(([s]) => s === wanted) || mine[0];
    for (const a of $$("a", nav)) a.setAttribute("aria-current", a.dataset.section === id ? "true" : "false");
    document.title = `${label} · 管理 · 扫描工作站`;
    clear(body, h("p.muted", "正在加载…"));
    try { await draw(body, who); } catch (err) { showError(err, body); }
  }
  addEventListener("hashchange", show);
  addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || e.target.closest?.("input, select, textarea, dialog")) return;
    const n = Number(e.key);
    if (n >= 1 && n <= mine.length) { e.preventDefault(); location.hash = "#" + mine[n - 1][0]; }
    else if (e.key.toLowerCase() === "n") { const f = $("[data-new]", body); if (f) { e.preventDefault(); f.focus(); } }
    else if (e.key === "/") { const f = $("[data-filter]", body); if (f) { e.preventDefault(); f.focus(); } }
  });
  await show();
}, { archivistOnly: true });

// ---- small helpers ---------------------------------------------------------------------------------

function fondsText(list) { return list.length ? list.join("、") : "全部"; }
function parseFonds(text) { return text.split(/[,，、\s]+/).map((s) => s.trim().toUpperCase()).filter(Boolean); }
function formError() { return h("p.error.form-error", { role: "alert", hidden: true }); }
function say(where, err) { where.textContent = typeof err === "string" ? err : zhError(err); where.hidden = false; }
function roleSelect(id, value = "operator") {
  // "selected" as an attribute: a form's reset goes back to it (never to 管理员, the first option)
  return h("select#" + id, ROLES.map((r) => h("option", { value: r, selected: r === value ? "" : null }, ROLE[r])));
}
const FONDS_CODE = /^[A-Za-z0-9]{1,8}$/;
function badFonds(list) { return list.find((f) => !FONDS_CODE.test(f)); }
// The API's rule (admin_fonds), said before asking: an admin is never limited to fonds.
const ADMIN_FONDS = "管理员可以查看和管理全部全宗，不能限定全宗：请把全宗留空，或改选档案员。";
const adminWithFonds = (role, list) => role === "admin" && list.length > 0;

// A modal form: fields, then resolves with true when submitted (the caller's onsubmit may throw to keep it open).
function dialog(title, fields, submitLabel, onsubmit) {
  const error = formError();
  const submit = h("button.primary", { type: "submit" }, submitLabel);
  const box = h("dialog.admin-dialog", h("form", { method: "dialog" },
    h("h2", title), fields, error,
    h("div.buttons", h("button", { type: "button", onclick: () => box.close() }, "取消（Esc）"), submit)));
  box.querySelector("form").addEventListener("submit", async (e) => {
    e.preventDefault();
    error.hidden = true;
    submit.disabled = true;
    try { await onsubmit(); box.close(); } catch (err) { say(error, err); } finally { submit.disabled = false; }
  });
  box.addEventListener("close", () => box.remove());
  document.body.append(box);
  box.showModal();
  return box;
}

function confirmDialog(title, text, label, action) {
  return dialog(title, h("p", text), label, action);
}

// ---- people (admin) --------------------------------------------------------------------------------

async function people(body, who) {
  let page = 0;
  const name = h("input#new-user-name", { autocomplete: "off", required: true, dataset: { new: "1" } });
  const role = roleSelect("new-user-role");
  const fonds = h("input#new-user-fonds", { placeholder: "如 C015，留空为全部" });
  const pw = h("input#new-user-password", { type: "password", autocomplete: "new-password", required: true });
  const pw2 = h("input#new-user-password2", { type: "password", autocomplete: "new-password", required: true });
  const error = formError();
  const create = h("form.card#new-user", { onsubmit: async (e) => {
    e.preventDefault();
    error.hidden = true;
    const list = parseFonds(fonds.value);
    if (pw.value.length < 8) return say(error, "密码太短：请至少用 8 个字符。");
    if (pw.value !== pw2.value) return say(error, "两次输入的密码不一样。");
    if (badFonds(list)) return say(error, `全宗号“${badFonds(list)}”不对：应是 1-8 位字母或数字。`);
    if (adminWithFonds(role.value, list)) return say(error, ADMIN_FONDS);
    try {
      await api("/api/users", { body: { name: name.value.trim(), role: role.value, fonds: list, password: pw.value } });
      toast(`已新建账号 ${name.value.trim()}`, "ok");
      create.reset();
      await load();
    } catch (err) { say(error, err); }
  } },
    h("h2", "新建人员"),
    h("div.form-row",
      h("label", "用户名", name), h("label", "角色", role), h("label", "全宗", fonds),
      h("label", "密码（至少 8 位）", pw), h("label", "再输一次密码", pw2),
      h("button.primary#new-user-submit", { type: "submit" }, "新建"), error));
  const table = h("div#users");
  clear(body, create, h("section.card", h("h2", "人员列表"), table));

  let users = [];
  async function load() { users = await api("/api/users"); draw(); }
  function draw() {
    const pages = Math.max(1, Math.ceil(users.length / PAGE));
    page = Math.min(page, pages - 1);
    const rows = users.slice(page * PAGE, (page + 1) * PAGE);
    clear(table,
      users.length ? h("div.table-wrap", h("table#users-table",
        h("thead", h("tr", ["用户名", "角色", "全宗", "状态", "最近登录", "操作"].map((t) => h("th", t)))),
        h("tbody", rows.map((u) => h("tr", { class: u.disabled ? "off" : "", dataset: { name: u.name } },
          h("td", u.name),
          h("td", ROLE[u.role] || u.role),
          h("td", fondsText(u.fonds)),
          h("td", u.disabled ? h("span.badge.bad", "已停用") : h("span.badge.ok", "启用"),
            u.locked_until ? [" ", h("span.badge.warn", `锁定至 ${fmtTime(u.locked_until)}`)] : null),
          h("td", u.last_login_at ? fmtTime(u.last_login_at) : "从未登录"),
          h("td.actions",
            h("button.passwd", { type: "button", onclick: () => passwd(u) }, "改密码"),
            h("button.role", { type: "button", disabled: u.name === who.name, onclick: () => changeRole(u) }, "改角色"),
            u.disabled
              ? h("button.enable", { type: "button", onclick: () => toggle(u, false) }, "启用")
              : h("button.danger.disable", { type: "button", disabled: u.name === who.name, onclick: () => toggle(u, true) }, "停用"),
            u.locked_until && !u.disabled ? h("button.unlock", { type: "button", onclick: () => toggle(u, false) }, "解锁") : null)))))) :
        h("p.empty", "还没有人员账号。"),
      pages > 1 ? pager(page, pages, (p) => { page = p; draw(); }, "users") : null);
  }
  async function patch(u, change, done) {
    await api(`/api/users/${enc(u.name)}`, { method: "PATCH", body: change });
    toast(done, "ok");
    await load();
  }
  function passwd(u) {
    const a = h("input#passwd-1", { type: "password", autocomplete: "new-password", required: true, autofocus: true });
    const b = h("input#passwd-2", { type: "password", autocomplete: "new-password", required: true });
    dialog(`为 ${u.name} 设置新密码`, [h("label", "新密码（至少 8 位）", a), h("label", "再输一次", b),
      h("p.muted", "改密码后，此人已登录的页面都会退出。")], "保存新密码", async () => {
      if (a.value.length < 8) throw "密码太短：请至少用 8 个字符。";
      if (a.value !== b.value) throw "两次输入的密码不一样。";
      await patch(u, { password: a.value }, `已为 ${u.name} 设置新密码`);
    });
  }
  function changeRole(u) {
    const r = roleSelect("role-change", u.role);
    const f = h("input#fonds-change", { value: u.fonds.join(","), placeholder: "留空为全部" });
    dialog(`更改 ${u.name} 的角色和全宗`, [h("label", "角色", r), h("label", "全宗（逗号分隔，留空为全部）", f)], "保存", async () => {
      const list = parseFonds(f.value);
      if (badFonds(list)) throw `全宗号“${badFonds(list)}”不对：应是 1-8 位字母或数字。`;
      if (adminWithFonds(r.value, list)) throw ADMIN_FONDS;
      await patch(u, { role: r.value, fonds: list }, `${u.name} 现在是${ROLE[r.value]}`);
    });
  }
  function toggle(u, disabled) {
    if (!disabled) return patch(u, { disabled: false }, `已启用 ${u.name}`).catch((err) => showError(err));
    confirmDialog(`停用 ${u.name}`, "停用后此人无法登录，已登录的页面会立即退出；随时可以再启用。", "停用", () =>
      patch(u, { disabled: true }, `已停用 ${u.name}`));
  }
  await load();
}

// ---- API tokens (admin) ----------------------------------------------------------------------------

async function tokens(body) {
  let page = 0;
  const name = h("input#new-token-name", { placeholder: "如 县档案馆接口", dataset: { new: "1" } });
  const role = roleSelect("new-token-role", "reader");
  const fonds = h("input#new-token-fonds", { placeholder: "如 C015，留空为全部" });
  const error = formError();
  const shown = h("div#new-token");
  const create = h("form.card#new-token-form", { onsubmit: async (e) => {
    e.preventDefault();
    error.hidden = true;
    const list = parseFonds(fonds.value);
    if (badFonds(list)) return say(error, `全宗号“${badFonds(list)}”不对：应是 1-8 位字母或数字。`);
    if (adminWithFonds(role.value, list)) return say(error, ADMIN_FONDS);
    try {
      const made = await api("/api/tokens", { body: { name: name.value.trim() || null, role: role.value, fonds: list } });
      create.reset();
      const code = h("code#new-token-secret", made.token);
      clear(shown, h("div.secret", { role: "status" },
        h("strong", `新令牌 #${made.id}（只显示这一次，请立即复制保存）：`), code,
        h("button#copy-token", { type: "button", onclick: async (ev) => {
          try { await navigator.clipboard.writeText(made.token); ev.target.textContent = "已复制"; }
          catch (_) { getSelection().selectAllChildren(code); toast("请按 Ctrl+C 复制选中的令牌"); }
        } }, "复制"),
        h("button", { type: "button", onclick: () => clear(shown) }, "我已保存，隐藏")));
      await load();
    } catch (err) { say(error, err); }
  } },
    h("h2", "新建 API 令牌"),
    h("p.muted", "令牌供其他系统（如县档案馆、土地承包查询）调用接口；工作站只保存令牌的摘要，令牌本身只在新建时显示一次。"),
    h("div.form-row", h("label.wide", "名称（用途）", name), h("label", "角色", role), h("label", "全宗", fonds),
      h("button.primary#new-token-submit", { type: "submit" }, "新建令牌"), error),
    shown);
  const table = h("div#tokens");
  clear(body, create, h("section.card", h("h2", "令牌列表"), table));

  let all = [];
  async function load() { all = (await api("/api/tokens")).reverse(); draw(); }
  function draw() {
    const pages = Math.max(1, Math.ceil(all.length / PAGE));
    page = Math.min(page, pages - 1);
    clear(table,
      all.length ? h("div.table-wrap", h("table#tokens-table",
        h("thead", h("tr", ["编号", "名称", "角色", "全宗", "新建时间", "状态", "操作"].map((t) => h("th", t)))),
        h("tbody", all.slice(page * PAGE, (page + 1) * PAGE).map((t) => h("tr", { class: t.revoked ? "off" : "", dataset: { id: t.id } },
          h("td.num", String(t.id)), h("td", t.name), h("td", ROLE[t.role] || t.role), h("td", fondsText(t.fonds)),
          h("td", fmtTime(t.created_at)),
          h("td", t.revoked ? h("span.badge.bad", "已吊销") : h("span.badge.ok", "有效")),
          h("td.actions", t.revoked ? null : h("button.danger.revoke", { type: "button", onclick: () => revoke(t) }, "吊销")))))))
        : h("p.empty", "还没有令牌。"),
      pages > 1 ? pager(page, pages, (p) => { page = p; draw(); }, "tokens") : null);
  }
  function revoke(t) {
    confirmDialog(`吊销令牌 #${t.id}`, `吊销后，使用“${t.name}”的系统将无法再访问工作站，且不能恢复。`, "吊销", async () => {
      await api(`/api/tokens/${t.id}`, { method: "DELETE" });
      toast(`令牌 #${t.id} 已吊销`, "ok");
      await load();
    });
  }
  await load();
}

// ---- fonds settings --------------------------------------------------------------------------------

async function fondsSettings(body) {
  const code = h("input#new-fonds-code", { placeholder: "如 C015", required: true, dataset: { new: "1" } });
  const name = h("input#new-fonds-name", { placeholder: "如 东风村" });
  const error = formError();
  const create = h("form.card#new-fonds", { onsubmit: async (e) => {
    e.preventDefault();
    error.hidden = true;
    const c = code.value.trim().toUpperCase();
    if (!FONDS_CODE.test(c)) return say(error, "全宗号应是 1-8 位字母或数字，如 C015。");
    try {
      await api(`/api/fonds/${enc(c)}`, { method: "PUT", body: { name: name.value.trim() || null } });
      toast(`已添加全宗 ${c}`, "ok");
      create.reset();
      await load();
    } catch (err) { say(error, err); }
  } },
    h("h2", "添加全宗"),
    h("div.form-row", h("label", "全宗号", code), h("label.wide", "名称", name),
      h("button.primary#new-fonds-submit", { type: "submit" }, "添加"), error));
  const table = h("div#fonds");
  clear(body, create, h("section.card", h("h2", "全宗列表"),
    h("p.muted", "档号格式决定工作站怎样书写这个全宗的档号；“允许扫描新建”打开时，以目录里没有的档号命名的批次会自动新建条目。"), table));

  async function load() {
    const fonds = await api("/api/fonds");
    clear(table, fonds.length ? h("div.table-wrap", h("table#fonds-table",
      h("thead", h("tr", ["全宗号", "名称", "档号格式", "允许扫描新建条目", "操作"].map((t) => h("th", t)))),
      h("tbody", fonds.map((f) => {
        const n = h("input.fonds-name", { value: f.name || "", "aria-label": `${f.code} 的名称` });
        const style = h("select.fonds-style", { "aria-label": `${f.code} 的档号格式` },
          h("option", { value: "dat22", selected: f.code_style === "dat22" ? "" : null }, "DA/T 22-2015（C015-WS·2013-Y-BGS-0001）"),
          h("option", { value: "dat13", selected: f.code_style === "dat13" ? "" : null }, "DA/T 13-2022（C015-WS·2013·Y·BGS-0001）"));
        const allow = h("input.fonds-allow", { type: "checkbox", checked: f.allow_new_items, "aria-label": `${f.code} 允许扫描新建条目` });
        const save = h("button.primary.fonds-save", { type: "button", onclick: async () => {
          save.disabled = true;
          try {
            await api(`/api/fonds/${enc(f.code)}`, { method: "PUT",
              body: { name: n.value.trim() || null, code_style: style.value, allow_new_items: allow.checked } });
            toast(`全宗 ${f.code} 的设置已保存`, "ok");
          } catch (err) { showError(err); } finally { save.disabled = false; }
        } }, "保存");
        return h("tr", { dataset: { code: f.code } }, h("td.code", f.code), h("td", n), h("td", style), h("td", allow), h("td.actions", save));
      })))) : h("p.empty", "还没有全宗：导入目录或在上面添加。"));
  }
  await load();
}

// ---- grants ----------------------------------------------------------------------------------------

async function grants(body, who) {
  let offset = 0;
  const code = h("input#grant-code", { placeholder: "如 C015-WS·2013-Y-BGS-0001", required: true, dataset: { new: "1" } });
  const kind = h("select#grant-kind", h("option", { value: "user" }, "人员"), h("option", { value: "token" }, "API 令牌"));
  const holder = h("input#grant-holder", { required: true, list: "grant-people", placeholder: "用户名" });
  const people = h("datalist#grant-people");
  const days = new Date(Date.now() + 30 * 86400e3);
  const until = h("input#grant-until", { type: "date", value: isoDay(days) });
  const reason = h("input#grant-reason", { placeholder: "如 土地确权查档" });
  kind.addEventListener("change", () => {
    holder.placeholder = kind.value === "user" ? "用户名" : "令牌编号";
    holder.setAttribute("list", kind.value === "user" ? "grant-people" : "grant-tokens");
  });
  const tokenList = h("datalist#grant-tokens");
  if (who.role === "admin") {  // only admins may list people and tokens; an archivist types the name or number
    api("/api/users").then((us) => clear(people, us.map((u) => h("option", { value: u.name }, ROLE[u.role])))).catch(() => {});
    api("/api/tokens").then((ts) => clear(tokenList, ts.filter((t) => !t.revoked).map((t) => h("option", { value: String(t.id) }, t.name)))).catch(() => {});
  }
  const error = formError();
  const form = h("form.card#new-grant", { onsubmit: async (e) => {
    e.preventDefault();
    error.hidden = true;
    const grantee = kind.value === "user" ? { user: holder.value.trim() } : { token_id: Number(holder.value) };
    if (kind.value === "token" && !(grantee.token_id >= 1 && Number.isInteger(grantee.token_id))) return say(error, "令牌编号应是数字，见“API 令牌”列表。");
    const expires = until.value ? endOfDay(until.value) : null;
    try {
      await api(`/api/items/${enc(code.value.trim())}/grants`, { body: { ...grantee, expires_at: expires, reason: reason.value.trim() || null } });
      toast(`已授权：${code.value.trim()}`, "ok");
      code.value = ""; holder.value = ""; reason.value = "";
      offset = 0;
      await load();
    } catch (err) {
      say(error, err.status === 404 ? "找不到这个档号、人员或令牌，或它不在您的全宗里。" : err);
    }
  } },
    h("h2", "授权查阅受限档案"),
    h("p.muted", "有密级或未标为“开放”的档案，查阅者看不到；在这里授权某人或某个令牌查阅一件，到期自动失效。"),
    h("div.form-row", h("label.wide", "档号", code), h("label", "授权给", kind), h("label", "人员或令牌", holder),
      h("label", "有效至（含当天）", until), h("label.wide", "理由", reason),
      h("button.primary#new-grant-submit", { type: "submit" }, "授权"), error),
    people, tokenList);
  const current = h("input#grants-current", { type: "checkbox" });
  const filter = h("input#grants-filter", { placeholder: "按用户名筛选", dataset: { filter: "1" } });
  const table = h("div#grants");
  clear(body, form, h("section.card", h("h2", "授权列表"),
    h("div.toolbar", h("label.inline", filter), h("label.inline", current, "只看有效的"),
      h("button", { type: "button", onclick: () => { offset = 0; load(); } }, "筛选")),
    table));
  current.addEventListener("change", () => { offset = 0; load(); });
  filter.addEventListener("keydown", (e) => { if (e.key === "Enter") { offset = 0; load(); } });

  async function load() {
    const q = new URLSearchParams({ limit: String(PAGE + 1), offset: String(offset) });
    if (current.checked) q.set("current", "true");
    if (filter.value.trim()) q.set("user", filter.value.trim());
    const rows = await api("/api/grants?" + q);
    const more = rows.length > PAGE;
    clear(table, rows.length ? h("div.table-wrap", h("table#grants-table",
      h("thead", h("tr", ["档号", "题名", "授权给", "有效至", "授权人", "理由", "状态", "操作"].map((t) => h("th", t)))),
      h("tbody", rows.slice(0, PAGE).map((g) => h("tr", { class: g.expired ? "off" : "", dataset: { id: g.id } },
        h("td.code", g.archival_code), h("td", g.title || ""),
        h("td", g.user ? `人员 ${g.user}` : `令牌 #${g.token_id}${g.token_name ? " " + g.token_name : ""}`),
        h("td", g.expires_at ? lastDay(g.expires_at) : "长期"), h("td", g.granted_by), h("td", g.reason || ""),
        h("td", g.expired ? h("span.badge", "已过期") : h("span.badge.ok", "有效")),
        h("td.actions", h("button.danger.revoke-grant", { type: "button", onclick: () => revoke(g) }, "收回"))))))) :
      h("p.empty", "没有授权。"),
    pagerOpen(offset / PAGE, more, (p) => { offset = p * PAGE; load().catch((err) => showError(err)); }, "grants"));
  }
  function revoke(g) {
    const to = g.user ? g.user : `令牌 #${g.token_id}`;
    confirmDialog("收回授权", `收回后，${to} 将立即看不到 ${g.archival_code}。`, "收回", async () => {
      await api(`/api/grants/${g.id}`, { method: "DELETE" });
      toast("授权已收回", "ok");
      await load();
    });
  }
  await load();
}

function isoDay(d) {
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}`;
}
// An expiry at a local midnight (as the form makes them) is shown as the last day it still holds.
function lastDay(iso) {
  const d = new Date(iso);
  if (d.getHours() || d.getMinutes() || d.getSeconds()) return fmtTime(iso);
  return `${isoDay(new Date(d.getTime() - 1))} 当天止`;
}
// A day typed in the browser (its own time zone) as the UTC instants the API takes.
function startOfDay(day) { return new Date(day + "T00:00:00").toISOString(); }
function endOfDay(day) { const d = new Date(day + "T00:00:00"); d.setDate(d.getDate() + 1); return d.toISOString(); }

// ---- 利用登记 --------------------------------------------------------------------------------------

async function accessLog(body) {
  let offset = 0;
  const who = h("input#log-who", { placeholder: "利用者（用户名或令牌名）", dataset: { filter: "1" } });
  const code = h("input#log-code", { placeholder: "档号" });
  const from = h("input#log-from", { type: "date" });
  const to = h("input#log-to", { type: "date" });
  const csv = h("a.button#log-csv", { href: "/api/access-log?format=csv", download: "利用登记.csv" }, "导出 Excel（CSV）");
  const table = h("div#log");
  const form = h("form.card#log-filters", { onsubmit: (e) => { e.preventDefault(); offset = 0; load().catch((err) => showError(err, table)); } },
    h("h2", "利用登记"),
    h("p.muted", "每次下载 PDF、查看页面文字或图像都记录在这里：谁、什么时候、看了哪件哪页、为什么。"),
    h("div.form-row", h("label.wide", "利用者", who), h("label.wide", "档号", code), h("label", "从", from), h("label", "到", to),
      h("button.primary#log-search", { type: "submit" }, "查询"), csv));
  clear(body, form, h("section.card", table));

  function query() {
    const q = new URLSearchParams();
    if (who.value.trim()) q.set("who", who.value.trim());
    if (code.value.trim()) q.set("archival_code", code.value.trim());
    if (from.value) q.set("since", startOfDay(from.value));
    if (to.value) q.set("until", endOfDay(to.value));
    return q;
  }
  async function load() {
    const q = query();
    const csvQuery = new URLSearchParams(q);
    csvQuery.set("format", "csv");
    csv.href = "/api/access-log?" + csvQuery;
    q.set("limit", String(LOG_PAGE + 1));
    q.set("offset", String(offset));
    const rows = await api("/api/access-log?" + q);
    const more = rows.length > LOG_PAGE;
    clear(table, rows.length ? h("div.table-wrap", h("table#log-table",
      h("thead", h("tr", ["时间", "利用者", "角色", "操作", "档号", "页号", "字节范围", "利用目的", "来源地址"].map((t) => h("th", t)))),
      h("tbody", rows.slice(0, LOG_PAGE).map((r) => h("tr",
        h("td", fmtTime(r.at)), h("td", r.who), h("td", ROLE[r.role] || r.role), h("td", ACCESS_ACTION[r.action] || r.action),
        h("td.code", r.archival_code), h("td.num", r.page ?? ""), h("td", r.byte_range || ""), h("td", r.purpose || ""),
        h("td", r.client || "")))))) : h("p.empty", "没有符合条件的记录。"),
    pagerOpen(offset / LOG_PAGE, more, (p) => { offset = p * LOG_PAGE; load().catch((err) => showError(err, table)); }, "log"));
  }
  await load();
}
