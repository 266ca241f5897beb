/* The offline export's page: browse 全宗 → 门类 → 年度 → 件 and search every page, from file:// with
 * no server and no network. Data comes in <script> files (fetch is refused on file://) that call
 * SS.catalogue(...) and SS.shard(kind, number, data). Text from the archive is only ever put in the page
 * as text (textContent), never as HTML.
 *
 * The tokens are the station's (scanner_service/archive/search.py, page_tokens): each CJK character a
 * token, runs of other letters and digits a word, NFKC and lower case. The index (offline_index.py) has
 * every token and every pair of adjacent tokens, each with its pages in base-32 gaps. */
"use strict";

var SS = (function () {
  var cat = null;
  var loaded = {};
  var waiting = {};
  var PAGE_SIZE = 20;
  var CJK = [
    [0x1100, 0x11ff], [0x3005, 0x3007], [0x3021, 0x3029], [0x3038, 0x303b], [0x3040, 0x30ff],
    [0x3100, 0x312f], [0x3130, 0x318f], [0x31a0, 0x31bf], [0x31f0, 0x31ff], [0x3400, 0x4dbf],
    [0x4e00, 0x9fff], [0xa960, 0xa97f], [0xac00, 0xd7ff], [0xf900, 0xfaff], [0x16fe0, 0x16fff],
    [0x1b000, 0x1b16f], [0x20000, 0x323af]
  ];
  var LAST = "0123456789abcdefghijklmnopqrstuv";
  var MORE = "ABCDEFGHIJKLMNOPQRSTUVWXYZwxyz-_";
  var MAX_WORD = 100;
  var ALNUM = /[\p{L}\p{N}]/u;
  var MARK = /\p{M}/u;
  var COMBINING = /\p{Mn}/u;

  function isCjk(code) {
    var lo = 0, hi = CJK.length - 1;
    while (lo <= hi) {
      var mid = (lo + hi) >> 1;
      if (code < CJK[mid][0]) hi = mid - 1;
      else if (code > CJK[mid][1]) lo = mid + 1;
      else return true;
    }
    return false;
  }

  /* [token, start, end] for each token of text; start and end index the original text. */
  function tokens(text) {
    var out = [], word = [], wordStart = 0, wordEnd = 0;
    function endWord() {
      if (word.length) { out.push([word.join(""), wordStart, wordEnd]); word = []; }
    }
    var i = 0, n = text.length;
    while (i < n) {
      var code = text.codePointAt(i);
      var j = i + (code > 0xffff ? 2 : 1);
      var normal;
      if (j < n && COMBINING.test(String.fromCodePoint(text.codePointAt(j)))) {
        while (j < n && COMBINING.test(String.fromCodePoint(text.codePointAt(j)))) j += text.codePointAt(j) > 0xffff ? 2 : 1;
        normal = text.slice(i, j).normalize("NFKC").toLowerCase();
      } else if (code >= 0x4e00 && code <= 0x9fff) {
        endWord();
        out.push([text[i], i, j]);
        i = j;
        continue;
      } else {
        normal = text.slice(i, j).normalize("NFKC").toLowerCase();
      }
      for (var c of normal) {
        if (ALNUM.test(c)) {
          if (isCjk(c.codePointAt(0))) {
            endWord();
            out.push([c, i, j]);
          } else {
            if (!word.length) wordStart = i;
            word.push(c);
            wordEnd = j;
            if (word.length >= MAX_WORD) endWord();
          }
        } else if (!MARK.test(c)) {
          endWord();
        }
      }
      i = j;
    }
    endWord();
    return out;
  }

  function termHash(term) {
    var h = 0x811c9dc5;
    for (var c of term) h = Math.imul(h ^ c.codePointAt(0), 0x01000193) >>> 0;
    return h >>> 0;
  }

  function decode(text) {
    var pages = [], last = -1, value = 0;
    for (var k = 0; k < text.length; k++) {
      var ch = text[k], more = MORE.indexOf(ch);
      if (more >= 0) value = value * 32 + more;
      else { last += value * 32 + LAST.indexOf(ch); pages.push(last); value = 0; }
    }
    return pages;
  }

  function load(kind, number) {
    var key = kind + number;
    if (key in loaded) return Promise.resolve(loaded[key]);
    if (waiting[key]) return waiting[key].promise;
    var entry = {};
    entry.promise = new Promise(function (resolve, reject) { entry.resolve = resolve; entry.reject = reject; });
    waiting[key] = entry;
    var script = document.createElement("script");
    var name = (kind === "i" ? "data/index/i" : "data/text/t") + String(number).padStart(4, "0") + ".js";
    script.src = name;
    script.onerror = function () {
      delete waiting[key];
      entry.reject(new Error("无法读取文件 " + name + "：光盘可能已损坏，请用“校验文件”检查。"));
    };
    document.head.appendChild(script);
    return entry.promise;
  }

  function shard(kind, number, data) {
    var key = kind + number;
    loaded[key] = data;
    if (waiting[key]) { waiting[key].resolve(data); delete waiting[key]; }
  }

  /* ---- the catalogue -------------------------------------------------------------------------------- */

  var byFirst = []; // [first page, item index] of the items on this volume, by first page

  function catalogue(data) {
    cat = data;
    cat.items.forEach(function (item, index) {
      if (item.pdf) byFirst.push([item.first, index]);
    });
    byFirst.sort(function (a, b) { return a[0] - b[0]; });
    document.title = cat.title;
    el("title").textContent = cat.title;
    var made = "制作于 " + cat.made_at + "，制作人 " + cat.made_by + (cat.recipient ? "，接收单位 " + cat.recipient : "");
    el("made").textContent = " · " + made;
    if (cat.volumes > 1) {
      var note = el("volume-note");
      note.textContent = "本盘为第 " + cat.volume + " 盘（共 " + cat.volumes + " 盘）。检索只查本盘的页面；" +
        "目录列出全部档案，不在本盘的注明所在盘号。";
      note.hidden = false;
    }
    window.addEventListener("hashchange", route);
    el("search-form").addEventListener("submit", function (event) {
      event.preventDefault();
      var q = el("q").value.trim();
      if (q) location.hash = "#/s/" + encodeURIComponent(q);
    });
    route();
  }

  function missingCatalogue() {
    setStatus("无法读取目录文件 data/catalogue.js：光盘（文件夹）可能不完整，请用“校验文件”检查。", true);
  }

  function itemOfPage(page) {
    var lo = 0, hi = byFirst.length - 1, found = -1;
    while (lo <= hi) {
      var mid = (lo + hi) >> 1;
      if (byFirst[mid][0] <= page) { found = mid; lo = mid + 1; } else hi = mid - 1;
    }
    return found < 0 ? null : byFirst[found][1];
  }

  function pageText(page) {
    var size = cat.text_shard_pages;
    return load("t", Math.floor(page / size)).then(function (texts) { return texts[page % size]; });
  }

  /* ---- drawing -------------------------------------------------------------------------------------- */

  function el(id) { return document.getElementById(id); }

  function make(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") node.textContent = attrs[k];
      else if (k === "className") node.className = attrs[k];
      else node.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (child) {
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
    return node;
  }

  function setStatus(text, bad) {
    var main = el("main");
    main.replaceChildren(make("p", { id: "status", className: bad ? "error" : "", text: text }));
  }

  function crumbs(parts) {
    var nav = el("crumbs");
    nav.replaceChildren();
    parts.forEach(function (part, k) {
      if (k) nav.appendChild(document.createTextNode(" › "));
      nav.appendChild(part[1] ? make("a", { href: part[1], text: part[0] }) : make("span", { text: part[0] }));
    });
  }

  function fondsName(code) {
    for (var k = 0; k < cat.fonds.length; k++) if (cat.fonds[k].code === code) return cat.fonds[k].name;
    return null;
  }

  function categoryName(code) { return cat.categories[code] || code; }

  function pdfHref(item, page) {
    var href = item.pdf.split("/").map(encodeURIComponent).join("/");
    return page ? href + "#page=" + page : href;
  }

  function hrefOf(parts) { return "#/f/" + parts.map(encodeURIComponent).join("/"); }

  function table(heads, rows) {
    var head = make("tr", {}, heads.map(function (h) { return make("th", { text: h[0], className: h[1] || "" }); }));
    return make("table", {}, [make("thead", {}, [head]), make("tbody", {}, rows)]);
  }

  function levelRows(values, label, href) {
    return values.map(function (v) {
      return make("tr", {}, [
        make("td", {}, [make("a", { href: href(v.value), text: label(v.value) })]),
        make("td", { className: "num", text: String(v.items) }),
        make("td", { className: "num", text: String(v.pages) })
      ]);
    });
  }

  function group(items, key) {
    var seen = {}, order = [];
    items.forEach(function (item) {
      var value = String(item[key]);
      if (!(value in seen)) { seen[value] = { value: value, items: 0, pages: 0 }; order.push(seen[value]); }
      seen[value].items += 1;
      seen[value].pages += item.pages;
    });
    return order;
  }

  function showLevels(fonds, category, year) {
    var items = cat.items.filter(function (item) {
      return (!fonds || item.fonds === fonds) && (!category || item.category === category) &&
        (!year || String(item.year) === year);
    });
    var trail = [["全部全宗", fonds ? "#/" : null]];
    if (fonds) trail.push([fonds + (fondsName(fonds) ? " " + fondsName(fonds) : ""), category ? hrefOf([fonds]) : null]);
    if (category) trail.push([categoryName(category), year ? hrefOf([fonds, category]) : null]);
    if (year) trail.push([year + " 年度", null]);
    crumbs(trail);
    var main = el("main");
    if (!items.length) { setStatus("这里没有档案。"); return; }
    if (year) { main.replaceChildren(make("h2", { text: trail[trail.length - 1][0] + "（" + items.length + " 件）" }), itemTable(items)); return; }
    var heads, rows;
    if (!fonds) {
      heads = [["全宗"], ["件数", "num"], ["页数", "num"]];
      rows = levelRows(group(items, "fonds"), function (v) { return v + (fondsName(v) ? " " + fondsName(v) : ""); },
        function (v) { return hrefOf([v]); });
    } else if (!category) {
      heads = [["门类"], ["件数", "num"], ["页数", "num"]];
      rows = levelRows(group(items, "category"), function (v) { return v + " " + categoryName(v); },
        function (v) { return hrefOf([fonds, v]); });
    } else {
      heads = [["年度"], ["件数", "num"], ["页数", "num"]];
      rows = levelRows(group(items, "year"), function (v) { return v + " 年度"; },
        function (v) { return hrefOf([fonds, category, v]); });
    }
    main.replaceChildren(table(heads, rows));
  }

  function itemTable(items) {
    var rows = items.map(function (item) {
      var index = cat.items.indexOf(item);
      var open = item.pdf ? make("a", { href: pdfHref(item), text: "打开 PDF" })
        : make("span", { className: "elsewhere", text: "在第 " + item.volume + " 盘" });
      return make("tr", {}, [
        make("td", {}, [make("a", { className: "code", href: "#/i/" + index, text: item.code })]),
        make("td", { text: item.d.title || "（无题名）" }),
        make("td", { text: item.d.date || "" }),
        make("td", { className: "num", text: String(item.pages) }),
        make("td", {}, [open])
      ]);
    });
    return table([["档号"], ["题名"], ["日期"], ["页数", "num"], ["PDF"]], rows);
  }

  var FIELDS = [["title", "题名"], ["author", "责任者"], ["date", "日期"], ["doc_number", "文号"],
    ["pages", "页数（目录）"], ["retention", "保管期限"], ["serial", "序号"], ["note", "备注"]];

  function showItem(index) {
    var item = cat.items[index];
    if (!item) { setStatus("没有这件档案。", true); return; }
    crumbs([["全部全宗", "#/"], [item.fonds + (fondsName(item.fonds) ? " " + fondsName(item.fonds) : ""), hrefOf([item.fonds])],
      [categoryName(item.category), hrefOf([item.fonds, item.category])],
      [item.year + " 年度", hrefOf([item.fonds, item.category, String(item.year)])], [item.code, null]]);
    var list = make("dl", { className: "desc" }, [make("dt", { text: "档号" }), make("dd", { className: "code", text: item.code })]);
    FIELDS.forEach(function (f) {
      var value = item.d[f[0]];
      if (f[0] === "retention") value = cat.retentions[value] || value;
      if (value !== undefined && value !== null && value !== "") {
        list.appendChild(make("dt", { text: f[1] }));
        list.appendChild(make("dd", { text: String(value) }));
      }
    });
    list.appendChild(make("dt", { text: "PDF 页数" }));
    list.appendChild(make("dd", { text: String(item.pages) }));
    var open = item.pdf ? make("a", { className: "open-pdf", href: pdfHref(item), text: "打开 PDF（" + item.pages + " 页）" })
      : make("p", { className: "elsewhere", text: "本件的 PDF 在第 " + item.volume + " 盘。" });
    el("main").replaceChildren(make("h2", { text: item.d.title || item.code }), list, open);
  }

  /* ---- search --------------------------------------------------------------------------------------- */

  function phrases(query) {
    var out = [], seen = {};
    query.split(/\s+/).forEach(function (part) {
      var phrase = tokens(part).map(function (t) { return t[0]; });
      var key = phrase.join(" ");
      if (phrase.length && !seen[key]) { seen[key] = true; out.push(phrase); }
    });
    return out;
  }

  function termsOf(phrase) {
    if (phrase.length === 1) return [phrase[0]];
    var terms = [];
    for (var k = 0; k + 1 < phrase.length; k++) terms.push(phrase[k] + " " + phrase[k + 1]);
    return terms;
  }

  function postings(term) {
    if (!cat.index_shards) return Promise.resolve([]);
    return load("i", termHash(term) % cat.index_shards).then(function (data) {
      return data[term] ? decode(data[term]) : [];
    });
  }

  function intersect(a, b) {
    var out = [], i = 0, j = 0;
    while (i < a.length && j < b.length) {
      if (a[i] === b[j]) { out.push(a[i]); i++; j++; } else if (a[i] < b[j]) i++; else j++;
    }
    return out;
  }

  /* Where each phrase occurs in text: [start, end] spans of the original text. */
  function occurrences(text, list) {
    var toks = tokens(text), spans = [];
    list.forEach(function (phrase) {
      for (var k = 0; k + phrase.length <= toks.length; k++) {
        var same = true;
        for (var m = 0; m < phrase.length && same; m++) same = toks[k + m][0] === phrase[m];
        if (same) spans.push([toks[k][1], toks[k + phrase.length - 1][2]]);
      }
    });
    return spans.sort(function (a, b) { return a[0] - b[0]; });
  }

  function snippet(text, spans) {
    var first = spans.length ? spans[0] : [0, 0];
    var start = Math.max(0, first[0] - 40), end = Math.min(text.length, first[1] + 80);
    var node = make("p", { className: "snippet" });
    var at = start;
    if (start > 0) node.appendChild(document.createTextNode("…"));
    spans.forEach(function (span) {
      if (span[0] < at || span[1] > end) return;
      node.appendChild(document.createTextNode(text.slice(at, span[0])));
      node.appendChild(make("mark", { text: text.slice(span[0], span[1]) }));
      at = span[1];
    });
    node.appendChild(document.createTextNode(text.slice(at, end).replace(/\s+/g, " ")));
    if (end < text.length) node.appendChild(document.createTextNode("…"));
    return node;
  }

  /* The pages that hold every phrase of the query, handed out a few at a time. A phrase of one or two
   * tokens is one term of the index, so its pages are exact. For a longer one the pages that hold all its
   * pairs are candidates, and each is read (its text shard loaded) when it is about to be shown: a common
   * phrase over 20,000 pages answers with its first hits at once instead of reading every page first. */
  function Hits(candidates, long) {
    this.candidates = candidates;
    this.long = long;
    this.cursor = 0; // candidates read so far
    this.pages = long.length ? [] : candidates; // pages known to hold the query
  }
  Hits.prototype.exact = function () { return !this.long.length || this.cursor >= this.candidates.length; };
  Hits.prototype.count = function () {
    return this.long.length ? this.pages.length + this.candidates.length - this.cursor : this.candidates.length;
  };
  Hits.prototype.items = function () {
    var seen = {};
    this.pages.forEach(function (page) { seen[itemOfPage(page)] = true; });
    return Object.keys(seen).length;
  };
  /* The next n hits after the first `shown`, each with its page's text. */
  Hits.prototype.take = function (shown, n) {
    var self = this;
    function step() {
      if (self.pages.length >= shown + n || self.cursor >= self.candidates.length || !self.long.length) {
        var next = self.pages.slice(shown, shown + n);
        return Promise.all(next.map(pageText)).then(function (texts) {
          return next.map(function (page, k) { return { page: page, text: texts[k] || "" }; });
        });
      }
      var batch = self.candidates.slice(self.cursor, self.cursor + Math.max(shown + n - self.pages.length, 8));
      self.cursor += batch.length;
      return Promise.all(batch.map(pageText)).then(function (texts) {
        batch.forEach(function (page, k) {
          var text = texts[k] || "";
          var all = self.long.every(function (phrase) { return occurrences(text, [phrase]).length; });
          if (all) self.pages.push(page);
        });
        return step();
      });
    }
    return step();
  };

  function search(query) {
    var started = performance.now();
    var list = phrases(query);
    el("q").value = query;
    crumbs([["全部全宗", "#/"], ["检索：" + query, null]]);
    if (!list.length) { setStatus("检索词中没有可查的文字。"); return Promise.resolve(); }
    setStatus("正在检索……");
    var terms = [];
    list.forEach(function (phrase) { termsOf(phrase).forEach(function (t) { if (terms.indexOf(t) < 0) terms.push(t); }); });
    return Promise.all(terms.map(postings)).then(function (lists) {
      lists.sort(function (a, b) { return a.length - b.length; });
      var long = list.filter(function (phrase) { return phrase.length > 2; });
      return showHits(query, list, new Hits(lists.reduce(intersect), long), started);
    }).catch(function (err) { setStatus(err.message, true); });
  }

  function showHits(query, list, hits, started) {
    var main = el("main");
    var summary = make("p", { id: "search-summary", className: "summary", "data-q": query });
    var ol = make("ol", { className: "hits", id: "hits" });
    main.replaceChildren(summary, ol);
    var shown = 0, first = true;
    function tell() {
      var ms = Math.round(performance.now() - started);
      if (!hits.count()) {
        summary.textContent = "本盘中没有找到“" + query + "”。";
      } else {
        var count = hits.exact() ? "找到 " + hits.count() + " 页，在 " + hits.items() + " 件档案中"
          : "找到约 " + hits.count() + " 页";
        summary.textContent = count + (first ? "（用时 " + (ms / 1000).toFixed(2) + " 秒）" : "") +
          "。点击题名打开 PDF 的那一页。";
      }
      if (first) summary.setAttribute("data-ms", String(ms));
      first = false;
    }
    function more() {
      return hits.take(shown, PAGE_SIZE).then(function (next) {
        shown += next.length;
        next.forEach(function (hit) {
          var index = itemOfPage(hit.page), item = cat.items[index];
          var pageNo = hit.page - item.first + 1;
          var link = make("a", { className: "open", href: pdfHref(item, pageNo) }, [
            make("span", { className: "code", text: item.code }), " " + (item.d.title || "")
          ]);
          ol.appendChild(make("li", { className: "hit" }, [
            link, make("span", { className: "page", text: "第 " + pageNo + " 页" }),
            make("a", { className: "page", href: "#/i/" + index, text: "著录信息" }),
            snippet(hit.text, occurrences(hit.text, list))
          ]));
        });
        var button = el("more");
        if (button) button.remove();
        var left = hits.count() - shown;
        if (left > 0) {
          var again = make("button", { id: "more", className: "plain", type: "button",
            text: "显示更多（还有" + (hits.exact() ? " " : "约 ") + left + " 页）" });
          again.addEventListener("click", function () { more().then(tell); });
          main.appendChild(again);
        }
      });
    }
    return more().then(tell);
  }

  function route() {
    if (!cat) return;
    var hash = location.hash.replace(/^#\/?/, "");
    var parts = hash.split("/").map(function (p) {
      try { return decodeURIComponent(p); } catch (err) { return p; } // a hash typed by hand
    });
    window.scrollTo(0, 0);
    if (parts[0] === "s" && parts[1]) search(parts.slice(1).join("/"));
    else if (parts[0] === "i") showItem(Number(parts[1]));
    else if (parts[0] === "f") showLevels(parts[1], parts[2], parts[3]);
    else showLevels();
  }

  return { catalogue: catalogue, shard: shard, missingCatalogue: missingCatalogue, tokens: tokens, termHash: termHash, decode: decode };
})();
