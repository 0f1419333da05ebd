"use strict";
// The sign-in form: then on to `next` (the form's data-next, checked by the server and again by
// nextPage), or, when no page was asked for, to where the account's role belongs (landingFor).

const form = document.getElementById("login-form");
form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const error = document.getElementById("login-error");
  error.textContent = "";
  try {
    const session = await api("POST", "/api/v1/auth/login", {
      username: document.getElementById("username").value.trim().toLowerCase(),
      password: document.getElementById("password").value,
    });
    location.href = landingFor(session.user, form.dataset.asked ? form.dataset.next : "");
  } catch (e) {
    error.textContent = e.message;
  }
});

// Say nothing of sign-up where nobody may sign up.
api("GET", "/api/v1/auth/registration").then((registration) => {
  if (registration.mode === "closed") document.getElementById("signup-offer").hidden = true;
}).catch(() => {});
