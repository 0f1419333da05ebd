// The VOD library: keyset-paged list with filters (channel, status, title), edit title and
// visibility, delete, and play in a dialog. Filters live in the address (?channel=&status=&q=).
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const list = $("vods");
  const POLL_MS = 3000;
  let cursor = null;
  let generation = 0;
  let pollTimer = null;

  const VISIBILITY = {
    inherit: "Same as the channel", public: "Public", unlisted: "Unlisted", private: "Private",
  };

  function filters() {
    const params = new URLSearchParams();
    for (const name of ["channel", "status", "q"]) {
      const value = $("filter-" + name).value.trim();
      if (value) params.set(name, value);
    }
    return params;
  }

  // -- One recording ------------------------------------------------------------------------

  function thumbnail(vod) {
    if (vod.status === "ready" && vod.thumbnail_url) {
      return el("img", { class: "thumb", src: vod.thumbnail_url, alt: "", loading: "lazy", width: "160", height: "90" });
    }
    return el("div", { class: "thumb none", text: vod.status === "ready" ? "No thumbnail" : vod.status });
  }

  function facts(vod) {
    const parts = [
      el("a", { href: "/studio/channels/" + encodeURIComponent(vod.channel) + "/live", text: vod.channel }),
      " · ", el("span", { class: "badge " + vod.status, text: vod.status }),
    ];
    if (vod.duration_seconds !== null) parts.push(" · " + studio.formatDuration(vod.duration_seconds));
    if (vod.byte_size !== null) parts.push(" · " + studio.formatBytes(vod.byte_size));
    parts.push(" · recorded ", studio.timeElement(vod.started_at || vod.created_at));
    const visibility = vod.visibility === "inherit"
      ? "visibility: " + vod.effective_visibility + " (from the channel)"
      : "visibility: " + vod.visibility;
    parts.push(" · " + visibility);
    return el("p", { class: "facts" }, ...parts);
  }

  function item(vod) {
    const li = el("li", { class: "vod-item", "data-vod-id": String(vod.id), "data-status": vod.status });
    const body = el("div", {},
      el("h3", { text: vod.title }),
      facts(vod));
    if (vod.status === "failed" && vod.failure_reason) {
      body.append(el("p", { class: "error", text: "Processing failed: " + vod.failure_reason }));
    }
    const actions = el("div", { class: "actions" });
    if (vod.status === "ready") {
      const play = el("button", { type: "button", class: "play", text: "Play", "aria-label": "Play " + vod.title });
      play.addEventListener("click", () => openPlayer(vod));
      actions.append(play, el("a", { class: "button secondary", href: vod.page_url, text: "Watch page" }));
    }
    const edit = el("button", { type: "button", class: "secondary edit", text: "Edit",
      "aria-expanded": "false", "aria-label": "Edit " + vod.title });
    const remove = el("button", { type: "button", class: "danger delete", text: "Delete…",
      "aria-label": "Delete " + vod.title });
    actions.append(edit, remove);
    const error = el("p", { class: "error", role: "alert" });
    body.append(actions, error);
    edit.addEventListener("click", () => toggleEditor(li, body, vod, edit, error));
    remove.addEventListener("click", () => deleteVod(li, vod, remove, error));
    li.append(thumbnail(vod), body);
    return li;
  }

  function toggleEditor(li, body, vod, button, error) {
    const open = body.querySelector(".vod-edit");
    if (open) {
      open.remove();
      button.setAttribute("aria-expanded", "false");
      return;
    }
    const titleId = "edit-title-" + vod.id;
    const visId = "edit-visibility-" + vod.id;
    const title = el("input", { id: titleId, required: "", maxlength: "140" });
    title.value = vod.title;
    const visibility = el("select", { id: visId });
    for (const [value, label] of Object.entries(VISIBILITY)) {
      visibility.append(el("option", { value, text: label }));
    }
    visibility.value = vod.visibility;
    const save = el("button", { type: "submit", text: "Save" });
    const cancel = el("button", { type: "button", class: "secondary", text: "Cancel" });
    const form = el("form", { class: "vod-edit", "aria-label": "Edit recording" },
      el("label", { for: titleId, text: "Title" }), title,
      el("label", { for: visId, text: "Visibility" }), visibility,
      el("div", { class: "actions" }, save, cancel));
    cancel.addEventListener("click", () => { form.remove(); button.setAttribute("aria-expanded", "false"); button.focus(); });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      error.textContent = "";
      save.disabled = true;
      try {
        const updated = await api("PATCH", "/api/v1/studio/vods/" + vod.id, {
          title: title.value.trim(), visibility: visibility.value,
        });
        const fresh = item(updated);
        li.replaceWith(fresh);
        fresh.querySelector(".edit").focus();
      } catch (e) {
        error.textContent = e.message;
        save.disabled = false;
      }
    });
    body.insertBefore(form, error);
    button.setAttribute("aria-expanded", "true");
    title.focus();
  }

  async function deleteVod(li, vod, button, error) {
    const sure = await studio.confirmAction(
      "Delete “" + vod.title + "”? It disappears from the library and stops playing at once.", "Delete");
    if (!sure) return;
    error.textContent = "";
    button.disabled = true;
    try {
      await api("DELETE", "/api/v1/studio/vods/" + vod.id);
      li.remove();
      adjustTotal(-1);
      $("no-vods").hidden = list.children.length > 0;
    } catch (e) {
      error.textContent = e.message;
      button.disabled = false;
    }
  }

  // -- Player dialog ------------------------------------------------------------------------

  function openPlayer(vod) {
    const video = el("video", { controls: "", playsinline: "", autoplay: "", class: "vod-player",
      "aria-label": "Recording: " + vod.title });
    video.muted = true;
    const close = el("button", { type: "button", class: "secondary", text: "Close" });
    const heading = el("h2", { id: "player-heading", text: vod.title });
    const problem = el("p", { class: "error", role: "alert" });
    const dialog = el("dialog", { class: "player-dialog", "aria-labelledby": "player-heading" },
      heading, el("div", { class: "player-box" }, video), problem, el("div", { class: "actions" }, close));
    const player = attachPlayer(video, vod.playback_url, {
      live: false,
      onError: (data) => { problem.textContent = "Playback failed: " + (data.details || data.type); },
    });
    close.addEventListener("click", () => dialog.close());
    dialog.addEventListener("close", () => { player.destroy(); dialog.remove(); });
    document.body.append(dialog);
    dialog.showModal();
    video.play().catch(() => {});
  }

  // -- Paging and totals --------------------------------------------------------------------

  let total = null;

  function showTotal() {
    const node = $("library-total");
    if (total === null) node.textContent = list.children.length + " shown (no total for a title search)";
    else node.textContent = total === 1 ? "1 recording" : total + " recordings";
  }

  function adjustTotal(delta) {
    if (total !== null) total = Math.max(0, total + delta);
    showTotal();
  }

  async function loadPage(reset) {
    const mine = reset ? ++generation : generation;
    const query = filters();
    query.set("limit", "20");
    if (!reset && cursor) query.set("cursor", cursor);
    list.setAttribute("aria-busy", "true");
    studio.say("library-error", "");
    try {
      const page = await api("GET", "/api/v1/studio/vods?" + query);
      if (mine !== generation) return;
      const items = page.items.map(item);
      if (reset) list.replaceChildren(...items); else list.append(...items);
      cursor = page.next_cursor;
      total = page.total_exact ? page.total : null;
      $("load-more").hidden = !page.has_more;
      $("no-vods").hidden = list.children.length > 0;
      showTotal();
      schedulePoll();
    } catch (e) {
      if (mine === generation) studio.say("library-error", e.message);
    } finally {
      if (mine === generation) list.setAttribute("aria-busy", "false");
    }
  }

  // Recordings still processing are refreshed in place until they are ready or failed.
  function schedulePoll() {
    clearTimeout(pollTimer);
    if (!list.querySelector('[data-status="processing"]')) return;
    pollTimer = setTimeout(refreshProcessing, POLL_MS);
  }

  async function refreshProcessing() {
    const mine = generation;
    for (const li of list.querySelectorAll('[data-status="processing"]')) {
      try {
        const vod = await api("GET", "/api/v1/studio/vods/" + li.dataset.vodId);
        if (mine !== generation) return;
        if (vod.status !== "processing" && li.isConnected) li.replaceWith(item(vod));
      } catch (e) {
        if (e.status === 404 && li.isConnected) li.remove();
      }
    }
    schedulePoll();
  }

  function apply() {
    const query = filters();
    history.replaceState(null, "", location.pathname + (query.toString() ? "?" + query : ""));
    cursor = null;
    loadPage(true);
  }

  $("filters").addEventListener("submit", (event) => { event.preventDefault(); apply(); });
  $("filter-channel").addEventListener("change", apply);
  $("filter-status").addEventListener("change", apply);
  $("load-more").addEventListener("click", () => loadPage(false));

  async function load() {
    const given = new URLSearchParams(location.search);
    try {
      const channels = await api("GET", "/api/v1/channels");
      for (const c of channels.items) $("filter-channel").append(el("option", { value: c.slug, text: c.title + " (" + c.slug + ")" }));
    } catch (e) {
      studio.say("library-error", e.message);
    }
    const channel = given.get("channel") || "";
    if (channel && ![...$("filter-channel").options].some((o) => o.value === channel)) {
      $("filter-channel").append(el("option", { value: channel, text: channel }));
    }
    $("filter-channel").value = channel;
    $("filter-status").value = given.get("status") || "";
    $("filter-q").value = given.get("q") || "";
    await loadPage(true);
  }

  requireLogin().then(load);
})();
