"use strict";

// Where to go after signing in: the page that sent the visitor here, if it is on this site.
// The server already checked `next` (the form's data-next); this checks again, in the browser's
// own URL parser: the result is an absolute URL of this origin whose path does not start with
// "//" (which "/..//host", "/%2e%2e//host" or "/\\host" would otherwise become).
function nextPage(next) {
  const home = new URL("/studio", location.origin).href;
  if (typeof next !== "string" || !next.startsWith("/") || /[\\\u0000-\u0020\u007f]/.test(next)) {
    return home;
  }
  let target;
  try {
    target = new URL(next, location.origin);
  } catch (_) {
    return home;
  }
  if (target.origin !== location.origin || target.pathname.startsWith("//")) return home;
  return target.href;
}

const form = document.getElementById("login-form");
form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const error = document.getElementById("login-error");
  error.textContent = "";
  try {
    await api("POST", "/api/v1/auth/login", {
      username: document.getElementById("username").value.trim().toLowerCase(),
      password: document.getElementById("password").value,
    });
    location.href = nextPage(form.dataset.next);
  } catch (e) {
    error.textContent = e.message;
  }
});
