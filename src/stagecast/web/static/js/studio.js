"use strict";
async function loadChannels() {
  const list = document.getElementById("channels");
  const data = await api("GET", "/api/v1/channels");
  list.replaceChildren(...data.items.map((c) => el("li", {},
    el("a", { href: "/studio/channels/" + encodeURIComponent(c.slug), text: c.title }),
    el("span", { class: "badge", text: c.visibility }))));
  document.getElementById("no-channels").hidden = data.items.length > 0;
}

document.getElementById("create-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const error = document.getElementById("create-error");
  error.textContent = "";
  const title = document.getElementById("title").value.trim();
  try {
    const created = await api("POST", "/api/v1/channels", {
      slug: document.getElementById("slug").value.trim(),
      title: title || undefined,
      visibility: document.getElementById("visibility").value,
    });
    sessionStorage.setItem("stagecast.newkey." + created.channel.slug, created.stream_key);
    location.href = "/studio/channels/" + encodeURIComponent(created.channel.slug);
  } catch (e) {
    error.textContent = e.message;
  }
});

requireLogin().then(loadChannels);
