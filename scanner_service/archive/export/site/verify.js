/* verify.html: the files a person picks (the export's folder) against data/manifest.js, by SHA-256,
 * in the browser (crypto.subtle; file:// is a secure context). A page from file:// cannot read files on
 * its own, so the person chooses the folder; nothing leaves the machine. */
"use strict";

var SS = (function () {
  var manifest = null;

  function el(id) { return document.getElementById(id); }

  function hex(buffer) {
    return Array.prototype.map.call(new Uint8Array(buffer), function (b) { return b.toString(16).padStart(2, "0"); }).join("");
  }

  function problem(path, text) {
    var body = el("verify-problems").querySelector("tbody");
    var row = document.createElement("tr");
    [path, text].forEach(function (value) {
      var cell = document.createElement("td");
      cell.textContent = value;
      row.appendChild(cell);
    });
    body.appendChild(row);
    el("verify-problems").hidden = false;
  }

  function status(text, kind) {
    var node = el("verify-status");
    node.textContent = text;
    node.className = kind || "";
  }

  function check(fileList) {
    if (!manifest) return;
    if (!window.crypto || !crypto.subtle) {
      status("这个浏览器不能计算 SHA-256，请换用较新的 Chrome、Edge 或 Firefox。", "error");
      return;
    }
    var byPath = {};
    Array.prototype.forEach.call(fileList, function (file) {
      var rel = (file.webkitRelativePath || file.name).split("/").slice(1).join("/");
      byPath[rel] = file;
    });
    el("verify-problems").querySelector("tbody").replaceChildren();
    el("verify-problems").hidden = true;
    var rows = manifest.files, bad = 0, missing = 0, good = 0, k = 0;
    var bar = el("verify-progress");
    bar.max = rows.length;
    bar.value = 0;
    bar.hidden = false;
    function next() {
      if (k >= rows.length) {
        bar.hidden = true;
        var text = "校验完毕：共 " + rows.length + " 个文件，" + good + " 个完好";
        if (bad) text += "，" + bad + " 个已损坏";
        if (missing) text += "，" + missing + " 个缺少";
        status(text + "。", bad || missing ? "error" : "ok");
        return Promise.resolve();
      }
      var row = rows[k++], file = byPath[row[0]];
      bar.value = k;
      status("正在校验第 " + k + " 个文件（共 " + rows.length + " 个）：" + row[0]);
      if (!file) { missing++; problem(row[0], "缺少"); return next(); }
      return file.arrayBuffer().then(function (data) {
        return crypto.subtle.digest("SHA-256", data);
      }).then(function (digest) {
        if (hex(digest) === row[1]) good++;
        else { bad++; problem(row[0], "已损坏（校验值不符）"); }
      }, function () {
        bad++;
        problem(row[0], "无法读取");
      }).then(next);
    }
    return next();
  }

  function loadManifest(data) {
    manifest = data;
    status("请选择文件夹。清单中共有 " + data.files.length + " 个文件。");
    el("folder").addEventListener("change", function (event) { check(event.target.files); });
  }

  function missingManifest() {
    status("无法读取清单 data/manifest.js：光盘（文件夹）不完整。", "error");
  }

  return { manifest: loadManifest, missingManifest: missingManifest };
})();
