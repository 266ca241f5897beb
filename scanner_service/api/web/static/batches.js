// 批次 (to be built).
import { start, h, clear } from "./ui.js";

start((who, main) => clear(main, h("h1", "批次")), { staffOnly: true });
