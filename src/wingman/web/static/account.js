// @ts-check
// The user's own things: reply settings, the data export and the account's deletion.

import { ApiError, api } from "./api.js";
import { $, el, failed, handle, notify } from "./views.js";

/** @typedef {import("./api.js").Schemas} Schemas */

/** @type {{ exportId: string | null, exportUrl: string | null, deletion: string | null }} */
const state = {
  exportId: null, // the export this page started, and its download once ready
  exportUrl: null,
  deletion: null, // the request id of the code that confirms a deletion
};

// Called once the account is deleted, with what to tell the user.
/** @type {(text: string) => void} */
let onDeleted = () => {};

// --- Settings ----------------------------------------------------------------------------

export async function loadSettings() {
  $("settings-fields").disabled = true; // until the saved values are in
  /** @type {[Schemas["ToneBrief"][], Schemas["SettingsOut"]]} */
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
  /** @type {Schemas["SettingsIn"]} */
  const body = {
    default_tone_id: $("settings-tone").value || null,
    reply_length: $("settings-length").value,
    language: $("settings-language").value.trim() || null,
  };
  await api.request("PUT", "/me/settings", body);
  notify("Settings saved.", { kind: "info" });
}

// --- Account: export and deletion --------------------------------------------------------

export function showAccount() {
  const user = api.tokens?.user;
  $("account-who").textContent = user ? `Signed in as ${user.email ?? user.phone}.` : "";
}

async function startExport() {
  /** @type {Schemas["ExportOut"]} */
  const started = await api.request("POST", "/me/export");
  state.exportId = started.id;
  $("export-download").hidden = true;
  $("export-status").textContent = "Preparing your export…";
  pollExport(started.id);
}

/**
 * The socket announces `export.ready`; polling covers a socket that is down meanwhile.
 * @param {string} id
 */
function pollExport(id) {
  setTimeout(async () => {
    if (state.exportId !== id || !api.signedIn) return;
    try {
      /** @type {Schemas["ExportOut"]} */
      const current = await api.request("GET", `/me/exports/${id}`);
      if (current.status === "ready" && current.download_url) {
        return showDownload(current.download_url);
      }
      if (current.status === "failed" || current.status === "expired") {
        $("export-status").textContent = "The export failed. Try again.";
        return;
      }
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 0) return failed(error);
    }
    pollExport(id);
  }, 3000);
}

/**
 * `export.ready` from the socket, or the poll that saw it ready.
 * @param {string} id
 * @param {string} url
 */
export function exportReady(id, url) {
  if (id !== state.exportId) return;
  showDownload(url);
}

/** @param {string} url */
function showDownload(url) {
  state.exportUrl = url;
  $("export-status").textContent = "Your export is ready.";
  $("export-download").hidden = false;
}

async function downloadExport() {
  if (!state.exportUrl) return;
  const blob = await api.download(state.exportUrl);
  const link = el("a", { href: URL.createObjectURL(blob), download: "wingman-export.zip" });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
}

async function deletionCode() {
  const user = api.tokens?.user;
  const destination = user?.email ?? user?.phone;
  if (!destination) return;
  const answer = await api.requestCode(user?.email ? "email" : "sms", destination);
  state.deletion = answer.request_id;
  $("delete-form").hidden = false;
  $("delete-code-input").focus();
  notify(`We sent a deletion code to ${destination}.`, { kind: "info" });
}

async function deleteAccount() {
  const code = $("delete-code-input").value.trim();
  /** @type {Schemas["DeleteMeIn"]} */
  const body = { request_id: state.deletion ?? "", code };
  /** @type {Schemas["DeletionOut"]} */
  const deleted = await api.request("DELETE", "/me", body);
  const until = new Date(deleted.purge_after).toLocaleString();
  api.forget();
  onDeleted(`Your account is deleted. Signing in again before ${until} restores it.`);
}

/** @param {{ deleted: (text: string) => void }} hooks */
export function wireAccount(hooks) {
  onDeleted = hooks.deleted;
  $("settings-form").addEventListener("submit", handle(saveSettings));
  $("export-start").addEventListener("click", handle(startExport));
  $("export-download").addEventListener("click", handle(downloadExport));
  $("delete-code").addEventListener("click", handle(deletionCode));
  $("delete-form").addEventListener("submit", handle(deleteAccount));
}
