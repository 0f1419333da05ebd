// Shared by the studio pages: confirmation dialogs, formatting, small DOM helpers.
// Everything that came from a user is put on the page with textContent (el's "text"), never as HTML.
"use strict";

const studio = (() => {
  // Ask for confirmation in a modal <dialog>; resolve true when the action button is chosen.
  function confirmAction(message, actionLabel, { danger = true } = {}) {
    return new Promise((resolve) => {
      const text = el("p", { id: "confirm-text", text: message });
      const yes = el("button", { type: "button", class: danger ? "danger" : "", text: actionLabel });
      const no = el("button", { type: "button", class: "secondary", text: "Cancel" });
      const dialog = el("dialog", { class: "confirm", "aria-labelledby": "confirm-text" },
        text, el("div", { class: "actions" }, yes, no));
      let answer = false;
      yes.addEventListener("click", () => { answer = true; dialog.close(); });
      no.addEventListener("click", () => dialog.close());
      dialog.addEventListener("close", () => { dialog.remove(); resolve(answer); });
      document.body.append(dialog);
      dialog.showModal();
      no.focus();
    });
  }

  function formatBytes(bytes) {
    if (bytes === null || bytes === undefined) return "—";
    const units = ["B", "kB", "MB", "GB", "TB"];
    let value = bytes;
    let unit = 0;
    while (value >= 1000 && unit < units.length - 1) { value /= 1000; unit += 1; }
    return (unit === 0 ? String(value) : value.toFixed(value < 10 ? 1 : 0)) + " " + units[unit];
  }

  function formatDuration(seconds) {
    if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "—";
    const total = Math.round(seconds);
    const h = Math.floor(total / 3600);
    const m = Math.floor((total % 3600) / 60);
    const s = total % 60;
    const mm = String(m).padStart(h ? 2 : 1, "0");
    return (h ? h + ":" : "") + mm + ":" + String(s).padStart(2, "0");
  }

  function formatTime(iso) {
    if (!iso) return "—";
    const when = new Date(iso);
    return when.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
  }

  function timeElement(iso) {
    return el("time", { datetime: iso || "", text: formatTime(iso) });
  }

  // Show a message in a role=alert/status element (textContent only).
  function say(id, message) {
    const node = document.getElementById(id);
    if (node) node.textContent = message || "";
  }

  // Run an async action from a button: disable it meanwhile, report failures in errorId.
  async function busy(button, errorId, action) {
    say(errorId, "");
    if (button) button.disabled = true;
    try {
      return await action();
    } catch (e) {
      say(errorId, e.message || String(e));
      return undefined;
    } finally {
      if (button) button.disabled = false;
    }
  }

  const STATE_LABELS = {
    live: "LIVE", reconnecting: "Reconnecting…", idle: "Starting…", ended: "Ended", offline: "Offline",
  };

  function stateBadge(node, state) {
    node.textContent = STATE_LABELS[state] || state;
    node.className = "badge " + state + (state === "live" ? " live" : "");
    node.dataset.state = state;
  }

  function channelPath(slug, rest) {
    return "/api/v1/channels/" + encodeURIComponent(slug) + (rest || "");
  }

  return { confirmAction, formatBytes, formatDuration, formatTime, timeElement, say, busy, stateBadge, channelPath };
})();
