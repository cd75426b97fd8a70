// The user's own things: reply settings, the data export and the account's deletion.

import { api } from "./api.js";
import { $, el, failed, handle, notify } from "./views.js";

const state = {
  exportId: null, // the export this page started, and its download once ready
  exportUrl: null,
  deletion: null, // the request id of the code that confirms a deletion
};

// Called once the account is deleted, with what to tell the user.
let onDeleted = () => {};

// --- Settings ----------------------------------------------------------------------------

export async function loadSettings() {
  $("settings-fields").disabled = true; // until the saved values are in
  const [tones, settings] = await Promise.all([
    api.request("GET", "/tones"),
    api.request("GET", "/me/settings"),
  ]);
  $("settings-tone").replaceChildren(
    el("option", { value: "", text: "Default" }),
    ...tones.map((tone) => el("option", { value: tone.id, text: tone.name })),
  );
  $("settings-tone").value = settings.default_tone_id ?? "";
  $("settings-length").value = settings.reply_length;
  $("settings-language").value = settings.language ?? "";
  $("settings-fields").disabled = false;
}

async function saveSettings() {
  await api.request("PUT", "/me/settings", {
    default_tone_id: $("settings-tone").value || null,
    reply_length: $("settings-length").value,
    language: $("settings-language").value.trim() || null,
  });
  notify("Settings saved.", { kind: "info" });
}

// --- Account: export and deletion --------------------------------------------------------

export function showAccount() {
  const user = api.tokens?.user;
  $("account-who").textContent = user ? `Signed in as ${user.email ?? user.phone}.` : "";
}

async function startExport() {
  const started = await api.request("POST", "/me/export");
  state.exportId = started.id;
  $("export-download").hidden = true;
  $("export-status").textContent = "Preparing your export…";
  pollExport(started.id);
}

/** The socket announces `export.ready`; polling covers a socket that is down meanwhile. */
function pollExport(id) {
  setTimeout(async () => {
    if (state.exportId !== id || !api.signedIn) return;
    try {
      const current = await api.request("GET", `/me/exports/${id}`);
      if (current.status === "ready") return showDownload(current.download_url);
      if (current.status === "failed" || current.status === "expired") {
        $("export-status").textContent = "The export failed. Try again.";
        return;
      }
    } catch (error) {
      if (error.status !== 0) return failed(error);
    }
    pollExport(id);
  }, 3000);
}

/** `export.ready` from the socket, or the poll that saw it ready. */
export function exportReady(id, url) {
  if (id !== state.exportId) return;
  showDownload(url);
}

function showDownload(url) {
  state.exportUrl = url;
  $("export-status").textContent = "Your export is ready.";
  $("export-download").hidden = false;
}

async function downloadExport() {
  const blob = await api.download(state.exportUrl);
  const link = el("a", { href: URL.createObjectURL(blob), download: "wingman-export.zip" });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
}

async function deletionCode() {
  const user = api.tokens.user;
  const channel = user.email ? "email" : "sms";
  const answer = await api.requestCode(channel, user.email ?? user.phone);
  state.deletion = answer.request_id;
  $("delete-form").hidden = false;
  $("delete-code-input").focus();
  notify(`We sent a deletion code to ${user.email ?? user.phone}.`, { kind: "info" });
}

async function deleteAccount() {
  const code = $("delete-code-input").value.trim();
  const deleted = await api.request("DELETE", "/me", { request_id: state.deletion, code });
  const until = new Date(deleted.purge_after).toLocaleString();
  api.forget();
  onDeleted(`Your account is deleted. Signing in again before ${until} restores it.`);
}

export function wireAccount(hooks) {
  onDeleted = hooks.deleted;
  $("settings-form").addEventListener("submit", handle(saveSettings));
  $("export-start").addEventListener("click", handle(startExport));
  $("export-download").addEventListener("click", handle(downloadExport));
  $("delete-code").addEventListener("click", handle(deletionCode));
  $("delete-form").addEventListener("submit", handle(deleteAccount));
}
