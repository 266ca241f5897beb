// 批次详情 (to be built).
import { start, h, clear } from "./ui.js";

start((who, main) => clear(main, h("h1", "批次详情")), { staffOnly: true });
