// The studio's channel list and the "create a channel" form.
"use strict";
(() => {
  const list = document.getElementById("channels");

  const REFRESH_MS = 10000;  // how often the list's live state and thumbnails are refreshed
  const ON_AIR = ["live", "reconnecting"];

  function item(channel) {
    const path = "/studio/channels/" + encodeURIComponent(channel.slug);
    const state = el("span", { class: "badge", text: "…" });
    // A frame of the broadcast while on air (the front door's live thumbnail), else none.
    const thumb = el("img", { class: "channel-thumb", alt: "", width: "160", height: "90", hidden: "" });
    const since = el("span", { class: "since" });
    const row = el("li", { class: "channel-item", "data-slug": channel.slug },
      thumb,
      el("div", { class: "channel-text" },
        el("a", { class: "name", href: path + "/live", text: channel.title }),
        el("div", { class: "meta muted" },
          el("span", { text: channel.slug }),
          el("span", { class: "badge", text: channel.visibility }),
          el("span", { class: "badge", text: channel.profile === "abr" ? "ABR ladder" : "passthrough" }),
          el("span", { class: "badge", text: channel.latency === "standard" ? "standard latency" : "low latency" }),
          state, since)),
      el("div", { class: "actions" },
        el("a", { class: "button", href: path + "/live", text: "Dashboard" }),
        el("a", { class: "button secondary", href: path, text: "Settings & stream key" }),
        el("a", { class: "button secondary", href: "/c/" + encodeURIComponent(channel.slug), text: "Viewer page" })));
    row.refresh = () => refresh(channel, { state, thumb, since, row });
    row.refresh();
    return row;
  }

  async function refresh(channel, { state, thumb, since, row }) {
    let status;
    try {
      status = await api("GET", studio.channelPath(channel.slug, "/live"));
    } catch (_) {
      status = { state: "offline" };
    }
    studio.stateBadge(state, status.state);
    row.dataset.state = status.state;
    const onAir = ON_AIR.includes(status.state);
    since.textContent = onAir && status.started_at ? "since " + studio.formatTime(status.started_at) : "";
    if (onAir) {
      // A new frame each refresh (the server keeps one a few seconds, so this costs no grab).
      const query = new URLSearchParams({ t: String(Math.floor(Date.now() / REFRESH_MS)) });
      if (status.playback_token) query.set("token", status.playback_token);
      thumb.src = studio.channelPath(channel.slug, "/thumbnail.jpg?" + query);
      thumb.alt = "Now on " + channel.title;
      thumb.hidden = false;
    } else {
      thumb.hidden = true;
      thumb.removeAttribute("src");
      thumb.alt = "";
    }
  }

  // Keep the list's live state current while the page is shown (no requests while hidden).
  function refreshAll() {
    if (document.hidden) return;
    for (const row of list.children) if (row.refresh) row.refresh();
  }
  setInterval(refreshAll, REFRESH_MS);
  document.addEventListener("visibilitychange", refreshAll);
  // A thumbnail that fails (the stream is just starting, no frame yet) is hidden, not broken.
  list.addEventListener("error", (event) => { if (event.target.tagName === "IMG") event.target.hidden = true; }, true);

  async function loadChannels() {
    try {
      const data = await api("GET", "/api/v1/channels");
      list.replaceChildren(...data.items.map(item));
      document.getElementById("no-channels").hidden = data.items.length > 0;
    } catch (e) {
      studio.say("channels-error", e.message);
    } finally {
      list.setAttribute("aria-busy", "false");
    }
  }

  document.getElementById("create-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = event.submitter;
    const title = document.getElementById("title").value.trim();
    await studio.busy(button, "create-error", async () => {
      const created = await api("POST", "/api/v1/channels", {
        slug: document.getElementById("slug").value.trim(),
        title: title || undefined,
        visibility: document.getElementById("visibility").value,
        profile: document.getElementById("profile").value,
      });
      // The key is shown only once: hand it to the settings page for this tab only.
      sessionStorage.setItem("stagecast.newkey." + created.channel.slug, created.stream_key);
      location.href = "/studio/channels/" + encodeURIComponent(created.channel.slug) + "#go-live";
    });
  });

  requireLogin().then((user) => {
    // A viewer may not own channels: no list to fill, no form that would only answer 403.
    if (user.role === "viewer") {
      document.getElementById("viewer-studio").hidden = false;
      document.getElementById("studio-channels").hidden = true;
      document.getElementById("studio-create").hidden = true;
      return;
    }
    loadChannels();
  });
})();
