"use strict";
// The account page: who you are, change the password, end the other sessions.
(() => {
  const say = (id, text) => { document.getElementById(id).textContent = text || ""; };
  const sessions = (n) => n === 1 ? "1 other session was" : n + " other sessions were";

  function show(user) {
    say("account-name", user.username);
    say("account-role", user.role);
    document.getElementById("account-facts").setAttribute("aria-busy", "false");
    document.getElementById("account-viewer").hidden = user.role !== "viewer";
    document.getElementById("account-links").hidden = user.role === "viewer";
    document.getElementById("account-invites").hidden = user.role !== "admin";
  }

  document.getElementById("password-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = event.submitter;
    say("password-error"); say("password-done");
    const current = document.getElementById("current-password");
    const fresh = document.getElementById("new-password");
    const repeat = document.getElementById("repeat-password");
    if (fresh.value !== repeat.value) {
      say("password-error", "The two new passwords differ.");
      repeat.focus();
      return;
    }
    if (button) button.disabled = true;
    try {
      const done = await api("POST", "/api/v1/auth/password", {
        current_password: current.value, new_password: fresh.value,
      });
      event.target.reset();
      say("password-done", "Password changed. " + sessions(done.signed_out) + " signed out.");
    } catch (e) {
      say("password-error", e.message);
    } finally {
      if (button) button.disabled = false;
    }
  });

  document.getElementById("sign-out-others").addEventListener("click", async (event) => {
    say("sessions-error"); say("sessions-done");
    event.target.disabled = true;
    try {
      const done = await api("POST", "/api/v1/auth/sessions/sign-out-others");
      say("sessions-done", sessions(done.signed_out) + " signed out.");
    } catch (e) {
      say("sessions-error", e.message);
    } finally {
      event.target.disabled = false;
    }
  });

  requireLogin().then(show);
})();
