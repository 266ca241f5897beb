// 登录: name and password for the session cookie; then on to where the person was going.
import { api, h, clear, $, zhError } from "./ui.js";

const main = $("#app");
const next = new URLSearchParams(location.search).get("next");
// Only a path of this station: "/\\host" or "/\t/host" is read by a browser as "//host", another site.
function sameStation(text) {
  if (!text || !text.startsWith("/")) return "/";
  const url = new URL(text, location.origin);
  return url.origin === location.origin ? url.pathname + url.search + url.hash : "/";
}
const target = sameStation(next);

const error = h("p.error#login-error", { role: "alert", hidden: true });
const name = h("input#name", { name: "name", autocomplete: "username", required: true, autofocus: true });
const password = h("input#password", { name: "password", type: "password", autocomplete: "current-password", required: true });
const submit = h("button.primary#login-submit", { type: "submit" }, "登录");

const form = h("form.login-card", { onsubmit: async (e) => {
  e.preventDefault();
  error.hidden = true;
  submit.disabled = true;
  try {
    await api("/api/session", { body: { name: name.value.trim(), password: password.value }, noRedirect: true });
    location.assign(target);
  } catch (err) {
    error.textContent = err.status === 401 ? "用户名或密码不对。" : zhError(err);
    error.hidden = false;
    password.select();
  } finally {
    submit.disabled = false;
  }
} },
  h("h1", "扫描工作站"),
  h("p.muted", "乡镇、村档案数字化 · 请用您的账号登录"),
  h("label", "用户名", name),
  h("label", "密码", password),
  error,
  submit,
);

clear(main, form);
document.body.classList.add("login");
