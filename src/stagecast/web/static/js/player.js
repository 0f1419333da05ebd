// Attach an HLS source to a <video>: hls.js where Media Source Extensions exist, native HLS otherwise.
//
// A live channel's `latency` picks the hls.js mode. "low": Low-Latency HLS (parts, blocking
// playlist reloads, preload hints); no liveSync* option is set, so hls.js holds the playlist's
// PART-HOLD-BACK behind live (setting one would replace it), and a player that fell behind
// plays at up to 1.1x until it is back. "standard" (and every VOD): whole segments, two target
// durations behind live. Safari's native HLS needs neither: it reads the playlist's tags.
"use strict";

const HLS_COMMON = {
  manifestLoadingMaxRetry: 6,
  levelLoadingMaxRetry: 6,
  fragLoadingMaxRetry: 6,
  xhrSetup: (xhr) => { xhr.withCredentials = true; },
};
const HLS_LOW_LATENCY = { lowLatencyMode: true, maxLiveSyncPlaybackRate: 1.1 };
// Standard: a segment and a half behind the newest listed one (about 3 s; with the segment
// being made, 4 to 5 s behind the encoder), and the same catch-up as low latency, so a player
// that joined late in a segment or fell behind comes back instead of staying a segment behind.
const HLS_STANDARD = { lowLatencyMode: false, liveSyncDurationCount: 1.5, maxLiveSyncPlaybackRate: 1.1 };

function attachPlayer(video, src, { live = true, latency = "standard", onError } = {}) {
  if (window.Hls && Hls.isSupported()) {
    const mode = live && latency === "low" ? HLS_LOW_LATENCY : HLS_STANDARD;
    const hls = new Hls({ ...HLS_COMMON, ...mode });
    hls.on(Hls.Events.ERROR, (_event, data) => {
      if (!data.fatal) return;
      if (data.type === Hls.ErrorTypes.NETWORK_ERROR) hls.startLoad();
      else if (data.type === Hls.ErrorTypes.MEDIA_ERROR) hls.recoverMediaError();
      else if (onError) onError(data);
    });
    hls.loadSource(src);
    hls.attachMedia(video);
    return expose({ hls, destroy: () => hls.destroy() });
  }
  if (video.canPlayType("application/vnd.apple.mpegurl")) {
    video.src = src;
    return expose({ hls: null, destroy: () => { video.removeAttribute("src"); video.load(); } });
  }
  if (onError) onError({ type: "unsupported", details: "This browser cannot play HLS." });
  return { hls: null, destroy: () => {} };
}

// The page's newest player is `window.stagecastPlayer` (its hls.js instance is `.hls`, null
// with native HLS), for tests and for a look from the browser console; destroying it clears it.
function expose(player) {
  const destroy = player.destroy;
  player.destroy = () => {
    if (window.stagecastPlayer === player) window.stagecastPlayer = null;
    destroy();
  };
  window.stagecastPlayer = player;
  return player;
}
