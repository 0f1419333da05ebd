// A channel's settings page: the "Go live" panel (server, stream key), channel settings,
// chat settings, word filters and moderators.
"use strict";
(() => {
  const slug = document.getElementById("channel").dataset.slug;
  const path = (rest) => studio.channelPath(slug, rest);
  const $ = (id) => document.getElementById(id);

  // -- Go live ------------------------------------------------------------------------------

  function showKey(key, serverUrl) {
    const input = $("stream-key");
    input.value = key;
    input.type = "password";
    $("reveal-key").disabled = false;
    $("reveal-key").textContent = "Reveal";
    $("reveal-key").setAttribute("aria-pressed", "false");
    $("copy-key").disabled = false;
    if (serverUrl) $("server-url").value = serverUrl;
  }

  $("reveal-key").addEventListener("click", (event) => {
    const input = $("stream-key");
    const reveal = input.type === "password";
    input.type = reveal ? "text" : "password";
    event.currentTarget.textContent = reveal ? "Hide" : "Reveal";
    event.currentTarget.setAttribute("aria-pressed", String(reveal));
  });

  $("rotate-key").addEventListener("click", async (event) => {
    const button = event.currentTarget;
    const sure = await studio.confirmAction(
      "Make a new stream key? The old key stops working at once and an encoder using it is disconnected.",
      "Rotate key");
    if (!sure) return;
    await studio.busy(button, "key-error", async () => {
      const rotated = await api("POST", path("/key"));
      showKey(rotated.stream_key, rotated.rtmp_url);
      studio.say("key-status", "New stream key made: reveal or copy it now, it is not shown again.");
    });
  });

  // -- Channel settings ---------------------------------------------------------------------

  function showChannel(channel) {
    $("channel-title").textContent = channel.title;
    document.title = channel.title + " · Settings · Stagecast";
    $("channel-visibility").textContent = channel.visibility;
    $("server-url").value = channel.rtmp_url;
    $("set-title").value = channel.title;
    $("set-description").value = channel.description;
    $("set-next").value = channel.next_info || "";
    $("set-visibility").value = channel.visibility;
    $("set-profile").value = channel.profile;
    $("set-dvr").value = String(Math.round(channel.dvr_window_seconds / 60));
    $("set-latency").value = channel.latency;
    $("share").hidden = channel.visibility !== "private";
  }

  $("settings-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    studio.say("settings-status", "");
    await studio.busy(event.submitter, "settings-error", async () => {
      const minutes = Number($("set-dvr").value || 0);
      const updated = await api("PATCH", path(""), {
        title: $("set-title").value.trim(),
        description: $("set-description").value,
        next_info: $("set-next").value.trim(),
        visibility: $("set-visibility").value,
        profile: $("set-profile").value,
        dvr_window_seconds: Math.round(minutes * 60),
        latency: $("set-latency").value,
      });
      showChannel(updated);
      studio.say("settings-status", "Saved.");
    });
  });

  $("share-make").addEventListener("click", async (event) => {
    await studio.busy(event.currentTarget, "share-error", async () => {
      const made = await api("POST", path("/playback-tokens"), { hours: 24 });
      $("share-url").value = new URL(made.watch_url, location.origin).href;
    });
  });

  // -- Chat settings and filters ------------------------------------------------------------

  async function loadChat() {
    const rules = await api("GET", path("/chat/settings"));
    $("slow-mode").value = String(rules.slow_mode_seconds);
    $("anonymous-read").checked = rules.anonymous_read;
  }

  $("chat-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    studio.say("chat-status", "");
    await studio.busy(event.submitter, "chat-error", async () => {
      const rules = await api("PATCH", path("/chat/settings"), {
        slow_mode_seconds: Number($("slow-mode").value || 0),
        anonymous_read: $("anonymous-read").checked,
      });
      $("slow-mode").value = String(rules.slow_mode_seconds);
      $("anonymous-read").checked = rules.anonymous_read;
      studio.say("chat-status", "Saved.");
    });
  });

  const KINDS = { word: "Word", phrase: "Phrase", pattern: "Pattern" };
  const ACTIONS = { block: "blocked", hold: "held for review" };

  function filterItem(rule) {
    const remove = el("button", { type: "button", class: "secondary", text: "Remove",
      "aria-label": "Remove the filter " + rule.pattern });
    remove.addEventListener("click", () => studio.busy(remove, "filter-error", async () => {
      await api("DELETE", path("/chat/filters/" + rule.id));
      await loadFilters();
    }));
    return el("li", { "data-filter-id": String(rule.id) },
      el("span", {}, el("span", { class: "badge", text: KINDS[rule.kind] || rule.kind }), " ",
        el("code", { text: rule.pattern }), " ",
        el("span", { class: "muted", text: "→ " + (ACTIONS[rule.action] || rule.action) })),
      remove);
  }

  async function loadFilters() {
    const found = await api("GET", path("/chat/filters"));
    $("filters").replaceChildren(...found.items.map(filterItem));
    $("no-filters").hidden = found.items.length > 0;
  }

  $("filter-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    await studio.busy(event.submitter, "filter-error", async () => {
      await api("POST", path("/chat/filters"), {
        kind: $("filter-kind").value,
        pattern: $("filter-pattern").value.trim(),
        action: $("filter-action").value,
      });
      $("filter-pattern").value = "";
      await loadFilters();
    });
  });

  // -- Moderators ---------------------------------------------------------------------------

  const PERMS = [
    ["can_delete", "delete"], ["can_timeout", "time out"], ["can_ban", "ban"], ["can_manage_filters", "filters"],
  ];

  function moderatorItem(mod) {
    const boxes = {};
    const perms = el("div", { class: "perms" });
    for (const [field, label] of PERMS) {
      const id = "perm-" + field + "-" + mod.username;
      const box = el("input", { type: "checkbox", id });
      box.checked = mod[field];
      boxes[field] = box;
      perms.append(el("label", { class: "check", for: id }, box, " " + label));
    }
    const save = async () => {
      const grant = {};
      for (const [field] of PERMS) grant[field] = boxes[field].checked;
      await studio.busy(null, "moderator-error", () =>
        api("PUT", path("/moderators/" + encodeURIComponent(mod.username)), grant));
    };
    for (const box of Object.values(boxes)) box.addEventListener("change", save);
    const remove = el("button", { type: "button", class: "secondary", text: "Remove",
      "aria-label": "Remove moderator " + mod.username });
    remove.addEventListener("click", async () => {
      if (!await studio.confirmAction("Remove " + mod.username + " as a moderator?", "Remove")) return;
      await studio.busy(remove, "moderator-error", async () => {
        await api("DELETE", path("/moderators/" + encodeURIComponent(mod.username)));
        await loadModerators();
      });
    });
    return el("li", { class: "mod-item", "data-username": mod.username },
      el("strong", { text: mod.username }),
      el("fieldset", { class: "plain" }, el("legend", { class: "visually-hidden", text: "Permissions of " + mod.username }), perms),
      remove);
  }

  async function loadModerators() {
    const found = await api("GET", path("/moderators"));
    $("moderators").replaceChildren(...found.items.map(moderatorItem));
    $("no-moderators").hidden = found.items.length > 0;
  }

  $("moderator-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    await studio.busy(event.submitter, "moderator-error", async () => {
      const username = $("mod-username").value.trim().toLowerCase();
      await api("PUT", path("/moderators/" + encodeURIComponent(username)), {
        can_delete: $("mod-delete").checked,
        can_timeout: $("mod-timeout").checked,
        can_ban: $("mod-ban").checked,
        can_manage_filters: $("mod-filters").checked,
      });
      $("mod-username").value = "";
      await loadModerators();
    });
  });

  // -- Start --------------------------------------------------------------------------------

  async function load() {
    let channel;
    try {
      channel = await api("GET", path(""));
    } catch (e) {
      studio.say("page-error", e.status === 404 ? "Channel not found, or it is not yours." : e.message);
      return;
    }
    showChannel(channel);
    const fresh = sessionStorage.getItem("stagecast.newkey." + slug);
    if (fresh) {
      showKey(fresh);
      sessionStorage.removeItem("stagecast.newkey." + slug);
      studio.say("key-status", "Channel created. Reveal or copy the stream key now: it is not shown again.");
    }
    const parts = [loadChat().catch((e) => studio.say("chat-error", e.message)),
      loadFilters().catch((e) => studio.say("filter-error", e.message)),
      loadModerators().catch((e) => studio.say("moderator-error", e.message))];
    await Promise.all(parts);
    document.getElementById("channel").dataset.loaded = "true";
  }

  wireCopyButtons();
  requireLogin().then(load);
})();
