// 检索 (to be built).
import { start, h, clear } from "./ui.js";

start((who, main) => clear(main, h("h1", "检索")));
