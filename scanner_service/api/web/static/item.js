// 档案详情 (to be built).
import { start, h, clear } from "./ui.js";

start((who, main) => clear(main, h("h1", "档案详情")));
