// smtpmail inbox: live list (server-sent events), tabs, delete, release.
// Message data is only ever put in the page with textContent, never as HTML.
"use strict";

(function () {
  const token = document.querySelector('meta[name="inbox-token"]').content;

  function change(method, url, body) {
    const headers = { "X-Inbox-Token": token };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    return fetch(url, {
      method: method,
      headers: headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
    });
  }

  function size(octets) {
    if (octets < 1024) return octets + " B";
    if (octets < 1024 * 1024) return (octets / 1024).toFixed(1) + " kB";
    return (octets / 1024 / 1024).toFixed(1) + " MB";
  }

  function cell(row, text, cls) {
    const td = document.createElement("td");
    if (cls) td.className = cls;
    if (text !== undefined) td.textContent = text;
    row.appendChild(td);
    return td;
  }

  // The same row as pages.row() renders on the server.
  function row(m) {
    const tr = document.createElement("tr");
    tr.className = "message" + (m.read ? "" : " unread");
    tr.dataset.id = m.id;
    const time = document.createElement("time");
    time.dateTime = m.received;
    time.textContent = m.received.replace("T", " ").replace("Z", " UTC");
    cell(tr).appendChild(time);
    cell(tr, m.from, "from");
    cell(tr, m.to.join(", "), "to");
    const link = document.createElement("a");
    link.href = "/messages/" + encodeURIComponent(m.id);
    link.textContent = m.subject || "(no subject)";
    cell(tr, undefined, "subject").appendChild(link);
    cell(tr, size(m.size), "size");
    const marks = cell(tr, undefined, "marks");
    if (m.attachments) {
      const att = document.createElement("span");
      att.className = "att";
      att.title = "attachments";
      att.textContent = m.attachments + " att.";
      marks.append(att);
    }
    const n = m.lint.errors + m.lint.warnings;
    if (n) {
      const badge = document.createElement("span");
      badge.className = "badge " + (m.lint.errors ? "error" : "warning");
      badge.title = "lint findings";
      badge.textContent = String(n);
      marks.append(" ", badge);
    }
    return tr;
  }

  function listPage() {
    const tbody = document.querySelector("#messages tbody");
    const empty = document.getElementById("empty");
    const count = document.getElementById("count");
    const query = new URLSearchParams(location.search).get("q") || "";

    function refresh() {
      const url = "/api/v1/messages" + (query ? "?query=" + encodeURIComponent(query) : "");
      fetch(url, { credentials: "same-origin" })
        .then((r) => r.json())
        .then((data) => {
          tbody.replaceChildren(...data.messages.map(row));
          count.textContent = data.count + " message(s)";
          empty.classList.toggle("shown", data.count === 0);
        });
    }

    const events = new EventSource("/api/v1/events");
    for (const kind of ["new", "read", "delete", "clear"]) {
      events.addEventListener(kind, refresh);
    }
    document.getElementById("delete-all").addEventListener("click", () => {
      if (!confirm("Delete every message?")) return;
      change("DELETE", "/api/v1/messages").then(refresh);
    });
  }

  function messagePage() {
    const main = document.getElementById("message");
    const api = "/api/v1/messages/" + encodeURIComponent(main.dataset.id);
    for (const tab of document.querySelectorAll("[role=tab]")) {
      tab.addEventListener("click", () => {
        for (const other of document.querySelectorAll("[role=tab]")) {
          other.setAttribute("aria-selected", String(other === tab));
        }
        for (const panel of document.querySelectorAll("[role=tabpanel]")) {
          panel.hidden = panel.id !== "tab-" + tab.dataset.tab;
        }
      });
    }
    document.getElementById("delete").addEventListener("click", () => {
      change("DELETE", api).then(() => location.assign("/"));
    });
    const remote = document.getElementById("remote-images");
    if (remote) {
      remote.addEventListener("click", () => {
        const frame = document.getElementById("html-body");
        frame.src = frame.src.split("?")[0] + "?remote=1";
        remote.disabled = true;
      });
    }
    const release = document.getElementById("release");
    if (release) {
      release.addEventListener("submit", (event) => {
        event.preventDefault();
        const out = document.getElementById("release-result");
        out.textContent = "sending…";
        const to = document.getElementById("release-to").value;
        change("POST", api + "/release", { to: to })
          .then((r) => r.json())
          .then((data) => {
            out.textContent = data.error
              ? data.error
              : "accepted: " + data.accepted.join(", ") +
                (Object.keys(data.refused).length ? "; refused: " + JSON.stringify(data.refused) : "");
          });
      });
    }
  }

  if (document.body.dataset.page === "list") listPage();
  if (document.body.dataset.page === "message") messagePage();
})();
