// On every page: the header says who is signed in (a link to the account page) with a
// "Sign out" button, or offers "Sign in" that comes back to this page. Sign-in links in the
// page itself ("Sign in to chat") come back here too.
"use strict";

// Where to go after signing in: `next` if it is a path of this site. The server already checked
// it; this checks again in the browser's own URL parser: the result is an absolute URL of this
// origin whose path does not start with "//" ("/..//host", "/%2e%2e//host", "/\\host").
function nextPage(next, fallback) {
  const home = new URL(fallback || "/studio", location.origin).href;
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

// Where a freshly signed-in account lands: the page it asked for, else the studio for those who
// may own channels and the home page for viewers (the studio has nothing for them).
function landingFor(user, next) {
  const fallback = user.role === "viewer" ? "/" : "/studio";
  return next ? nextPage(next, fallback) : new URL(fallback, location.origin).href;
}

(() => {
  const here = location.pathname + location.search;
  const onSignInPages = location.pathname === "/login" || location.pathname === "/signup";
  const comeBack = (href) => href + "?next=" + encodeURIComponent(here);

  // Plain "/login" and "/signup" links, also those a script adds later, return to this page.
  function rewrite(link) {
    const href = link.getAttribute("href");
    if (!onSignInPages && (href === "/login" || href === "/signup")) link.setAttribute("href", comeBack(href));
  }
  document.querySelectorAll("a[href]").forEach(rewrite);
  document.addEventListener("click", (event) => {
    const link = event.target instanceof Element ? event.target.closest("a[href]") : null;
    if (link) rewrite(link);
  }, true);

  async function signOut() {
    try { await api("POST", "/api/v1/auth/logout"); } finally { location.reload(); }
  }

  async function show() {
    const who = document.getElementById("whoami");
    const logout = document.getElementById("logout");
    const signin = document.getElementById("signin");
    let me = null;
    try {
      me = await api("GET", "/api/v1/auth/me");
    } catch (e) {
      if (e.status !== 401) return;
    }
    if (me) {
      if (who) { who.textContent = me.user.username; who.hidden = false; }
      if (logout) { logout.hidden = false; if (!logout.onclick) logout.onclick = signOut; }
      const invites = document.getElementById("nav-invites");
      if (invites && me.user.role === "admin") invites.hidden = false;
    } else if (signin && !onSignInPages) {
      signin.hidden = false;
    }
  }
  show();
})();
