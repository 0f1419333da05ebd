"use strict";

// Where to go after signing in: the page that sent the visitor here, if it is on this site.
function nextPage() {
  const next = new URLSearchParams(location.search).get("next");
  if (!next || !next.startsWith("/")) return "/studio";
  const target = new URL(next, location.origin);  // "//host" and "/\\host" resolve elsewhere
  return target.origin === location.origin ? target.pathname + target.search + target.hash : "/studio";
}
document.getElementById("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const error = document.getElementById("login-error");
  error.textContent = "";
  try {
    await api("POST", "/api/v1/auth/login", {
      username: document.getElementById("username").value.trim().toLowerCase(),
      password: document.getElementById("password").value,
    });
    location.href = nextPage();
  } catch (e) {
    error.textContent = e.message;
  }
});
