// The live dashboard: preview player, state, health with reasons, bitrate and viewer charts
// fed by the studio event stream (SSE), the chat panel with moderation, and past broadcasts.
"use strict";
(() => {
  const root = document.getElementById("dashboard-root");
  const slug = root.dataset.slug;
  const $ = (id) => document.getElementById(id);
  const LIVE = ["live", "reconnecting"];

  const bitrateChart = charts.live($("bitrate-chart"), { label: "Bitrate", unit: "kbps", color: "#7aa7ff", floor: 500 });
  const viewersChart = charts.live($("viewers-chart"), { label: "Viewers", unit: "", color: "#3ecf8e", integer: true, floor: 2 });

  let player = null;
  let playingSession = null;
  let currentSession = null;
  let currentState = null;
  let manages = false;

  // -- State and preview --------------------------------------------------------------------

  async function attachPreview(sessionId) {
    if (playingSession === sessionId) return;
    let status;
    try {
      status = await api("GET", studio.channelPath(slug, "/live"));
    } catch (e) {
      return;
    }
    if (!status.master_url || status.session_id !== sessionId || playingSession === sessionId) return;
    if (player) player.destroy();
    const video = $("preview");
    $("preview-box").hidden = false;
    // The broadcaster's own preview is not a viewer: ask the server not to count it.
    const previewUrl = status.master_url + (status.master_url.includes("?") ? "&" : "?") + "preview=1";
    player = attachPlayer(video, previewUrl, { live: true, latency: status.latency });
    playingSession = sessionId;
    video.play().catch(() => {});
  }

  function detachPreview() {
    $("preview-box").hidden = true;
    if (player) player.destroy();
    player = null;
    playingSession = null;
  }

  function showState(state, sessionId) {
    const previous = currentState;
    currentState = state;
    studio.stateBadge($("live-state"), state);
    root.dataset.state = state;
    const onAir = LIVE.includes(state) || state === "idle";
    $("end-stream").hidden = !(manages && onAir);
    $("offline-note").hidden = onAir || state === "ended";
    if (sessionId !== null && sessionId !== undefined && sessionId !== currentSession) {
      if (onAir && currentSession !== null) { bitrateChart.clear(); viewersChart.clear(); }
      currentSession = sessionId;
    }
    if (state === "live") {
      $("ended-note").hidden = true;
      if (previous !== "live" && previous !== "reconnecting") loadSessions(true);
      attachPreview(sessionId);
    } else if (!onAir) {
      detachPreview();
      showHealth({ verdict: "offline", reasons: [] });
      clearFigures();
      if (state === "ended" || (previous && previous !== "offline" && previous !== "ended")) {
        streamEnded(sessionId ?? currentSession);
      }
    }
  }

  function streamEnded(sessionId) {
    $("ended-note").hidden = false;
    $("offline-note").hidden = true;
    $("ended-text").textContent = "The stream has ended.";
    loadSessions(true).then(() => { if (sessionId) showSession(sessionId); });
  }

  // -- Metrics ------------------------------------------------------------------------------

  function showHealth(health) {
    const badge = $("health-verdict");
    badge.textContent = health.verdict;
    badge.className = "badge " + health.verdict;
    badge.dataset.verdict = health.verdict;
    const reasons = health.verdict === "offline" ? [] : health.reasons || [];
    $("health-reasons").replaceChildren(...reasons.map((r) => el("li", { text: r })));
    const SUMMARY = {
      good: "Everything looks fine.", degraded: "Viewers may notice problems:", bad: "Viewers are affected:",
      offline: "No stream.",
    };
    $("health-summary").textContent = SUMMARY[health.verdict] || "";
  }

  function number(value, digits = 0) {
    if (value === null || value === undefined || !Number.isFinite(value)) return "—";
    return value.toFixed(digits);
  }

  // Off the air: no current figures (peak and unique stay: they describe the broadcast).
  function clearFigures() {
    for (const id of ["stat-bitrate", "stat-fps", "stat-keyframe", "stat-uptime"]) $(id).textContent = "—";
    $("stat-bitrate").dataset.value = "";
    $("stat-viewers").textContent = "0";
    $("stat-viewers").dataset.value = "0";
  }

  function showViewers(viewers) {
    // Off the air nobody watches, whatever a late count says.
    const current = LIVE.includes(currentState) ? viewers.current ?? 0 : 0;
    $("stat-viewers").textContent = String(current);
    $("stat-viewers").dataset.value = String(current);
    $("stat-peak").textContent = String(viewers.peak ?? 0);
    $("stat-unique").textContent = String(viewers.unique ?? 0);
  }

  function onSnapshot(snap) {
    if (snap.state && snap.state !== currentState) showState(snap.state, snap.session_id);
    if (snap.health) showHealth(snap.health);
    if (snap.viewers) showViewers(snap.viewers);
    if (!LIVE.includes(snap.state)) {
      clearFigures();  // a final snapshot: the figures describe nothing on air now
      return;
    }
    const ingest = snap.ingest || {};
    const t = snap.at ? Date.parse(snap.at) / 1000 : Date.now() / 1000;
    const kbps = ingest.bitrate_kbps ?? null;
    $("stat-bitrate").textContent = number(kbps, 0);
    $("stat-bitrate").dataset.value = kbps === null ? "" : String(kbps);
    $("stat-fps").textContent = number(ingest.frame_rate, 1);
    $("stat-keyframe").textContent = number(ingest.keyframe_interval, 1);
    $("stat-reconnects").textContent = String(ingest.reconnects ?? 0);
    $("stat-uptime").textContent = studio.formatDuration(snap.uptime);
    bitrateChart.push(t, kbps);
    viewersChart.push(t, snap.viewers ? snap.viewers.current : 0);
  }

  // The session's last minutes, sent as the feed opens: the charts go on from before a reload.
  function onHistory(message) {
    if (message.session_id !== currentSession) return;
    for (const sample of message.items || []) {
      const t = Date.parse(sample.sampled_at) / 1000;
      bitrateChart.push(t, sample.bitrate_kbps ?? null);
      viewersChart.push(t, sample.viewers ?? 0);
    }
  }

  function onVod(message) {
    const ready = message.type === "vod.ready" || message.status === "ready";
    if (!ready || !message.vod_id) return;
    $("ended-note").hidden = false;
    $("vod-note").replaceChildren("The recording is ready: ",
      el("a", { href: "/v/" + encodeURIComponent(message.vod_id), text: "watch it" }), " or manage it in the ",
      el("a", { href: "/studio/library?channel=" + encodeURIComponent(slug), text: "library" }), ".");
  }

  function connect() {
    const source = new EventSource("/api/v1/studio/channels/" + encodeURIComponent(slug) + "/events");
    const parse = (handler) => (event) => {
      let data;
      try { data = JSON.parse(event.data); } catch (_) { return; }
      handler(data);
    };
    source.addEventListener("open", () => { $("feed-note").textContent = ""; root.dataset.feed = "open"; });
    source.addEventListener("state", parse((d) => showState(d.state, d.session_id)));
    source.addEventListener("history", parse(onHistory));
    source.addEventListener("snapshot", parse(onSnapshot));
    source.addEventListener("viewers", parse(showViewers));
    source.addEventListener("vod", parse(onVod));
    let opened = false;
    source.addEventListener("open", () => { opened = true; });
    source.addEventListener("error", () => {
      const closed = source.readyState === EventSource.CLOSED;
      root.dataset.feed = closed ? "closed" : "reconnecting";
      if (closed && !opened && !manages) {
        // Refused from the start: not the owner, a moderator or an admin (or no such channel).
        studio.say("page-error", "Channel not found, or you may not see its studio.");
        $("feed-note").textContent = "";
        return;
      }
      $("feed-note").textContent = closed
        ? "Live updates are unavailable. Reload the page to try again."
        : "Reconnecting to live updates…";
    });
  }

  // -- End the stream -----------------------------------------------------------------------

  $("end-stream").addEventListener("click", async (event) => {
    const button = event.currentTarget;
    const sure = await studio.confirmAction(
      "End the stream now? Viewers see it end, and the encoder is disconnected. The recording becomes a VOD.",
      "End stream");
    if (!sure) return;
    await studio.busy(button, "page-error", async () => {
      await api("POST", studio.channelPath(slug, "/end"));
    });
  });

  // -- Past broadcasts ----------------------------------------------------------------------

  let sessionsCursor = null;

  function sessionItem(s) {
    const length = s.started_at && s.ended_at ? (Date.parse(s.ended_at) - Date.parse(s.started_at)) / 1000 : null;
    const button = el("button", { type: "button", class: "link", "data-session-id": String(s.id),
      text: s.title || "Broadcast " + s.id });
    button.addEventListener("click", () => showSession(s.id, s));
    // Dates are <time> elements: they never break across lines.
    const facts = el("span", { class: "muted" }, studio.timeElement(s.started_at));
    if (length !== null) facts.append(" · " + studio.formatDuration(length));
    if (!s.ended_at) facts.append(" · " + s.state);
    return el("li", { "data-session-id": String(s.id) }, button, facts);
  }

  const known = new Map();

  async function loadSessions(reset) {
    if (reset) { sessionsCursor = null; known.clear(); }
    const query = new URLSearchParams({ limit: "5" });
    if (sessionsCursor) query.set("cursor", sessionsCursor);
    try {
      const page = await api("GET", "/api/v1/studio/channels/" + encodeURIComponent(slug) + "/sessions?" + query);
      const items = page.items.map((s) => { known.set(s.id, s); return sessionItem(s); });
      if (reset) $("sessions").replaceChildren(...items); else $("sessions").append(...items);
      sessionsCursor = page.next_cursor;
      $("more-sessions").hidden = !page.has_more;
      $("no-sessions").hidden = $("sessions").children.length > 0;
    } catch (e) {
      studio.say("history-error", e.message);
    }
  }

  $("more-sessions").addEventListener("click", () => loadSessions(false));

  async function showSession(sessionId, summary) {
    const s = summary || known.get(sessionId);
    const base = "/api/v1/studio/channels/" + encodeURIComponent(slug) + "/sessions/" + sessionId + "/samples";
    let samples = [];
    try {
      let after = null;
      do {
        const page = await api("GET", base + (after ? "?after=" + encodeURIComponent(after) : ""));
        samples = samples.concat(page.items);
        after = page.next;
      } while (after);
    } catch (e) {
      studio.say("history-error", e.message);
      return;
    }
    $("session-report").hidden = false;
    $("session-report").dataset.sessionId = String(sessionId);
    $("session-heading").textContent = s ? (s.title || "Broadcast " + s.id) : "Broadcast " + sessionId;
    const report = $("session-summary");
    report.replaceChildren();
    if (s) {
      report.append("Started ", studio.timeElement(s.started_at));
      if (s.ended_at) report.append(" · ended ", studio.timeElement(s.ended_at));
      if (s.end_reason) report.append(" · " + s.end_reason);
      report.append(" · ");
    }
    report.append(samples.length + (samples.length === 1 ? " sample" : " samples"));
    charts.history($("session-chart"), samples);
  }

  // -- Start --------------------------------------------------------------------------------

  async function load() {
    try {
      const channel = await api("GET", studio.channelPath(slug, ""));
      manages = true;
      $("channel-title").textContent = channel.title;
      document.title = channel.title + " · Dashboard · Stagecast";
    } catch (e) {
      // Moderators see the dashboard but do not manage the channel (no settings, no end).
      if (e.status !== 404) throw e;
      $("settings-link").hidden = true;
    }
    connect();
    loadSessions(true);
    const chatRoot = document.getElementById("chat");
    if (window.initChat && chatRoot) window.initChat(chatRoot, slug, { canModerate: true });
  }

  requireLogin().then(load).catch((e) => { if (e.status !== 401) studio.say("page-error", e.message); });
})();
