// Kelid content script: bridges this page's window.postMessage to the extension's background.
// Runs in the top frame only (manifest all_frames: false). It accepts only messages this very
// window posted (event.source === window) and answers only to this window's own origin. It never
// tells the background who the page is: the background takes the origin from the browser.
(() => {
  const NS = 'kelid-extension-v1';
  const MAX_SESSIONS = 8;
  // Each session starts a native host process: a page may open 8 at once, then one every 2 s
  // (the SDK reconnects with backoff; a page looping open/close must not fork processes endlessly).
  const OPEN_BURST = 8;
  const OPEN_EVERY_MS = 2000;
  let openTokens = OPEN_BURST;
  let openRefilledAt = Date.now();
  const mayOpen = () => {
    const now = Date.now();
    openTokens = Math.min(OPEN_BURST, openTokens + (now - openRefilledAt) / OPEN_EVERY_MS);
    openRefilledAt = now;
    if (openTokens < 1) return false;
    openTokens -= 1;
    return true;
  };
  const sessions = new Map();
  const api = globalThis.browser ?? globalThis.chrome;

  // The SDK's synchronous "is the extension here?" (docs/extension.md): it dispatches this event,
  // cancelable, on its window; cancelling it is the answer, read when dispatchEvent returns. Injected at
  // document_start, this listener is in place before any script of the page runs. An orphaned copy
  // (the extension was disabled or updated under the page: runtime.id is gone) stays silent.
  window.addEventListener(`${NS}:probe`, (event) => {
    if (event.cancelable && api?.runtime?.id) event.preventDefault();
  });

  const toPage = (message) => window.postMessage({ ns: NS, to: 'page', ...message }, window.location.origin);

  window.addEventListener('message', (event) => {
    if (event.source !== window || event.origin !== window.location.origin) return;
    const m = event.data;
    if (typeof m !== 'object' || m === null || m.ns !== NS || m.to !== 'extension') return;
    if (typeof m.sid !== 'string' || m.sid.length > 64) return;
    if (m.type === 'ping') {
      toPage({ type: 'pong', sid: m.sid, version: api.runtime.getManifest().version });
    } else if (m.type === 'open' && !sessions.has(m.sid)) {
      if (sessions.size >= MAX_SESSIONS || !mayOpen()) {
        toPage({ type: 'close', sid: m.sid, code: 1008, reason: 'too many Kelid connections in this page' });
        return;
      }
      const port = api.runtime.connect({ name: 'kelid' });
      sessions.set(m.sid, port);
      port.onMessage.addListener((msg) => {
        if (msg.t === 'welcome') toPage({ type: 'open', sid: m.sid, tier: msg.tier });
        else if (msg.t === 'rpc') toPage({ type: 'message', sid: m.sid, text: msg.text });
        else if (msg.t === 'close') {
          sessions.delete(m.sid);
          toPage({ type: 'close', sid: m.sid, code: msg.code, reason: msg.reason });
          port.disconnect();
        }
      });
      port.onDisconnect.addListener(() => {
        if (sessions.delete(m.sid))
          toPage({ type: 'close', sid: m.sid, code: 1006, reason: 'the extension closed the connection' });
      });
    } else if (m.type === 'send' && typeof m.text === 'string') {
      sessions.get(m.sid)?.postMessage({ t: 'rpc', text: m.text });
    } else if (m.type === 'close') {
      const port = sessions.get(m.sid);
      if (port) {
        sessions.delete(m.sid);
        port.disconnect();
      }
    }
  });
})();
