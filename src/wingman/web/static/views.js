// @ts-check
// Building the page's elements. Everything goes through the DOM (never markup from strings):
// the page's Content-Security-Policy enforces Trusted Types with no policy.

/**
 * The page's element with this id. Typed `any`: which element an id names (an input, a form, a
 * select) is in index.html, where the type checker cannot see it.
 * @param {string} id
 * @returns {any}
 */
export const $ = (id) => document.getElementById(id);

/** @typedef {import("./chat.js").ShownMessage} ShownMessage */
/** @typedef {() => void} Action */
/** @typedef {{ copy: Action, like: Action, dislike: Action, regenerate: Action, cancel: Action }} Actions */

/**
 * An element with attributes (`on*` functions become listeners) and children.
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {Record<string, any>} [attributes]
 * @param {...(Node | string | null | undefined)} children
 * @returns {HTMLElementTagNameMap[K]}
 */
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "text") node.textContent = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

const VIEWS = ["sign-in", "chats", "profiles", "settings", "account"];

/**
 * Show one view, hide the others, mark the current link, move focus to the view's heading.
 * @param {string} name
 */
export function showView(name, { focus = true } = {}) {
  for (const view of VIEWS) $(`view-${view}`).hidden = view !== name;
  for (const link of $("nav").querySelectorAll("a")) {
    if (link.getAttribute("href") === `#/${name}`) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (focus) $("main").focus();
}

/** @type {ReturnType<typeof setTimeout> | undefined} */
let noticeTimer;

/**
 * A message in the alert region (read out by screen readers), until dismissed or replaced.
 * @param {string} text
 * @param {{ kind?: "error" | "info" }} [options]
 */
export function notify(text, { kind = "error" } = {}) {
  clearTimeout(noticeTimer);
  $("notice-text").textContent = text;
  $("notice").dataset.kind = kind;
  $("notice").hidden = false;
  if (kind === "info") noticeTimer = setTimeout(clearNotice, 6000);
}

/**
 * Report an error readably; every handler's failures end here.
 * @param {unknown} error
 */
export function failed(error) {
  notify((error instanceof Error && error.message) || String(error));
}

/**
 * An event listener that runs an async handler and reports its failure.
 * @param {(event?: Event) => Promise<unknown>} run
 * @returns {(event?: Event) => void}
 */
export function handle(run) {
  return (event) => {
    event?.preventDefault?.();
    run(event).catch(failed);
  };
}

export function clearNotice() {
  $("notice").hidden = true;
  $("notice-text").textContent = "";
}

/** @type {Partial<Record<ShownMessage["sender"], string>>} */
const SENDERS = { user: "You", ai: "Suggestion", contact: "Them" };
/** @type {Partial<Record<ShownMessage["processing_status"], string>>} */
const STATUS_TEXT = {
  queued: "Waiting…",
  processing: "Writing…",
  failed: "Failed",
  cancelled: "Cancelled",
};

/**
 * One message as a list item. `actions` holds the handlers of an AI message's buttons:
 * copy, like, dislike, regenerate, cancel.
 * @param {ShownMessage} message
 * @param {Actions} actions
 */
export function messageItem(message, actions) {
  const item = el("li", { class: `message ${message.sender}`, "data-id": message.id });
  fillMessage(item, message, actions);
  return item;
}

/**
 * @param {HTMLElement} item
 * @param {ShownMessage} message
 * @param {Actions} actions
 */
export function fillMessage(item, message, actions) {
  const streaming = ["queued", "processing"].includes(message.processing_status);
  item.dataset.status = message.processing_status;
  item.setAttribute("aria-busy", streaming ? "true" : "false");
  const status = STATUS_TEXT[message.processing_status];
  const body = [
    el("span", { class: "sender", text: SENDERS[message.sender] ?? message.sender }),
    el("p", { class: "content", text: message.content + (message.gap ? " …" : "") }),
  ];
  if (status && !(streaming && message.content)) {
    body.push(el("p", { class: "status", text: status }));
  }
  if (message.error) body.push(el("p", { class: "status", text: message.error }));
  if (message.sender === "ai") {
    /** @type {HTMLElement[]} */
    const buttons = [];
    if (streaming) {
      buttons.push(el("button", { type: "button", onclick: actions.cancel, text: "Stop" }));
    } else {
      if (message.processing_status === "done") {
        buttons.push(
          el("button", { type: "button", onclick: actions.copy, text: "Copy" }),
          el("button", {
            type: "button",
            onclick: actions.like,
            "aria-pressed": message.feedback === "liked" ? "true" : "false",
            text: "Like",
          }),
          el("button", {
            type: "button",
            onclick: actions.dislike,
            "aria-pressed": message.feedback === "disliked" ? "true" : "false",
            text: "Dislike",
          }),
        );
      }
      buttons.push(
        el("button", { type: "button", onclick: actions.regenerate, text: "Regenerate" }),
      );
    }
    const group = { class: "actions", role: "group", "aria-label": "Reply actions" };
    body.push(el("div", group, ...buttons));
  }
  item.replaceChildren(...body);
}

/**
 * Update only the text of a streaming message (keeps focus on its buttons).
 * @param {HTMLElement} item
 * @param {ShownMessage} message
 */
export function updateText(item, message) {
  const content = item.querySelector(".content");
  if (content) content.textContent = message.content + (message.gap ? " …" : "");
  const status = item.querySelector(".status");
  if (status && message.content && !message.error) status.remove();
}

/**
 * A list entry that opens something: a button inside an li, marked when current.
 * @param {string} label
 * @param {string} detail
 * @param {boolean} current
 * @param {() => void} onclick
 */
export function choiceItem(label, detail, current, onclick) {
  return el(
    "li",
    {},
    el(
      "button",
      { type: "button", class: "choice", "aria-current": current ? "true" : null, onclick },
      el("span", { class: "choice-label", text: label }),
      detail ? el("span", { class: "muted", text: detail }) : null,
    ),
  );
}
