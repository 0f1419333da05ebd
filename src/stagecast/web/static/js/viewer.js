// The viewer page: follows the channel's live state and (re)attaches the player.
"use strict";
(() => {
  const root = document.getElementById("viewer");
  const slug = root.dataset.slug;
  const token = new URLSearchParams(location.search).get("token");
  const video = document.getElementById("player");
  const badge = document.getElementById("live-state");
  const offline = document.getElementById("offline-note");
  let player = null;
  let playingSession = null;
  const LABELS = { live: "LIVE", reconnecting: "Reconnecting…", idle: "Starting…", offline: "Offline" };

  function show(state) {
    badge.textContent = LABELS[state] || state;
    badge.className = "badge" + (state === "live" ? " live" : "");
    badge.dataset.state = state;
  }

  async function refresh() {
    const query = token ? "?token=" + encodeURIComponent(token) : "";
    let status;
    try {
      status = await api("GET", "/api/v1/channels/" + encodeURIComponent(slug) + "/live" + query);
    } catch (e) {
      show(e.status === 404 ? "not found" : "offline");
      return;
    }
    document.getElementById("channel-title").textContent = status.title;
    document.title = status.title + " · Stagecast";
    show(status.state);
    const playable = status.session_id !== null && status.state !== "idle";
    offline.hidden = playable;
    if (playable && playingSession !== status.session_id) {
      if (player) player.destroy();
      player = attachPlayer(video, status.master_url, { live: true });
      playingSession = status.session_id;
      video.play().catch(() => {});
    } else if (!playable && player) {
      player.destroy();
      player = null;
      playingSession = null;
    }
    root.dispatchEvent(new CustomEvent("stagecast:status", { detail: status }));
  }

  refresh();
  setInterval(refresh, 4000);
  if (window.initChat) {
    const chatRoot = document.getElementById("chat");
    if (chatRoot) window.initChat(chatRoot, slug, { token });
  }
})();
