// 管理 (to be built).
import { start, h, clear } from "./ui.js";

start((who, main) => clear(main, h("h1", "管理")), { archivistOnly: true });
