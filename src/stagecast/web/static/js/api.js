// Small client for the Stagecast JSON API: cookie session + CSRF header on changes.
"use strict";

function csrfToken() {
  const match = document.cookie.match(/(?:^|; )stagecast_csrf=([^;]*)/);
  return match ? decodeURIComponent(match[1]) : "";
}

class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

async function api(method, path, body) {
  const headers = { "Accept": "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET") headers["X-CSRF-Token"] = csrfToken();
  const response = await fetch(path, {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 204) return null;
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const err = data.error || {};
    throw new ApiError(response.status, err.code || "error", err.message || response.statusText);
  }
  return data;
}

async function requireLogin() {
  try {
    const me = await api("GET", "/api/v1/auth/me");
    const who = document.getElementById("whoami");
    if (who) who.textContent = me.user.username;
    const logout = document.getElementById("logout");
    if (logout) {
      logout.hidden = false;
      logout.onclick = async () => { await api("POST", "/api/v1/auth/logout"); location.href = "/login"; };
    }
    return me.user;
  } catch (e) {
    if (e.status !== 401) throw e;
    // Off to the sign-in page, and back here afterwards; the page's own code never runs.
    location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search);
    return new Promise(() => {});
  }
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v; else if (k === "text") node.textContent = v; else node.setAttribute(k, v);
  }
  for (const child of children) node.append(child);
  return node;
}

function wireCopyButtons(root) {
  for (const button of (root || document).querySelectorAll("[data-copy]")) {
    button.addEventListener("click", async () => {
      const input = document.getElementById(button.dataset.copy);
      try { await navigator.clipboard.writeText(input.value); } catch (_) { input.select(); document.execCommand("copy"); }
      button.textContent = "Copied";
      setTimeout(() => { button.textContent = "Copy"; }, 1500);
    });
  }
}
