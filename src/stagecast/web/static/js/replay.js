// Chat replay beside a VOD: the broadcast's chat, shown in step with the player.
//
// Messages come from GET /api/v1/vods/ID/chat in media-time order, a page at a time, ahead of
// the playhead; on every `timeupdate` those sent up to the playhead move from the queue into
// the log. A message's `media_time` is wall-clock seconds since the broadcast started, which
// the recording matches until the encoder reconnects (the time it was away is not recorded),
// so the playhead is read through the recording's own clock: the EXT-X-PROGRAM-DATE-TIME of the
// segment being played (`replayPosition`). Pausing stops `timeupdate`, so the log stops too; a
// playback rate changes how fast the playhead moves, and with it the log and the look-ahead.
// A seek, either way, starts over from the new position (with the half minute before it for
// context). Each start-over bumps a generation number, so an answer to an older request is
// dropped. Message text goes into the page as text nodes only (never as HTML).
"use strict";

const REPLAY_PAGE = 100;
const REPLAY_CONTEXT = 30; // seconds of chat shown before the position a replay starts from
const REPLAY_AHEAD = 30; // seconds of media to keep queued ahead of the playhead, at 1x
const REPLAY_LOW_WATER = 20; // messages queued below which the next page is fetched
const REPLAY_MAX_LINES = 300; // older lines leave the log
const REPLAY_RETRY_MS = 3000;
const REPLAY_STORAGE_KEY = "stagecast.chatReplay";

function replayClock(seconds) {
  const whole = Math.max(0, Math.floor(seconds));
  const h = Math.floor(whole / 3600), m = Math.floor((whole % 3600) / 60), s = whole % 60;
  const mm = h ? String(m).padStart(2, "0") : String(m);
  return (h ? h + ":" : "") + mm + ":" + String(s).padStart(2, "0");
}

// The broadcast time (seconds since `startedAt`, epoch ms) shown at the video's position: the
// program date-time of the segment there plus the way into it. Without hls.js, a playlist
// without dates or before it loaded, the position itself.
function replayPosition(video, startedAt) {
  const t = video.currentTime;
  const hls = window.stagecastPlayer && window.stagecastPlayer.hls;
  const level = hls && hls.levels && hls.levels[Math.max(hls.currentLevel, 0)];
  const fragments = level && level.details ? level.details.fragments : null;
  if (!startedAt || !fragments || !fragments.length) return t;
  let low = 0, high = fragments.length - 1;
  while (low < high) { // the last fragment starting at or before t
    const mid = (low + high + 1) >> 1;
    if (fragments[mid].start <= t) low = mid; else high = mid - 1;
  }
  const fragment = fragments[low];
  if (fragment.programDateTime === null || fragment.programDateTime === undefined) return t;
  return Math.max(0, (fragment.programDateTime - startedAt) / 1000 + (t - fragment.start));
}

function replayEnabled() {
  try { return localStorage.getItem(REPLAY_STORAGE_KEY) !== "off"; } catch (_) { return true; }
}

function rememberReplay(on) {
  try { localStorage.setItem(REPLAY_STORAGE_KEY, on ? "on" : "off"); } catch (_) { /* private mode */ }
}

function initReplay(video, panel, { url, token, toggle, layout, startedAt }) {
  const log = panel.querySelector("[data-replay=log]");
  const state = panel.querySelector("[data-replay=state]");
  const notice = panel.querySelector("[data-replay=notice]");
  let generation = 0;
  let queue = [];
  let cursor = null;
  let start = 0;
  let done = false;
  let loading = false;
  let retryAt = 0;
  let on = false;
  let stale = false; // the log still shows the lines from before a restart

  function setState(text) { state.textContent = text; }

  function line(message) {
    const item = el("li", { class: "chat-line", "data-id": String(message.id),
                            "data-media-time": String(message.media_time) });
    item.append(
      el("span", { class: "chat-time", text: replayClock(message.media_time) }),
      el("span", { class: "chat-author", text: message.author }),
      el("span", { class: "chat-body", text: message.body }),
    );
    return item;
  }

  // Move every queued message sent up to the playhead into the log; fetch ahead if needed.
  function render() {
    if (!on) return;
    const now = replayPosition(video, startedAt);
    const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 24;
    let added = 0;
    while (queue.length && queue[0].media_time <= now) {
      log.append(line(queue.shift()));
      added += 1;
    }
    while (log.childElementCount > REPLAY_MAX_LINES) log.firstElementChild.remove();
    if (added && atBottom) log.scrollTop = log.scrollHeight;
    const ahead = REPLAY_AHEAD * Math.max(1, video.playbackRate || 1);
    const last = queue.length ? queue[queue.length - 1].media_time : -Infinity;
    if (!done && (queue.length < REPLAY_LOW_WATER || last < now + ahead)) fetchMore();
    if (done && !queue.length && !log.childElementCount) {
      setState(start === 0 ? "No chat in this recording" : "No chat from here on");
    }
  }

  async function fetchMore() {
    if (loading || done || performance.now() < retryAt) return;
    loading = true;
    const mine = generation;
    const params = new URLSearchParams({ from: String(start), limit: String(REPLAY_PAGE) });
    if (cursor) params.set("cursor", cursor);
    if (token) params.set("token", token);
    try {
      const page = await api("GET", url + "?" + params.toString());
      if (mine !== generation) return;
      clearStale();
      queue.push(...page.items);
      cursor = page.next_cursor;
      done = !page.has_more;
      notice.textContent = "";
      setState("");
    } catch (e) {
      if (mine !== generation) return;
      clearStale();
      failed(e);
    } finally {
      if (mine === generation) loading = false;
    }
    if (mine === generation) render();
  }

  function failed(e) {
    notice.replaceChildren();
    if (e.status === 401) {
      done = true;
      const next = encodeURIComponent(location.pathname + location.search);
      notice.append(el("a", { href: "/login?next=" + next, text: "Sign in" }), " to see the chat replay.");
    } else if (e.status === 404) {
      done = true;
      notice.textContent = "The chat replay is not available.";
    } else {
      retryAt = performance.now() + REPLAY_RETRY_MS;
      notice.textContent = "Could not load the chat replay; trying again…";
    }
  }

  // The lines of before a restart leave when the first answer after it arrives, so a seek
  // (hls.js also makes small ones across gaps) replaces the log without a blank moment.
  function clearStale() {
    if (stale) log.replaceChildren();
    stale = false;
  }

  // Start over from the player's position: the log shows the half minute before it.
  function restart() {
    generation += 1;
    queue = [];
    cursor = null;
    done = false;
    loading = false;
    retryAt = 0;
    const now = replayPosition(video, startedAt);
    start = Math.max(0, Math.floor((now - REPLAY_CONTEXT) * 1000) / 1000);
    stale = true;
    notice.textContent = "";
    setState("Loading…");
    fetchMore();
  }

  function show(enabled) {
    on = enabled;
    panel.hidden = !enabled;
    layout.classList.toggle("replay-off", !enabled);
    toggle.checked = enabled;
    if (enabled) restart();
    else { generation += 1; queue = []; stale = false; log.replaceChildren(); }
  }

  video.addEventListener("timeupdate", render);
  video.addEventListener("ratechange", render);
  video.addEventListener("seeking", () => { if (on) restart(); });
  toggle.addEventListener("change", () => { rememberReplay(toggle.checked); show(toggle.checked); });
  show(replayEnabled());
  return { restart, render, position: () => replayPosition(video, startedAt) };
}

(() => {
  const layout = document.getElementById("vod-watch");
  const root = document.getElementById("vod");
  const video = document.getElementById("player");
  const panel = document.getElementById("replay");
  const toggle = document.getElementById("replay-toggle");
  if (!layout || !root || !video || !panel || !toggle) return;
  const token = new URL(root.dataset.src, location.href).searchParams.get("token");
  const startedAt = Date.parse(root.dataset.startedAt || "") || null;
  window.stagecastReplay = initReplay(
    video, panel, { url: panel.dataset.url, token, toggle, layout, startedAt });
})();
