// The viewer page: follows the channel's live state and viewer count from its event feed,
// (re)attaches the player, and says "still watching" with a heartbeat while the video plays.
"use strict";
(() => {
  const root = document.getElementById("viewer");
  const slug = root.dataset.slug;
  const token = new URLSearchParams(location.search).get("token");
  const video = document.getElementById("player");
  const badge = document.getElementById("live-state");
  const offline = document.getElementById("offline-note");
  const count = document.getElementById("viewer-count");
  const query = token ? "?token=" + encodeURIComponent(token) : "";
  const base = "/api/v1/channels/" + encodeURIComponent(slug);
  const LABELS = { live: "LIVE", reconnecting: "Reconnecting…", idle: "Starting…", offline: "Offline", ended: "Offline" };
  // This browser's viewer id: sent with heartbeats and on the master playlist URL, so the page
  // and its player count as one viewer, and kept across reloads, so a viewer who reloads (or
  // comes back) during a broadcast is still one unique viewer of it.
  const vs = (() => {
    const fresh = () => Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
    try {
      const kept = localStorage.getItem("stagecast.viewer");
      if (kept && /^[A-Za-z0-9_-]{8,64}$/.test(kept)) return kept;
      const made = fresh();
      localStorage.setItem("stagecast.viewer", made);
      return made;
    } catch (_) {
      return fresh();  // storage refused (a private window's policy): counted per page load
    }
  })();
  let player = null;
  let playingSession = null;
  let heartbeatEvery = 5000;
  let heartbeatTimer = null;
  let pollTimer = null;

  function show(state) {
    badge.textContent = LABELS[state] || state;
    badge.className = "badge" + (state === "live" ? " live" : "");
    badge.dataset.state = state;
  }

  function showViewers(live, viewers) {
    if (!count) return;
    count.hidden = !live;
    count.textContent = viewers === 1 ? "1 watching" : viewers + " watching";
    count.dataset.viewers = String(viewers);
  }

  function withViewer(url) {
    return url + (url.includes("?") ? "&" : "?") + "vs=" + vs;
  }

  async function heartbeat() {
    heartbeatTimer = null;
    if (!player || video.paused) return schedule();
    try {
      const answer = await api("POST", base + "/heartbeat" + query, { vs });
      heartbeatEvery = Math.max(1000, answer.interval * 1000);
    } catch (_) { /* offline or rate limited: the next beat tries again */ }
    schedule();
  }

  function schedule() {
    if (player && heartbeatTimer === null) heartbeatTimer = setTimeout(heartbeat, heartbeatEvery);
  }

  // Read the channel's status once (title, master URL, playback token) and attach the player.
  async function refresh() {
    let status;
    try {
      status = await api("GET", base + "/live" + query);
    } catch (e) {
      show(e.status === 404 ? "not found" : "offline");
      return;
    }
    document.getElementById("channel-title").textContent = status.title;
    document.title = status.title + " · Stagecast";
    show(status.state);
    const playable = status.session_id !== null && status.state !== "idle";
    offline.hidden = playable;
    video.hidden = !playable; // the offline slate stands in for the player
    if (playable && playingSession !== status.session_id) {
      if (player) player.destroy();
      // The channel's latency picks the player's mode; a session keeps the setting it opened with,
      // and a player in either mode plays either kind of playlist.
      player = attachPlayer(video, withViewer(status.master_url), { live: true, latency: status.latency });
      playingSession = status.session_id;
      video.play().catch(() => {});
      heartbeat();
    } else if (!playable && player) {
      player.destroy();
      player = null;
      playingSession = null;
    }
    root.dispatchEvent(new CustomEvent("stagecast:status", { detail: status }));
  }

  // The feed says when something changed; the page reloads the status only then.
  function follow() {
    if (!window.EventSource) return poll();
    const feed = new EventSource(base + "/events" + query);
    let seen = null;
    feed.addEventListener("status", (event) => {
      const status = JSON.parse(event.data);
      show(status.state);
      showViewers(status.live, status.viewers);
      const key = status.state + ":" + status.session_id;
      if (key !== seen) {
        seen = key;
        refresh();
      }
    });
    feed.addEventListener("error", () => {
      // The browser reconnects by itself after a network error; a refusal (404, 429) is final.
      if (feed.readyState === EventSource.CLOSED) poll();
    });
  }

  function poll() {
    if (pollTimer === null) pollTimer = setInterval(refresh, 4000);
    refresh();
  }

  follow();
  if (window.initChat) {
    const chatRoot = document.getElementById("chat");
    if (chatRoot) window.initChat(chatRoot, slug, { token });
  }
})();
