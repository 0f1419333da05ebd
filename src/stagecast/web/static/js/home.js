// The home page: keeps "Live now" current (channels that go live appear, those that end leave),
// refreshes each live thumbnail and counts each broadcast's uptime.
"use strict";
(() => {
  const list = document.getElementById("live-channels");
  const none = document.getElementById("no-live");
  const EVERY = 5000; // ms between refreshes of the list and its thumbnails

  function uptime(started) {
    const seconds = Math.max(0, Math.floor((Date.now() - Date.parse(started)) / 1000));
    const h = Math.floor(seconds / 3600);
    const m = Math.floor((seconds % 3600) / 60);
    const s = String(seconds % 60).padStart(2, "0");
    return "live for " + (h ? h + ":" + String(m).padStart(2, "0") : String(m)) + ":" + s;
  }

  function tick() {
    for (const el of list.querySelectorAll(".uptime[data-started]")) {
      if (el.dataset.started) el.textContent = uptime(el.dataset.started);
    }
  }

  function element(tag, className, text) {
    const el = document.createElement(tag);
    if (className) el.className = className;
    if (text !== undefined) el.textContent = text;
    return el;
  }

  // The same markup as home.html renders, built with textContent only.
  function tile(channel, stamp) {
    const item = element("li", "tile live-tile");
    item.dataset.slug = channel.slug;
    const link = element("a", "tile-link");
    link.href = channel.page_url;
    const picture = element("img", "tile-picture live-picture");
    picture.alt = "";
    picture.width = 320;
    picture.height = 180;
    picture.src = channel.thumbnail_url + "?t=" + stamp;
    link.append(picture, element("span", "tile-title", channel.title));
    const meta = element("span", "tile-meta");
    const time = element("span", "uptime nowrap");
    time.dataset.started = channel.started_at || "";
    const up = element("span", "muted", "· ");
    up.append(time);
    meta.append(
      element("span", "badge live", "LIVE"),
      element("span", "viewers", channel.viewers + " watching"),
      up,
      element("span", "muted", "· " + channel.owner),
    );
    item.append(link, meta);
    return item;
  }

  // A tile already shown keeps its element; its new picture replaces the old once loaded.
  function update(item, channel, stamp) {
    item.querySelector(".tile-title").textContent = channel.title;
    item.querySelector(".viewers").textContent = channel.viewers + " watching";
    item.querySelector(".uptime").dataset.started = channel.started_at || "";
    const next = new Image();
    next.onload = () => { item.querySelector(".live-picture").src = next.src; };
    next.src = channel.thumbnail_url + "?t=" + stamp;
    return item;
  }

  async function refresh() {
    try {
      const page = await api("GET", "/api/v1/channels?scope=public&live=true&limit=24");
      const stamp = Date.now();
      const shown = new Map([...list.children].map((item) => [item.dataset.slug, item]));
      list.replaceChildren(...page.items.map((c) => (
        shown.has(c.slug) ? update(shown.get(c.slug), c, stamp) : tile(c, stamp))));
      none.hidden = page.items.length > 0;
      tick();
    } catch (_) { /* offline or rate limited: the next round tries again */ }
  }

  tick();
  setInterval(tick, 1000);
  setInterval(refresh, EVERY);
})();
