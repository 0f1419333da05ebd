"use strict";
// The sign-up form: create the account, sign it in, then on to the page it came from (or where
// its role belongs: landingFor in session.js).
(() => {
  const form = document.getElementById("signup-form");
  if (!form) return; // sign-up is closed: the page says so
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const error = document.getElementById("signup-error");
    const button = event.submitter;
    error.textContent = "";
    const username = document.getElementById("username").value.trim().toLowerCase();
    const password = document.getElementById("password").value;
    const invite = document.getElementById("invite");
    const body = { username, password };
    if (invite && invite.value.trim()) body.invite = invite.value.trim();
    if (button) button.disabled = true;
    try {
      await api("POST", "/api/v1/auth/register", body);
      const session = await api("POST", "/api/v1/auth/login", { username, password });
      location.href = landingFor(session.user, form.dataset.next);
    } catch (e) {
      error.textContent = e.message;
      if (button) button.disabled = false;
    }
  });
})();
