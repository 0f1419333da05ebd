// Attach an HLS source to a <video>: hls.js where Media Source Extensions exist, native HLS otherwise.
"use strict";

function attachPlayer(video, src, { live = true, onError } = {}) {
  if (window.Hls && Hls.isSupported()) {
    const hls = new Hls({
      lowLatencyMode: false,
      liveSyncDurationCount: 2,
      manifestLoadingMaxRetry: 6,
      levelLoadingMaxRetry: 6,
      fragLoadingMaxRetry: 6,
      xhrSetup: (xhr) => { xhr.withCredentials = true; },
    });
    hls.on(Hls.Events.ERROR, (_event, data) => {
      if (!data.fatal) return;
      if (data.type === Hls.ErrorTypes.NETWORK_ERROR) hls.startLoad();
      else if (data.type === Hls.ErrorTypes.MEDIA_ERROR) hls.recoverMediaError();
      else if (onError) onError(data);
    });
    hls.loadSource(src);
    hls.attachMedia(video);
    return { destroy: () => hls.destroy() };
  }
  if (video.canPlayType("application/vnd.apple.mpegurl")) {
    video.src = src;
    return { destroy: () => { video.removeAttribute("src"); video.load(); } };
  }
  if (onError) onError({ type: "unsupported", details: "This browser cannot play HLS." });
  return { destroy: () => {} };
}
