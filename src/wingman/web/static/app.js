// @ts-check
// The reference web client's entry point: signing in, the socket, and which page is shown.
// Every call goes through the public REST API (api.js) and the WebSocket (realtime.js); the
// pages' own logic is in chat.js, profiles.js and account.js.

import { exportReady, loadSettings, showAccount, wireAccount } from "./account.js";
import { ApiError, api } from "./api.js";
import {
  onMessageEvent,
  reloadChats,
  renderSessions,
  resetChats,
  showChat,
  wireChats,
} from "./chat.js";
import { loadProfiles, resetProfiles, wireProfiles } from "./profiles.js";
import { Realtime } from "./realtime.js";
import { $, clearNotice, failed, handle, notify, showView } from "./views.js";

/** @type {Realtime | null} */
let realtime = null;
/** @type {{ request_id: string, destination: string } | null} while a code is awaited */
let signInRequest = null;
// Sign-in refusals after which only a new code helps (docs/accounts.md).
const CODE_GONE = new Set([
  "otp-attempts-exhausted",
  "otp-code-expired",
  "otp-code-used",
  "otp-request-not-found",
]);

// --- Signing in --------------------------------------------------------------------------

async function requestCode() {
  const destination = $("destination").value.trim();
  const checked = /** @type {HTMLInputElement} */ (
    document.querySelector("input[name=channel]:checked")
  );
  const channel = /** @type {"email" | "sms"} */ (checked.value);
  if (!destination) {
    notify("Enter an email address or a phone number.");
    $("destination").focus();
    return;
  }
  const answer = await api.requestCode(channel, destination);
  clearNotice();
  signInRequest = { request_id: answer.request_id, destination };
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
  if (!signInRequest) return; // the code form shows only once a code was requested
  try {
    await api.verifyCode(signInRequest.request_id, code);
  } catch (error) {
    if (error instanceof ApiError && error.type && CODE_GONE.has(error.type)) {
      anotherAddress();
    }
    throw error;
  }
  clearNotice();
  Realtime.forget(); // a new sign-in starts the event stream afresh
  enterApp();
}

function anotherAddress() {
  signInRequest = null;
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

/** @param {string | null} reason what to tell the user; null for signing out on purpose */
function signedOut(reason) {
  realtime?.stop();
  realtime = null;
  Realtime.forget();
  resetChats();
  resetProfiles();
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

/** @type {ReturnType<typeof setTimeout> | undefined} */
let refreshTimer;

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
      const offline = error instanceof ApiError && error.status === 0;
      if (offline) refreshTimer = setTimeout(scheduleRefresh, 10_000);
      return;
    }
    scheduleRefresh();
  }, wait);
}

async function refreshAll() {
  await Promise.all([loadProfiles(), reloadChats()]);
}

/** @param {import("./realtime.js").EventFrame} frame */
function onEvent(frame) {
  if (frame.type === "export.ready") exportReady(frame.data.id, frame.data.download_url);
  else onMessageEvent(frame);
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
      showChat(id);
  }
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
  /** @type {NodeListOf<HTMLInputElement>} */
  const channels = document.querySelectorAll("input[name=channel]");
  for (const input of channels) {
    input.addEventListener("change", () => {
      $("destination").autocomplete = input.value === "sms" ? "tel" : "email";
    });
  }
  wireChats({ settled: (id) => realtime?.settled(id) });
  wireProfiles({ changed: renderSessions });
  wireAccount({ deleted: signedOut });
  window.addEventListener("hashchange", route);
}

wire();
if (api.signedIn) enterApp();
else showSignIn();
