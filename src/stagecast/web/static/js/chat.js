// The chat panel: history over REST, live messages over the chat socket, posting; moderation
// is in chat-moderation.js. Every piece of user text is set with textContent, never parsed as
// HTML, so markup in a message (an XSS payload included) is shown as the characters it is.
"use strict";

(function () {
  if (window.initChat) return; // the panel may be included by a page that also loads this file

  const FINAL_CLOSES = new Set([4401, 4403, 4404]); // unauthorised, banned/cross-site, no channel
  const MAX_LINES = 500;

  function initChat(root, slug, options) {
    const opts = options || {};
    const $ = (name) => root.querySelector('[data-chat="' + name + '"]');
    const log = $("log"), form = $("form"), input = $("input"), count = $("count");
    const state = $("state"), notice = $("notice"), review = $("review"), reviewBox = $("review-box");
    const base = "/api/v1/channels/" + encodeURIComponent(slug) + "/chat";
    const lines = new Map(); // message id -> <li>
    const moderation = window.createChatModeration(root, {
      base, say: (text) => say(text), timeOf: (iso) => timeOf(iso),
    });
    let socket = null, lastId = 0, maxLength = 500, heartbeat = 25, watchdog = null;
    let backoff = 1000, retryTimer = null, hello = null, stopped = false, loadedHistory = false;
    let timeoutTimer = null;

    function setState(text, kind) { state.textContent = text; state.dataset.state = kind || ""; }
    function say(text) { notice.textContent = text || ""; }
    function query(extra) {
      const params = new URLSearchParams(extra || {});
      if (opts.token) params.set("token", opts.token);
      const text = params.toString();
      return text ? "?" + text : "";
    }

    // -- Rendering -------------------------------------------------------------------------

    function timeOf(iso) {
      const when = new Date(iso);
      return isNaN(when) ? "" : when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    }

    function render(message) {
      if (lines.has(message.id)) return;
      const item = el("li", { class: "chat-line", "data-id": String(message.id) },
        el("span", { class: "chat-time", text: timeOf(message.sent_at) }),
        el("span", { class: "chat-author", text: message.author }),
        el("span", { class: "chat-body", text: message.body }));
      // Keep id order: live messages usually go last, history goes before them.
      let after = null;
      for (const [id, node] of lines) { if (id > message.id && (!after || id < Number(after.dataset.id))) after = node; }
      const stick = log.scrollTop + log.clientHeight >= log.scrollHeight - 8;
      log.insertBefore(item, after);
      lines.set(message.id, item);
      moderation.decorate(item, message);
      lastId = Math.max(lastId, message.id);
      while (lines.size > MAX_LINES) remove(Math.min(...lines.keys()));
      if (stick) log.scrollTop = log.scrollHeight;
    }

    function remove(id) {
      const item = lines.get(id);
      if (!item) return;
      moderation.removing(item);
      item.remove();
      lines.delete(id);
    }

    // -- A timeout: the input is disabled, with the time left, until it ends ---------------

    function clock(seconds) {
      const m = Math.floor(seconds / 60), s = seconds % 60;
      return m + ":" + String(s).padStart(2, "0");
    }

    // `remaining` (seconds) comes from the server, so a wrong clock here does not matter.
    function timedOut(remaining, until) {
      clearInterval(timeoutTimer);
      timeoutTimer = null;
      const left = $("timeout");
      if (!(remaining > 0)) {
        const was = input.disabled;
        input.disabled = false;
        left.hidden = true;
        updateCount();
        if (was) say("Your timeout has ended: you can chat again.");
        return;
      }
      const ends = performance.now() + remaining * 1000;
      const tick = () => {
        const seconds = Math.ceil((ends - performance.now()) / 1000);
        if (seconds <= 0) { timedOut(0); return; }
        left.textContent = "Timed out: " + clock(seconds) + " left";
      };
      input.disabled = true;
      left.hidden = false;
      tick();
      updateCount();
      timeoutTimer = setInterval(tick, 1000);
      say("You are timed out until " + (until ? timeOf(until) : "later") + ".");
    }

    function reviewItem(held) {
      const item = el("li", { "data-held": String(held.id) },
        el("span", { class: "chat-author", text: held.author }),
        el("span", { class: "chat-body", text: held.body }));
      for (const [label, verb] of [["Approve", "approve"], ["Reject", "reject"]]) {
        const button = el("button", { type: "button", class: verb === "reject" ? "danger" : "", text: label });
        button.addEventListener("click", async () => {
          button.disabled = true;
          try { await api("POST", base + "/held/" + held.id + "/" + verb); item.remove(); }
          catch (e) { say(e.message); button.disabled = false; }
          reviewBox.hidden = review.children.length === 0;
        });
        item.append(button);
      }
      review.append(item);
      reviewBox.hidden = false;
    }

    // -- History over REST -----------------------------------------------------------------

    async function loadHistory() {
      try {
        const page = await api("GET", base + "/messages" + query({ limit: "50" }));
        for (const message of page.items.slice().reverse()) render(message);
        loadedHistory = true;
      } catch (e) {
        if (e.status === 401) say("Sign in to read this chat.");
        else if (e.status !== 404) say("Could not load the chat history: " + e.message);
      }
    }

    async function loadReview() {
      if (!opts.canModerate || !hello || !hello.moderator) return;
      try {
        const held = await api("GET", base + "/held" + query());
        review.replaceChildren();
        held.items.forEach(reviewItem);
        reviewBox.hidden = held.items.length === 0;
      } catch (_) { /* not a moderator here after all */ }
    }

    // -- The socket ------------------------------------------------------------------------

    function armWatchdog() {
      clearTimeout(watchdog);
      // Pings come every `heartbeat` seconds; silence for much longer means a dead link.
      watchdog = setTimeout(() => { if (socket) socket.close(4000, "heartbeat missed"); }, heartbeat * 2500);
    }

    function connect() {
      if (stopped) return;
      const scheme = location.protocol === "https:" ? "wss:" : "ws:";
      const params = lastId ? { last_id: String(lastId) } : {};
      socket = new WebSocket(scheme + "//" + location.host + base + "/socket" + query(params));
      setState("Connecting…", "");
      socket.onmessage = (event) => { armWatchdog(); handle(JSON.parse(event.data)); };
      socket.onopen = () => armWatchdog();
      socket.onclose = (event) => {
        clearTimeout(watchdog);
        socket = null;
        form.hidden = true;
        if (FINAL_CLOSES.has(event.code) || stopped) {
          setState(event.code === 4403 ? "You cannot join this chat." : "Chat unavailable.", "down");
          return;
        }
        const wait = Math.min(backoff, 30000) * (0.5 + Math.random() / 2);
        backoff = Math.min(backoff * 2, 30000);
        setState("Reconnecting…", "down");
        retryTimer = setTimeout(connect, wait);
      };
    }

    function handle(frame) {
      switch (frame.type) {
        case "hello":
          hello = frame;
          backoff = 1000;
          maxLength = frame.max_length;
          heartbeat = frame.heartbeat || heartbeat;
          setState("Live", "live");
          moderation.start(frame);
          form.hidden = !frame.can_post;
          $("signin").hidden = frame.can_post || frame.user !== null;
          updateCount();
          timedOut(frame.timeout_remaining, frame.timeout_until);
          if (!loadedHistory) loadHistory();
          loadReview();
          break;
        case "message": render(frame); break;
        case "deleted": remove(frame.id); break;
        case "purged": frame.ids.forEach(remove); break;
        case "restrictions": moderation.restrictionsChanged(); break;
        case "reset":
          for (const id of [...lines.keys()]) remove(id);
          lastId = frame.last_id;
          loadHistory();
          break;
        case "error":
          if (frame.code === "timed_out" && frame.retry_after) { timedOut(frame.retry_after, null); break; }
          say(frame.message + (frame.retry_after ? " (try again in " + Math.ceil(frame.retry_after) + " s)" : ""));
          break;
        case "held": say("Your message is held for review by a moderator."); break;
        case "timeout": timedOut(frame.until ? frame.remaining : 0, frame.until); break;
        case "settings": say(frame.slow_mode ? "Slow mode: one message every " + frame.slow_mode + " s." : "Slow mode is off."); break;
        case "review": if (opts.canModerate) reviewItem(frame); break;
        case "reviewed": {
          const item = review.querySelector('[data-held="' + Number(frame.id) + '"]');
          if (item) item.remove();
          reviewBox.hidden = review.children.length === 0;
          break;
        }
        default: break; // ping, pong, resumed
      }
    }

    // -- Posting ---------------------------------------------------------------------------

    function length(text) { return [...text.trim()].length; } // code points, as the server counts

    function updateCount() {
      const used = length(input.value);
      count.textContent = used + " / " + maxLength;
      count.classList.toggle("over", used > maxLength);
      $("send").disabled = input.disabled || used === 0 || used > maxLength;
    }

    function nonce() {
      if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
      return Date.now().toString(36) + Math.random().toString(36).slice(2);
    }

    function send() {
      const body = input.value.trim();
      if (!body || length(body) > maxLength) return;
      if (!socket || socket.readyState !== WebSocket.OPEN) { say("Not connected; reconnecting…"); return; }
      // The nonce makes a resent post (after a reconnect) safe: the server stores it once.
      socket.send(JSON.stringify({ type: "post", body, nonce: nonce() }));
      say("");
      input.value = "";
      updateCount();
    }

    input.addEventListener("input", updateCount);
    form.addEventListener("submit", (event) => { event.preventDefault(); send(); });
    window.addEventListener("pagehide", () => { stopped = true; clearTimeout(retryTimer); if (socket) socket.close(1000); });

    connect();
    return { close() { stopped = true; clearTimeout(retryTimer); if (socket) socket.close(1000); } };
  }

  window.initChat = initChat;
})();
