"use strict";
// Admins: make an invite (its sign-up link shown once), list them newest first, revoke unused ones.
(() => {
  const list = document.getElementById("invites");
  const more = document.getElementById("more-invites");
  let next = null;
  const ROLE = { viewer: "viewer", broadcaster: "broadcaster", admin: "admin" };

  function item(invite) {
    const state = el("span", { class: "badge" + (invite.state === "open" ? " good" : ""), text: invite.state });
    const facts = el("div", { class: "meta muted" },
      el("span", { text: ROLE[invite.role] || invite.role }), " · made by ", invite.created_by || "—", " ",
      studio.timeElement(invite.created_at));
    if (invite.state === "used") facts.append(" · used by ", invite.used_by || "a deleted account", " ", studio.timeElement(invite.used_at));
    else facts.append(" · expires ", studio.timeElement(invite.expires_at));
    const row = el("li", { class: "invite-item", "data-id": String(invite.id) },
      el("div", {}, el("span", { class: "secret", text: invite.code_start + "…" }), " ", state, facts));
    if (invite.state === "open") {
      const revoke = el("button", { type: "button", class: "secondary", text: "Revoke",
        "aria-label": "Revoke invite " + invite.code_start });
      revoke.addEventListener("click", async () => {
        if (!await studio.confirmAction("Revoke this invite? Its link stops working.", "Revoke")) return;
        try {
          await api("DELETE", "/api/v1/invites/" + invite.id);
          row.remove();
          document.getElementById("no-invites").hidden = list.children.length > 0;
        } catch (e) {
          studio.say("invites-error", e.message);
        }
      });
      row.append(el("div", { class: "actions" }, revoke));
    }
    return row;
  }

  async function load(reset) {
    studio.say("invites-error", "");
    try {
      const query = reset || !next ? "" : "?cursor=" + encodeURIComponent(next);
      const page = await api("GET", "/api/v1/invites" + query);
      if (reset) list.replaceChildren();
      list.append(...page.items.map(item));
      next = page.next;
      more.hidden = !next;
      document.getElementById("no-invites").hidden = list.children.length > 0;
    } catch (e) {
      studio.say("invites-error", e.status === 403 ? "Only admins manage invites." : e.message);
    } finally {
      list.setAttribute("aria-busy", "false");
    }
  }

  document.getElementById("invite-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    studio.say("invite-error", "");
    const button = event.submitter;
    if (button) button.disabled = true;
    try {
      const made = await api("POST", "/api/v1/invites", {
        role: document.getElementById("invite-role").value,
        days: Number(document.getElementById("invite-days").value),
      });
      const link = new URL("/signup?invite=" + encodeURIComponent(made.invite), location.origin).href;
      document.getElementById("invite-link").value = link;
      document.getElementById("invite-made").hidden = false;
      document.getElementById("invite-link").focus();
      await load(true);
    } catch (e) {
      studio.say("invite-error", e.status === 403 ? "Only admins can invite people." : e.message);
    } finally {
      if (button) button.disabled = false;
    }
  });

  more.addEventListener("click", () => load(false));
  wireCopyButtons(document);
  requireLogin().then(() => load(true));
})();
