// The studio's channel list and the "create a channel" form.
"use strict";
(() => {
  const list = document.getElementById("channels");

  function item(channel) {
    const path = "/studio/channels/" + encodeURIComponent(channel.slug);
    const state = el("span", { class: "badge", text: "…" });
    const row = el("li", { class: "channel-item", "data-slug": channel.slug },
      el("div", {},
        el("a", { class: "name", href: path + "/live", text: channel.title }),
        el("div", { class: "meta muted" },
          el("span", { text: channel.slug }),
          el("span", { class: "badge", text: channel.visibility }),
          el("span", { class: "badge", text: channel.profile === "abr" ? "ABR ladder" : "passthrough" }),
          el("span", { class: "badge", text: channel.latency === "standard" ? "standard latency" : "low latency" }),
          state)),
      el("div", { class: "actions" },
        el("a", { class: "button", href: path + "/live", text: "Dashboard" }),
        el("a", { class: "button secondary", href: path, text: "Settings & stream key" }),
        el("a", { class: "button secondary", href: "/c/" + encodeURIComponent(channel.slug), text: "Viewer page" })));
    api("GET", studio.channelPath(channel.slug, "/live"))
      .then((status) => studio.stateBadge(state, status.state))
      .catch(() => studio.stateBadge(state, "offline"));
    return row;
  }

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

  requireLogin().then(loadChannels);
})();
