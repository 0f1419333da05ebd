// The watch page of a VOD: attach the shared player to the master playlist the server chose.
"use strict";
(() => {
  const root = document.getElementById("vod");
  const video = document.getElementById("player");
  if (!root || !video || root.dataset.status !== "ready") return;
  const error = document.getElementById("player-error");
  attachPlayer(video, root.dataset.src, {
    live: false,
    onError: (data) => { error.textContent = "Playback failed: " + (data.details || data.type); },
  });
})();
