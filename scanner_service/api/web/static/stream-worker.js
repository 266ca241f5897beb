// One live stream (GET /api/stream) for every tab of one login in this browser (ui.js names the worker after
// the login, so a later login never joins a stream opened with an earlier one's cookie). A browser keeps at
// most 6 connections to one host, and an EventSource per tab held one each: with six tabs open the seventh never
// loaded. Each tab connects a port (ui.js liveEvents), says which kinds of event it wants, and is sent
// every event and whether the stream is connected; a stream opened again resumes after the last event.
const ports = new Set();
const kinds = new Set();
let source = null;
let open = false;
let lastId = null;

function post(message) {
  for (const port of ports) port.postMessage(message);
}

function listen(kind) {
  source.addEventListener(kind, (e) => {
    if (e.lastEventId) lastId = e.lastEventId;
    post({ kind, data: e.data });
  });
}

function connect() {
  if (source && source.readyState !== EventSource.CLOSED) return;
  open = false;
  source = new EventSource(lastId ? `/api/stream?after=${encodeURIComponent(lastId)}` : "/api/stream");
  source.onopen = () => { open = true; post({ state: true }); };
  source.onerror = () => { open = false; post({ state: false }); };
  for (const kind of kinds) listen(kind);
}

onconnect = (e) => {
  const port = e.ports[0];
  port.onmessage = (m) => {
    const message = m.data || {};
    if (message.bye) {
      ports.delete(port);
      if (!ports.size && source) { source.close(); source = null; open = false; } // no tab left to tell
      return;
    }
    ports.add(port);
    connect();
    for (const kind of message.kinds || []) {
      if (!kinds.has(kind)) { kinds.add(kind); listen(kind); }
    }
    if (open) port.postMessage({ state: true });
  };
  port.start();
};
