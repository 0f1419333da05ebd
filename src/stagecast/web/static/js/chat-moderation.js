// The chat panel's moderation: Delete / Timeout / Ban on each message (keyboard first), the ban
// dialog (with "remove this user's recent messages"), and the list of bans and timeouts with
// their lift buttons. chat.js creates one per panel with createChatModeration(root, ctx).
//
// Keyboard: the message log is one Tab stop (a roving tabindex): Tab lands on the current
// message, ↑/↓/Home/End pick another, Tab goes on to that message's buttons, Enter acts.
// Everything user-written is set with textContent, never parsed as HTML.
"use strict";

(function () {
  if (window.createChatModeration) return;

  const TIMEOUT_SECONDS = 600;
  const PAGE = 20;

  function createChatModeration(root, ctx) {
    const $ = (name) => root.querySelector('[data-chat="' + name + '"]');
    const log = $("log"), keys = $("keys");
    const box = $("restrictions-box"), list = $("restrictions"), empty = $("restrictions-empty");
    const more = $("restrictions-more"), dialog = $("ban-dialog");
    let powers = null, me = null, active = null, nextBefore = null, loading = null;

    // -- Buttons on each message -----------------------------------------------------------

    function setTabbable(item, on) {
      item.tabIndex = on ? 0 : -1;
      for (const button of item.querySelectorAll("button")) button.tabIndex = on ? 0 : -1;
    }

    function activate(item, focus) {
      if (active && active !== item && active.isConnected) setTabbable(active, false);
      active = item || null;
      if (!active) return;
      setTabbable(active, true);
      if (focus) active.focus();
    }

    function lines() { return [...log.querySelectorAll(".chat-line")]; }

    function decorate(item, message) {
      if (!powers) return;
      item.tabIndex = -1;
      if (message.author !== me) item.append(buttons(message));
      setTabbable(item, false);
      // The current message follows the newest one until the keyboard is in the log.
      if (!active || !log.contains(document.activeElement)) {
        const all = lines();
        activate(all[all.length - 1], false);
      }
    }

    function removing(item) {
      if (!powers || item !== active) return;
      const focused = item.contains(document.activeElement);
      const next = item.nextElementSibling || item.previousElementSibling;
      active = null;
      activate(next, focused);
    }

    function buttons(message) {
      const span = el("span", { class: "chat-mod" });
      // The name is the visible word; the line (focused just before) says whose message it is.
      const act = (label, title, run) => {
        const button = el("button", { type: "button", class: "secondary", text: label, title });
        // Busy is aria-disabled, not disabled: a disabled button drops the keyboard focus.
        button.addEventListener("click", async () => {
          if (button.getAttribute("aria-disabled") === "true") return;
          button.setAttribute("aria-disabled", "true");
          try { await run(button); } catch (e) { ctx.say(e.message); } finally { button.removeAttribute("aria-disabled"); }
        });
        span.append(button);
      };
      const who = message.author, path = encodeURIComponent(who);
      if (powers.delete) act("Delete", "Delete this message for everyone",
        () => api("DELETE", ctx.base + "/messages/" + message.id));
      if (powers.timeout) act("Timeout", "Time " + who + " out for 10 minutes", async () => {
        await api("PUT", ctx.base + "/timeouts/" + path, { seconds: TIMEOUT_SECONDS });
        ctx.say(who + " is timed out for 10 minutes.");
      });
      if (powers.ban) act("Ban…", "Ban " + who + " from this chat", (button) => ban(who, path, button));
      return span;
    }

    function onKey(event) {
      const item = event.target.closest && event.target.closest(".chat-line");
      if (!powers || !item || !log.contains(item)) return;
      const all = lines(), at = all.indexOf(item);
      const to = { ArrowUp: at - 1, ArrowDown: at + 1, Home: 0, End: all.length - 1 }[event.key];
      if (to === undefined) return;
      event.preventDefault();
      if (all[to]) activate(all[to], true);
    }

    // -- The ban dialog --------------------------------------------------------------------

    function ban(who, path, button) {
      return new Promise((resolve, reject) => {
        $("ban-title").textContent = "Ban " + who + " from this chat?";
        $("ban-reason").value = "";
        $("ban-purge-label").hidden = !powers.delete;
        $("ban-purge").checked = powers.delete;
        dialog.returnValue = "";
        const closed = async () => {
          dialog.removeEventListener("close", closed);
          if (dialog.returnValue !== "ban") { resolve(); return; }
          try {
            const body = { reason: $("ban-reason").value.trim(), remove_messages: $("ban-purge").checked };
            const done = await api("PUT", ctx.base + "/bans/" + path, body);
            const removed = (done.removed_messages || []).length;
            ctx.say(who + " is banned" + (removed ? "; " + removed + " of their messages removed." : "."));
            resolve();
          } catch (e) { reject(e); }
          if (button.isConnected) button.focus();
        };
        dialog.addEventListener("close", closed);
        dialog.showModal();
        $("ban-reason").focus();
      });
    }

    // -- Bans and timeouts, with lift buttons ----------------------------------------------

    function row(entry) {
      const banned = entry.kind === "ban";
      const what = banned ? "banned" : "timed out until " + ctx.timeOf(entry.expires_at);
      const by = [entry.created_by ? "by " + entry.created_by : "", entry.reason].filter(Boolean).join(" · ");
      const item = el("li", { "data-user": entry.username },
        el("span", { class: "chat-author", text: entry.username }),
        el("span", { text: what }),
        el("span", { class: "muted", text: by }));
      const allowed = banned ? powers.ban : powers.timeout;
      if (allowed) {
        const label = banned ? "Lift ban" : "End timeout";
        const lift = el("button", { type: "button", class: "secondary", text: label,
          "aria-label": label + " of " + entry.username });
        lift.addEventListener("click", async () => {
          lift.disabled = true;
          const kind = banned ? "/bans/" : "/timeouts/";
          try {
            await api("DELETE", ctx.base + kind + encodeURIComponent(entry.username));
            ctx.say(banned ? entry.username + " may chat again." : entry.username + "'s timeout has ended.");
          } catch (e) {
            if (e.status !== 404) { ctx.say(e.message); lift.disabled = false; return; }
          }
          const focusNext = item.nextElementSibling || item.previousElementSibling;
          item.remove();
          empty.hidden = list.children.length > 0;
          (focusNext ? focusNext.querySelector("button") : box.querySelector("summary")).focus();
        });
        item.append(lift);
      }
      return item;
    }

    async function load(reset) {
      if (loading) return loading;
      loading = (async () => {
        try {
          const params = new URLSearchParams({ limit: String(PAGE) });
          if (!reset && nextBefore) params.set("before", nextBefore);
          const page = await api("GET", ctx.base + "/restrictions?" + params);
          if (reset) list.replaceChildren();
          page.items.forEach((entry) => list.append(row(entry)));
          nextBefore = page.next_before;
          more.hidden = !nextBefore;
          empty.hidden = list.children.length > 0;
        } catch (e) { ctx.say("Could not load the bans and timeouts: " + e.message); }
        finally { loading = null; }
      })();
      return loading;
    }

    function restrictionsChanged() { if (powers && box.open) load(true); }

    box.addEventListener("toggle", () => { if (box.open) load(true); });
    more.addEventListener("click", () => load(false));
    log.addEventListener("keydown", onKey);
    log.addEventListener("focusin", (event) => {
      const item = event.target.closest && event.target.closest(".chat-line");
      if (powers && item && item !== active) activate(item, false);
    });

    // Called with each hello: who the caller is and what they may do here.
    function start(hello) {
      me = hello.user;
      powers = hello.moderator || null;
      keys.hidden = !powers;
      box.hidden = !(powers && (powers.ban || powers.timeout));
    }

    return { start, decorate, removing, restrictionsChanged };
  }

  window.createChatModeration = createChatModeration;
})();
