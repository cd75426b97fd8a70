// @ts-check
// Chats: the list of sessions, the open one, its messages and the suggestions streaming in.

import { api } from "./api.js";
import { profileName } from "./profiles.js";
import {
  $,
  choiceItem,
  clearNotice,
  el,
  failed,
  fillMessage,
  handle,
  messageItem,
  notify,
  updateText,
} from "./views.js";

/** @typedef {import("./api.js").Schemas} Schemas */
/** @typedef {Schemas["SessionOut"]} SessionOut */
/** @typedef {Schemas["MessageOut"]} MessageOut */
/** @typedef {Schemas["ProcessingStatus"]} ProcessingStatus */
/** @typedef {import("./realtime.js").EventFrame} EventFrame */
/**
 * A message as shown: the server's, with the feedback given here and whether text is missing.
 * A delta may show a reply before its message is read (it has no `created_at` yet).
 * @typedef {Omit<MessageOut, "created_at" | "reply_to_id" | "idempotency_key" | "error" | "completed_at">
 *   & Partial<MessageOut> & { feedback?: string | null, gap: boolean }} ShownMessage
 */

/** @type {Set<ProcessingStatus>} */
const FINAL = new Set(["done", "failed", "cancelled"]);

/**
 * @type {{
 *   sessions: SessionOut[], sessionsCursor: string | null, sessionId: string | null,
 *   olderCursor: string | null, messages: Map<string, ShownMessage>, composeKey: string | null,
 * }}
 */
const state = {
  sessions: [],
  sessionsCursor: null,
  sessionId: null,
  olderCursor: null,
  messages: new Map(), // every message seen, by id, whichever session it belongs to
  composeKey: null, // the idempotency key of the message being sent (the same on a retry)
};

// Told when a message is known to be finished (the socket need not replay it any more).
/** @type {(messageId: string) => void} */
let settled = () => {};

function newKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

export async function loadSessions({ more = false } = {}) {
  const after = more && state.sessionsCursor;
  const cursor = after ? `&cursor=${encodeURIComponent(after)}` : "";
  /** @type {Schemas["SessionPage"]} */
  const page = await api.request("GET", `/sessions?limit=20${cursor}`);
  state.sessions = more ? [...state.sessions, ...page.items] : page.items;
  state.sessionsCursor = page.next_cursor;
  renderSessions();
}

export function renderSessions() {
  $("session-list").replaceChildren(
    ...state.sessions.map((session) =>
      choiceItem(
        session.title || "Untitled chat",
        [profileName(session.profile_id), `${session.message_count} messages`]
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
  /** @type {Schemas["SessionIn"]} */
  const body = { title, profile_id: profile };
  /** @type {SessionOut} */
  const session = await api.request("POST", "/sessions", body);
  $("session-title").value = "";
  state.sessions = [session, ...state.sessions.filter((s) => s.id !== session.id)];
  location.hash = `#/chats/${session.id}`;
}

/** @param {string} id */
export async function openSession(id, { focus = true } = {}) {
  /** @type {Schemas["SessionDetail"]} */
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
  if (!state.olderCursor) return;
  /** @type {Schemas["MessagePage"]} */
  const page = await api.request(
    "GET",
    `/sessions/${state.sessionId}/messages?limit=50` +
      `&before=${encodeURIComponent(state.olderCursor)}`,
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
/**
 * @param {MessageOut} incoming
 * @returns {ShownMessage}
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
  if (FINAL.has(message.processing_status)) settled(message.id);
  return message;
}

/**
 * When a shown message was created; one known only from its deltas is a reply being written
 * now, after everything stored.
 * @param {ShownMessage} message
 */
const createdAt = (message) => message.created_at ?? "\uffff";

function sessionMessages() {
  return [...state.messages.values()]
    .filter((m) => m.session_id === state.sessionId)
    .sort((a, b) => (createdAt(a) < createdAt(b) ? -1 : createdAt(a) > createdAt(b) ? 1 : 0));
}

/**
 * @param {ShownMessage} message
 * @returns {import("./views.js").Actions}
 */
function actionsFor(message) {
  /** @param {(message: ShownMessage) => Promise<void>} run */
  const act = (run) => handle(() => run(message));
  return {
    copy: act(copyReply),
    like: act((m) => feedback(m, "liked")),
    dislike: act((m) => feedback(m, "disliked")),
    regenerate: act(regenerate),
    cancel: act(cancel),
  };
}

/**
 * @param {string} id
 * @returns {HTMLElement | null}
 */
function itemOf(id) {
  return $("messages").querySelector(`li[data-id="${CSS.escape(id)}"]`);
}

function renderMessages() {
  $("messages").replaceChildren(...sessionMessages().map((m) => messageItem(m, actionsFor(m))));
}

/**
 * Show a message that changed: in place when it is already shown, else in order.
 * @param {ShownMessage} message
 */
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

/**
 * A message event from the socket.
 * @param {EventFrame} frame
 */
export function onMessageEvent(frame) {
  switch (frame.type) {
    case "message.created": {
      const { data } = frame;
      if (!state.messages.has(data.id)) bumpSession(data);
      show(merge(data));
      return;
    }
    case "message.delta": {
      const { data } = frame;
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
      const message = merge(frame.data);
      show(message);
      if (message.session_id === state.sessionId && message.sender === "ai") {
        // Screen readers skip the text while it streams (aria-busy): say when it is there.
        $("announce").textContent =
          message.processing_status === "done" ? "Suggestion ready." : "Suggestion stopped.";
      }
      return;
    }
    default:
  }
}

/**
 * A new message moves its session to the top of the list, one message more.
 * @param {MessageOut} message
 */
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
  /** @type {Schemas["MessageIn"]} */
  const body = { content, idempotency_key: state.composeKey };
  /** @type {Schemas["MessagePair"]} */
  const pair = await api.request("POST", `/sessions/${state.sessionId}/messages`, body);
  state.composeKey = null;
  $("compose").value = "";
  clearNotice();
  for (const message of [pair.user_message, pair.ai_message]) {
    if (!state.messages.has(message.id)) bumpSession(message);
    show(merge(message));
  }
}

/** @param {ShownMessage} message */
async function regenerate(message) {
  /** @type {MessageOut} */
  const reply = await api.request("POST", `/messages/${message.id}/regenerate`);
  if (!state.messages.has(reply.id)) bumpSession(reply);
  show(merge(reply));
}

/** @param {ShownMessage} message */
async function cancel(message) {
  show(merge(await api.request("POST", `/messages/${message.id}/cancel`)));
}

/**
 * @param {ShownMessage} message
 * @param {"liked" | "disliked"} type
 */
async function feedback(message, type) {
  /** @type {Schemas["EventIn"]} */
  const event = { type, message_id: message.id };
  await api.request("POST", `/sessions/${message.session_id}/events`, event);
  message.feedback = type;
  show(message);
  notify(type === "liked" ? "Thanks: marked as liked." : "Thanks: marked as disliked.", {
    kind: "info",
  });
}

/** @param {ShownMessage} message */
async function copyReply(message) {
  await writeClipboard(message.content);
  /** @type {Schemas["EventIn"]} */
  const event = { type: "copied", message_id: message.id };
  await api.request("POST", `/sessions/${message.session_id}/events`, event);
  notify("Copied to the clipboard.", { kind: "info" });
}

/** @param {string} text */
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

/** What is shown again from the server: the list, and the open chat (after a resync). */
export async function reloadChats() {
  await loadSessions();
  if (state.sessionId) await openSession(state.sessionId, { focus: false });
}

/**
 * Show a chat named by the address (`#/chats/<id>`), unless it is open already.
 * @param {string | undefined} id
 */
export function showChat(id) {
  if (id && id !== state.sessionId) openSession(id).catch(failed);
}

/** Forget everything (signed out). */
export function resetChats() {
  state.messages.clear();
  state.sessions = [];
  state.sessionId = null;
  $("messages").replaceChildren();
  $("compose-form").hidden = true;
  delete $("view-chats").dataset.open;
}

/** @param {{ settled: (messageId: string) => void }} hooks */
export function wireChats(hooks) {
  settled = hooks.settled;
  $("session-form").addEventListener("submit", handle(createSession));
  $("more-sessions").addEventListener("click", handle(() => loadSessions({ more: true })));
  $("older-messages").addEventListener("click", handle(olderMessages));
  $("compose-form").addEventListener("submit", handle(sendMessage));
  $("compose").addEventListener("input", () => {
    state.composeKey = null; // changed text is a new message, not a retry
  });
  $("compose").addEventListener("keydown", (/** @type {KeyboardEvent} */ event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      $("compose-form").requestSubmit();
    }
  });
}
