"use strict";
document.getElementById("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const error = document.getElementById("login-error");
  error.textContent = "";
  try {
    await api("POST", "/api/v1/auth/login", {
      username: document.getElementById("username").value.trim().toLowerCase(),
      password: document.getElementById("password").value,
    });
    const next = new URLSearchParams(location.search).get("next");
    location.href = next && next.startsWith("/") && !next.startsWith("//") ? next : "/studio";
  } catch (e) {
    error.textContent = e.message;
  }
});
