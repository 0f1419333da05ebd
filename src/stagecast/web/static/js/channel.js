"use strict";
const slug = document.getElementById("channel").dataset.slug;

function showKey(key, serverUrl) {
  const input = document.getElementById("stream-key");
  input.value = key;
  if (serverUrl) document.getElementById("server-url").value = serverUrl;
}

async function loadChannel() {
  const channel = await api("GET", "/api/v1/channels/" + encodeURIComponent(slug));
  document.getElementById("channel-title").textContent = channel.title;
  document.getElementById("channel-visibility").textContent = channel.visibility;
  document.getElementById("server-url").value = channel.rtmp_url;
  const fresh = sessionStorage.getItem("stagecast.newkey." + slug);
  if (fresh) { showKey(fresh); sessionStorage.removeItem("stagecast.newkey." + slug); }
}

document.getElementById("reveal-key").addEventListener("click", (event) => {
  const input = document.getElementById("stream-key");
  const reveal = input.type === "password";
  input.type = reveal ? "text" : "password";
  event.target.textContent = reveal ? "Hide" : "Reveal";
  event.target.setAttribute("aria-pressed", String(reveal));
});

document.getElementById("rotate-key").addEventListener("click", async () => {
  if (!confirm("Rotate the stream key? An encoder using the old key is disconnected.")) return;
  const rotated = await api("POST", "/api/v1/channels/" + encodeURIComponent(slug) + "/key");
  showKey(rotated.stream_key, rotated.rtmp_url);
});

wireCopyButtons();
requireLogin().then(loadChannel);
