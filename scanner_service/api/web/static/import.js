// 目录导入 (to be built).
import { start, h, clear } from "./ui.js";

start((who, main) => clear(main, h("h1", "目录导入")), { archivistOnly: true });
