// The reference web client: every call goes through the public REST API (api.js) and the
// WebSocket (realtime.js); this module holds the page's state and wires it to the views.

import { Api } from "./api.js";
import { Realtime } from "./realtime.js";
import {
  $,
  choiceItem,
  clearNotice,
  el,
  fillMessage,
  messageItem,
  notify,
  showView,
  updateText,
} from "./views.js";

const api = new Api();
let realtime = null;

const state = {
  signInRequest: null, // {request_id, destination} while a code is awaited
  profiles: [],
  profilesCursor: null,
  editingProfile: null,
  sessions: [],
  sessionsCursor: null,
  sessionId: null,
  olderCursor: null,
  messages: new Map(), // every message seen, by id, whichever session it belongs to
  composeKey: null, // the idempotency key of the message being sent (the same on a retry)
  exportId: null, // the export this page started, and its download once ready
  exportUrl: null,
  deletion: null, // the request id of the code that confirms a deletion
};

const FINAL = new Set(["done", "failed", "cancelled"]);

/** Report an error readably; every handler's failures end here. */
function failed(error) {
  notify(error?.message || String(error));
}

/** Run an async handler from an event, reporting its failure. */
function handle(run) {
  return (event) => {
    event?.preventDefault?.();
    run(event).catch(failed);
  };
}

function newKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

// --- Signing in --------------------------------------------------------------------------

async function requestCode() {
  const destination = $("destination").value.trim();
  const channel = document.querySelector("input[name=channel]:checked").value;
  if (!destination) {
    notify("Enter an email address or a phone number.");
    $("destination").focus();
    return;
  }
  const answer = await api.requestCode(channel, destination);
  clearNotice();
  state.signInRequest = { request_id: answer.request_id, destination };
  $("code-sent").textContent = `We sent a code to ${destination}. It is valid for ${Math.round(
    answer.expires_in / 60,
  )} minutes.`;
  $("request-form").hidden = true;
  $("verify-form").hidden = false;
  $("code").value = "";
  $("code").focus();
}

async function verifyCode() {
  const code = $("code").value.trim();
  if (!/^\d{6}$/.test(code)) {
    notify("The code has six digits.");
    $("code").focus();
    return;
  }
  try {
    await api.verifyCode(state.signInRequest.request_id, code);
  } catch (error) {
    if (["otp-attempts-exhausted", "otp-code-expired", "otp-code-used", "otp-request-not-found"].includes(error.type)) {
      anotherAddress();
    }
    throw error;
  }
  clearNotice();
  Realtime.forget(); // a new sign-in starts the event stream afresh
  enterApp();
}

function anotherAddress() {
  state.signInRequest = null;
  $("verify-form").hidden = true;
  $("request-form").hidden = false;
  $("destination").focus();
}

function showSignIn() {
  for (const id of ["nav", "sign-out", "connection"]) $(id).hidden = true;
  $("verify-form").hidden = true;
  $("request-form").hidden = false;
  showView("sign-in");
  $("destination").focus();
}

function signedOut(reason) {
  realtime?.stop();
  realtime = null;
  Realtime.forget();
  state.messages.clear();
  state.sessionId = null;
  showSignIn();
  if (reason) notify(reason);
}

// --- The signed-in app -------------------------------------------------------------------

function enterApp() {
  for (const id of ["nav", "sign-out", "connection"]) $(id).hidden = false;
  realtime = new Realtime({
    token: () => api.accessToken,
    event: onEvent,
    resync: () => refreshAll().catch(failed),
    status: (text, live) => {
      $("connection").textContent = text;
      $("connection").dataset.live = live ? "yes" : "no";
    },
    expired: () => api.refresh().then(() => api.accessToken),
    final: (code, text) => {
      if (code === 4003) signedOut(text);
      else notify(text);
    },
  });
  realtime.start();
  scheduleRefresh();
  refreshAll().catch(failed);
  route();
}

let refreshTimer = null;

/** Refresh the tokens a minute before the access token expires; hand the new one to the socket. */
function scheduleRefresh() {
  clearTimeout(refreshTimer);
  if (!api.tokens) return;
  const wait = Math.max(api.tokens.refresh_at - Date.now(), 1000);
  refreshTimer = setTimeout(async () => {
    try {
      await api.refresh();
      realtime?.renewToken(api.accessToken);
    } catch (error) {
      if (error.status === 0) refreshTimer = setTimeout(scheduleRefresh, 10_000);
      return;
    }
    scheduleRefresh();
  }, wait);
}

async function refreshAll() {
  await Promise.all([loadProfiles(), loadSessions()]);
  if (state.sessionId) await openSession(state.sessionId, { focus: false });
}

function route() {
  if (!api.signedIn) return showSignIn();
  const [view, id] = location.hash.replace(/^#\/?/, "").split("/");
  switch (view) {
    case "profiles":
      showView("profiles");
      return;
    case "settings":
      showView("settings");
      loadSettings().catch(failed);
      return;
    case "account":
      showView("account");
      showAccount();
      return;
    default:
      showView("chats", { focus: !id });
      if (id && id !== state.sessionId) openSession(id).catch(failed);
  }
}

// --- Sessions and messages ---------------------------------------------------------------

async function loadSessions({ more = false } = {}) {
  const cursor = more && state.sessionsCursor ? `&cursor=${encodeURIComponent(state.sessionsCursor)}` : "";
  const page = await api.request("GET", `/sessions?limit=20${cursor}`);
  state.sessions = more ? [...state.sessions, ...page.items] : page.items;
  state.sessionsCursor = page.next_cursor;
  renderSessions();
}

function renderSessions() {
  const profileNames = new Map(state.profiles.map((p) => [p.id, p.name]));
  $("session-list").replaceChildren(
    ...state.sessions.map((session) =>
      choiceItem(
        session.title || "Untitled chat",
        [profileNames.get(session.profile_id), `${session.message_count} messages`]
          .filter(Boolean)
          .join(" · "),
        session.id === state.sessionId,
        () => {
          location.hash = `#/chats/${session.id}`;
        },
      ),
    ),
  );
  $("more-sessions").hidden = !state.sessionsCursor;
}

async function createSession() {
  const title = $("session-title").value.trim() || null;
  const profile = $("session-profile").value || null;
  const session = await api.request("POST", "/sessions", { title, profile_id: profile });
  $("session-title").value = "";
  state.sessions = [session, ...state.sessions.filter((s) => s.id !== session.id)];
  location.hash = `#/chats/${session.id}`;
}

async function openSession(id, { focus = true } = {}) {
  const detail = await api.request("GET", `/sessions/${id}?limit=50`);
  const switched = state.sessionId !== id;
  state.sessionId = id;
  state.olderCursor = detail.messages.next_cursor;
  for (const message of detail.messages.items) merge(message);
  $("chat-title").textContent = detail.session.title || "Untitled chat";
  $("chat-about").textContent = [
    detail.profile ? `About ${detail.profile.name}` : null,
    detail.tone ? `Tone: ${detail.tone.name}` : null,
  ]
    .filter(Boolean)
    .join(" · ");
  $("compose-form").hidden = false;
  $("view-chats").dataset.open = "yes";
  $("older-messages").hidden = !state.olderCursor;
  renderMessages();
  renderSessions();
  if (switched && focus) $("compose").focus();
}

async function olderMessages() {
  const page = await api.request(
    "GET",
    `/sessions/${state.sessionId}/messages?limit=50&before=${encodeURIComponent(state.olderCursor)}`,
  );
  for (const message of page.items) merge(message);
  state.olderCursor = page.next_cursor;
  $("older-messages").hidden = !state.olderCursor;
  renderMessages();
}

/**
 * Take a message read over REST or from an event into the state. What the socket streamed is
 * kept while the stored copy is not final yet (its content is written only when it is done).
 */
function merge(incoming) {
  const known = state.messages.get(incoming.id);
  if (known && !FINAL.has(incoming.processing_status)) {
    // An older read (a completion that arrived first wins), or a stored copy without the text
    // streamed so far (it is written only when done): keep the text and the furthest status.
    if (FINAL.has(known.processing_status)) return known;
    Object.assign(known, incoming, {
      content: known.content,
      gap: known.gap,
      processing_status:
        known.processing_status === "processing" ? "processing" : incoming.processing_status,
    });
    return known;
  }
  const message = { ...incoming, feedback: known?.feedback ?? null, gap: false };
  state.messages.set(message.id, message);
  if (FINAL.has(message.processing_status)) realtime?.settled(message.id);
  return message;
}

function sessionMessages() {
  return [...state.messages.values()]
    .filter((m) => m.session_id === state.sessionId)
    .sort((a, b) => (a.created_at < b.created_at ? -1 : a.created_at > b.created_at ? 1 : 0));
}

function actionsFor(message) {
  const act = (run) => handle(() => run(message));
  return {
    copy: act(copyReply),
    like: act((m) => feedback(m, "liked")),
    dislike: act((m) => feedback(m, "disliked")),
    regenerate: act(regenerate),
    cancel: act(cancel),
  };
}

function itemOf(id) {
  return $("messages").querySelector(`li[data-id="${CSS.escape(id)}"]`);
}

function renderMessages() {
  $("messages").replaceChildren(...sessionMessages().map((m) => messageItem(m, actionsFor(m))));
}

/** Show a message that changed: in place when it is already shown, else in order. */
function show(message, { textOnly = false } = {}) {
  if (message.session_id !== state.sessionId || !message.created_at) return;
  const item = itemOf(message.id);
  if (!item) {
    renderMessages();
    return;
  }
  if (textOnly) {
    updateText(item, message);
    return;
  }
  const hadFocus = item.contains(document.activeElement);
  fillMessage(item, message, actionsFor(message));
  if (hadFocus) item.querySelector("button")?.focus();
}

function onEvent(frame) {
  const { data } = frame;
  switch (frame.type) {
    case "message.created":
      if (!state.messages.has(data.id)) bumpSession(data);
      show(merge(data));
      return;
    case "message.delta": {
      let message = state.messages.get(data.message_id);
      if (!message) {
        message = {
          id: data.message_id,
          session_id: data.session_id,
          sender: "ai",
          content: "",
          processing_status: "processing",
          gap: false,
        };
        state.messages.set(message.id, message);
      }
      if (FINAL.has(message.processing_status)) return; // a late replay of a finished reply
      const wasQueued = message.processing_status !== "processing";
      message.processing_status = "processing";
      if (message.content.slice(data.offset, data.offset + data.text.length) === data.text) {
        // Text already shown (a replay after a reload or a drop): nothing to redo.
      } else if (data.offset <= message.content.length) {
        message.content = message.content.slice(0, data.offset) + data.text;
        if (data.offset === 0) message.gap = false;
      } else {
        message.gap = true; // text missed (a resync): the completed message will have it all
      }
      show(message, { textOnly: !wasQueued });
      return;
    }
    case "message.completed":
    case "message.failed": {
      const message = merge(data);
      show(message);
      if (message.session_id === state.sessionId && message.sender === "ai") {
        // Screen readers skip the text while it streams (aria-busy): say when it is there.
        $("announce").textContent =
          message.processing_status === "done" ? "Suggestion ready." : "Suggestion stopped.";
      }
      return;
    }
    case "export.ready":
      if (data.id === state.exportId) exportReady(data.download_url);
      return;
    default:
  }
}

/** A new message moves its session to the top of the list, one message more. */
function bumpSession(message) {
  const session = state.sessions.find((s) => s.id === message.session_id);
  if (!session) {
    loadSessions().catch(failed);
    return;
  }
  session.message_count += 1;
  session.last_message_at = message.created_at;
  state.sessions = [session, ...state.sessions.filter((s) => s !== session)];
  renderSessions();
}

async function sendMessage() {
  const content = $("compose").value.trim();
  if (!content) {
    notify("Write a message first.");
    $("compose").focus();
    return;
  }
  state.composeKey ??= newKey();
  const pair = await api.request("POST", `/sessions/${state.sessionId}/messages`, {
    content,
    idempotency_key: state.composeKey,
  });
  state.composeKey = null;
  $("compose").value = "";
  clearNotice();
  for (const message of [pair.user_message, pair.ai_message]) {
    if (!state.messages.has(message.id)) bumpSession(message);
    show(merge(message));
  }
}

async function regenerate(message) {
  const reply = await api.request("POST", `/messages/${message.id}/regenerate`);
  if (!state.messages.has(reply.id)) bumpSession(reply);
  show(merge(reply));
}

async function cancel(message) {
  show(merge(await api.request("POST", `/messages/${message.id}/cancel`)));
}

async function feedback(message, type) {
  await api.request("POST", `/sessions/${message.session_id}/events`, {
    type,
    message_id: message.id,
  });
  message.feedback = type;
  show(message);
  notify(type === "liked" ? "Thanks: marked as liked." : "Thanks: marked as disliked.", {
    kind: "info",
  });
}

async function copyReply(message) {
  await writeClipboard(message.content);
  await api.request("POST", `/sessions/${message.session_id}/events`, {
    type: "copied",
    message_id: message.id,
  });
  notify("Copied to the clipboard.", { kind: "info" });
}

async function writeClipboard(text) {
  if (navigator.clipboard?.writeText) {
    try {
      await navigator.clipboard.writeText(text);
      return;
    } catch {
      // No permission (or not a secure context): fall back to a selection.
    }
  }
  const area = el("textarea", { class: "offscreen", readonly: true, "aria-hidden": "true" });
  area.value = text;
  document.body.append(area);
  area.select();
  const copied = document.execCommand("copy");
  area.remove();
  if (!copied) throw new Error("The browser refused to copy; select the text instead.");
}

// --- Profiles ----------------------------------------------------------------------------

async function loadProfiles({ more = false } = {}) {
  const cursor = more && state.profilesCursor ? `&cursor=${encodeURIComponent(state.profilesCursor)}` : "";
  const page = await api.request("GET", `/profiles?limit=50${cursor}`);
  state.profiles = more ? [...state.profiles, ...page.items] : page.items;
  state.profilesCursor = page.next_cursor;
  renderProfiles();
}

function renderProfiles() {
  $("profile-list").replaceChildren(
    ...state.profiles.map((profile) =>
      choiceItem(
        profile.name,
        profile.interests.join(", "),
        profile.id === state.editingProfile,
        () => editProfile(profile),
      ),
    ),
  );
  $("more-profiles").hidden = !state.profilesCursor;
  const select = $("session-profile");
  const chosen = select.value;
  select.replaceChildren(
    el("option", { value: "", text: "No profile" }),
    ...state.profiles.map((p) => el("option", { value: p.id, text: p.name })),
  );
  select.value = state.profiles.some((p) => p.id === chosen) ? chosen : "";
}

function editProfile(profile) {
  state.editingProfile = profile?.id ?? null;
  $("profile-form-title").textContent = profile ? `Edit ${profile.name}` : "New profile";
  $("profile-name").value = profile?.name ?? "";
  $("profile-notes").value = profile?.notes ?? "";
  $("profile-interests").value = profile?.interests.join(", ") ?? "";
  renderProfiles();
  $("profile-name").focus();
}

async function saveProfile() {
  const name = $("profile-name").value.trim();
  if (!name) {
    notify("A profile needs a name.");
    $("profile-name").focus();
    return;
  }
  const body = {
    name,
    notes: $("profile-notes").value.trim() || null,
    interests: $("profile-interests")
      .value.split(",")
      .map((s) => s.trim())
      .filter(Boolean),
  };
  const saved = state.editingProfile
    ? await api.request("PATCH", `/profiles/${state.editingProfile}`, body)
    : await api.request("POST", "/profiles", body);
  state.editingProfile = saved.id;
  await loadProfiles();
  $("profile-form-title").textContent = `Edit ${saved.name}`;
  notify(`Saved ${saved.name}.`, { kind: "info" });
}

// --- Settings ----------------------------------------------------------------------------

async function loadSettings() {
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

function showAccount() {
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
      if (current.status === "ready") return exportReady(current.download_url);
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

function exportReady(url) {
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
  signedOut(`Your account is deleted. Signing in again before ${until} restores it.`);
}

// --- Wiring ------------------------------------------------------------------------------

function wire() {
  api.onSignedOut = signedOut;
  api.onTokens = () => scheduleRefresh();
  $("request-form").addEventListener("submit", handle(requestCode));
  $("verify-form").addEventListener("submit", handle(verifyCode));
  $("new-code").addEventListener("click", anotherAddress);
  $("notice-close").addEventListener("click", clearNotice);
  $("sign-out").addEventListener(
    "click",
    handle(async () => {
      realtime?.stop();
      await api.signOut();
      signedOut(null);
    }),
  );
  for (const input of document.querySelectorAll("input[name=channel]")) {
    input.addEventListener("change", () => {
      $("destination").autocomplete = input.value === "sms" ? "tel" : "email";
    });
  }
  $("session-form").addEventListener("submit", handle(createSession));
  $("more-sessions").addEventListener("click", handle(() => loadSessions({ more: true })));
  $("older-messages").addEventListener("click", handle(olderMessages));
  $("compose-form").addEventListener("submit", handle(sendMessage));
  $("compose").addEventListener("input", () => {
    state.composeKey = null; // changed text is a new message, not a retry
  });
  $("compose").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      $("compose-form").requestSubmit();
    }
  });
  $("profile-form").addEventListener("submit", handle(saveProfile));
  $("profile-new").addEventListener("click", () => editProfile(null));
  $("more-profiles").addEventListener("click", handle(() => loadProfiles({ more: true })));
  $("settings-form").addEventListener("submit", handle(saveSettings));
  $("export-start").addEventListener("click", handle(startExport));
  $("export-download").addEventListener("click", handle(downloadExport));
  $("delete-code").addEventListener("click", handle(deletionCode));
  $("delete-form").addEventListener("submit", handle(deleteAccount));
  window.addEventListener("hashchange", route);
}

wire();
if (api.signedIn) enterApp();
else showSignIn();
