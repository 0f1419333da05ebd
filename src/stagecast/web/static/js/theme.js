// Light or dark: the visitor's choice (remembered in localStorage), else prefers-color-scheme.
// Loaded in <head> so the page paints in the right theme; the toggle is wired once it exists.
"use strict";
(() => {
  const KEY = "stagecast-theme";
  const root = document.documentElement;
  const system = () => (matchMedia("(prefers-color-scheme: light)").matches ? "light" : "dark");
  let saved = null;
  try { saved = localStorage.getItem(KEY); } catch (_) { /* storage off: follow the system */ }
  if (saved === "light" || saved === "dark") root.dataset.theme = saved;
  const current = () => root.dataset.theme || system();

  // A toggle button keeps its name ("Dark theme"); aria-pressed says whether it is on.
  function label(button) {
    button.setAttribute("aria-pressed", String(current() === "dark"));
  }

  document.addEventListener("DOMContentLoaded", () => {
    const button = document.getElementById("theme-toggle");
    if (!button) return;
    button.hidden = false;
    label(button);
    button.addEventListener("click", () => {
      const next = current() === "dark" ? "light" : "dark";
      root.dataset.theme = next;
      try { localStorage.setItem(KEY, next); } catch (_) { /* not remembered, still applied */ }
      label(button);
    });
    matchMedia("(prefers-color-scheme: light)").addEventListener("change", () => label(button));
  });
})();
