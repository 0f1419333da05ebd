// The studio's restream page: a channel's destinations, their push status, add/enable/remove.
"use strict";

(function () {
  const slug = decodeURIComponent(location.pathname.split("/")[3]);
  const base = `/api/v1/channels/${encodeURIComponent(slug)}/destinations`;
  const rows = document.getElementById("destination-rows");
  const none = document.getElementById("no-destinations");
  const error = document.getElementById("restream-error");

  function cell(text) {
    const td = document.createElement("td");
    td.textContent = text;
    return td;
  }

  function status(push) {
    if (!push) return "Not pushed yet";
    const mb = (push.bytes_sent / 1e6).toFixed(1);
    const words = { connecting: "Connecting", live: "Live", retrying: "Retrying", stopped: "Stopped" };
    let text = `${words[push.state] || push.state} · ${mb} MB sent`;
    if (push.state === "retrying" && push.last_error) text += ` · ${push.last_error}`;
    return text;
  }

  function row(destination) {
    const tr = document.createElement("tr");
    tr.dataset.id = destination.id;
    tr.append(cell(destination.name), cell(destination.url), cell(destination.stream_key));
    const enabled = document.createElement("td");
    const box = document.createElement("input");
    box.type = "checkbox";
    box.checked = destination.enabled;
    box.setAttribute("aria-label", `Enable ${destination.name}`);
    box.addEventListener("change", () => change(destination.id, { enabled: box.checked }));
    enabled.append(box);
    const state = cell(status(destination.push));
    state.className = `push push-${destination.push ? destination.push.state : "none"}`;
    const actions = document.createElement("td");
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "secondary";
    remove.textContent = "Remove";
    remove.setAttribute("aria-label", `Remove ${destination.name}`);
    remove.addEventListener("click", () => change(destination.id, null));
    actions.append(remove);
    tr.append(enabled, state, actions);
    return tr;
  }

  async function load() {
    try {
      const list = await api("GET", base);
      const focused = document.activeElement && document.activeElement.closest("tr");
      const keep = focused ? focused.dataset.id : null;
      rows.replaceChildren(...list.items.map(row));
      none.hidden = list.items.length > 0;
      if (keep) {
        const again = rows.querySelector(`tr[data-id="${keep}"] input`);
        if (again) again.focus();
      }
      error.textContent = "";
    } catch (err) {
      error.textContent = err.message;
    }
  }

  async function change(id, fields) {
    try {
      if (fields === null) await api("DELETE", `${base}/${id}`);
      else await api("PATCH", `${base}/${id}`, fields);
      await load();
    } catch (err) {
      error.textContent = err.message;
    }
  }

  document.getElementById("add-destination").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.target;
    const field = (id) => document.getElementById(id);
    try {
      await api("POST", base, {
        name: field("dest-name").value,
        url: field("dest-url").value,
        stream_key: field("dest-key").value,
        enabled: field("dest-enabled").checked,
      });
      form.reset();
      field("dest-enabled").checked = true;
      await load();
    } catch (err) {
      error.textContent = err.message;
    }
  });

  requireLogin().then(() => {
    load();
    setInterval(load, 2000);  // the push statuses move while the channel is live
  });
})();
