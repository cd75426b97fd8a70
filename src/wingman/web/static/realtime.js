// @ts-check
// The WebSocket (docs/realtime.md): one socket, resumed from the last event after any drop.
//
// Where to resume from is kept in sessionStorage, so a reload resumes too. It is the last event
// id processed, or earlier while a reply is streaming: the id just before that reply's first
// event, so that a reloaded page (which has none of the reply's text yet) gets all of it again.
// Events are applied idempotently (deltas carry their offset), so seeing one twice is harmless.

// The frames, generated from the server's AsyncAPI document (scripts/web-types): a frame type or
// field renamed on the server fails the type check (docs/web-client.md).
/** @typedef {import("../types/realtime").components["schemas"]} Frames */
/** @typedef {Frames["ServerFrame"]} ServerFrame */
/** @typedef {Frames["ClientFrame"]} ClientFrame */
/** An event: a frame the server numbered (`event_id`), kept for `resume`. */
/** @typedef {Extract<ServerFrame, { event_id: number }>} EventFrame */
/**
 * What the page does with the socket's news.
 * @typedef {object} Handlers
 * @property {() => string | null} token the access token to connect with
 * @property {(frame: EventFrame) => void} event
 * @property {() => void} resync the missed events are gone: refetch over REST
 * @property {(text: string, live: boolean) => void} status
 * @property {() => Promise<string | null>} expired a fresh access token
 * @property {(code: number, text: string) => void} final the socket stopped for good
 */

const STATE_KEY = "wingman.realtime";
const MAX_BACKOFF_SECONDS = 30;

// Close codes after which reconnecting cannot help.
const FINAL = new Map([
  [4000, "The server refused a frame from this page. Reload the page."],
  [1009, "The server refused a frame from this page. Reload the page."],
  [4003, "This account is disabled or deleted."],
  [4009, "Live updates moved to a newer window or device. Reload to take them back."],
]);

export class Realtime {
  /** @param {Handlers} handlers */
  constructor(handlers) {
    this.handlers = handlers;
    /** @type {{ lastEventId?: number | null, streams?: Record<string, number> }} */
    const saved = JSON.parse(sessionStorage.getItem(STATE_KEY) || "{}");
    /** @type {number | null} */
    this.lastEventId = saved.lastEventId ?? null;
    /** @type {Record<string, number>} message id → event id just before its first event */
    this.streams = saved.streams ?? {};
    /** @type {WebSocket | null} */
    this.socket = null;
    this.attempt = 0;
    this.heartbeat = 25;
    this.lastHeard = 0;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.timer = undefined;
    /** @type {ReturnType<typeof setInterval> | undefined} */
    this.watchdog = undefined;
    this.running = false;
    this.caughtUp = false; // true once a resume succeeded in this page's life
    this.online = () => this.backOnline();
    this.offline = () => this.drop("Offline: waiting for the network…");
  }

  save() {
    sessionStorage.setItem(
      STATE_KEY,
      JSON.stringify({ lastEventId: this.lastEventId, streams: this.streams }),
    );
  }

  static forget() {
    sessionStorage.removeItem(STATE_KEY);
  }

  /**
   * Where the stream should start again: see the module comment. Only a freshly loaded page
   * needs the streaming replies from their start; later reconnects have their text already.
   */
  resumeFrom() {
    if (this.lastEventId === null) return null;
    if (this.caughtUp) return this.lastEventId;
    return Math.min(this.lastEventId, ...Object.values(this.streams));
  }

  start() {
    if (this.running) return;
    this.running = true;
    window.addEventListener("online", this.online);
    window.addEventListener("offline", this.offline);
    this.watchdog = setInterval(() => this.checkAlive(), 5000);
    this.connect();
  }

  stop() {
    this.running = false;
    window.removeEventListener("online", this.online);
    window.removeEventListener("offline", this.offline);
    clearInterval(this.watchdog);
    clearTimeout(this.timer);
    if (this.socket) this.socket.close(1000);
    this.socket = null;
  }

  connect() {
    clearTimeout(this.timer);
    if (!this.running || this.socket) return;
    const token = this.handlers.token();
    if (!token) return;
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/api/v1/ws`, ["bearer", token]);
    this.socket = socket;
    this.lastHeard = Date.now();
    this.handlers.status("Connecting…", false);
    socket.addEventListener("message", (message) => this.receive(socket, message.data));
    socket.addEventListener("close", (closed) => this.closed(socket, closed.code));
  }

  /** @param {ClientFrame} frame */
  send(frame) {
    if (this.socket?.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(frame));
  }

  /**
   * Hand a fresh access token to the open socket, so it outlives the old one.
   * @param {string | null} token
   */
  renewToken(token) {
    if (!token) return;
    this.send({ type: "auth", token });
  }

  /**
   * @param {WebSocket} socket
   * @param {string} text
   */
  receive(socket, text) {
    if (socket !== this.socket) return;
    this.lastHeard = Date.now();
    /** @type {ServerFrame} */
    const frame = JSON.parse(text);
    switch (frame.type) {
      case "hello":
        this.heartbeat = frame.data.heartbeat_seconds;
        this.send({ type: "resume", last_event_id: this.resumeFrom() });
        return;
      case "resumed":
        this.attempt = 0;
        this.caughtUp = true;
        this.note(frame.data.event_id);
        this.handlers.status("Live", true);
        return;
      case "resync_required":
        // The missed events are gone: what is shown is refetched; streams cannot be replayed.
        this.attempt = 0;
        this.caughtUp = true;
        this.streams = {};
        this.lastEventId = frame.data.event_id;
        this.save();
        this.handlers.status("Live", true);
        this.handlers.resync();
        return;
      case "ping":
        this.send({ type: "pong" });
        return;
      case "account_updated":
        this.handlers.expired().then((token) => this.renewToken(token), () => {});
        return;
      case "pong":
      case "authenticated":
        return;
      default:
        // Event frames, and frame types newer than this page (they are ignored).
        if (typeof frame.event_id === "number") this.event(frame);
    }
  }

  /** @param {EventFrame} frame */
  event(frame) {
    const id = frame.type === "message.delta" ? frame.data.message_id : frame.data.id;
    if (frame.type === "message.created" && frame.data.sender === "ai" && !(id in this.streams)) {
      this.streams[id] = frame.event_id - 1;
    } else if (frame.type === "message.delta" && !(id in this.streams) && frame.data.offset === 0) {
      this.streams[id] = frame.event_id - 1;
    } else if (frame.type === "message.completed" || frame.type === "message.failed") {
      delete this.streams[id];
    }
    this.handlers.event(frame);
    this.note(frame.event_id);
  }

  /** @param {number} eventId */
  note(eventId) {
    if (this.lastEventId === null || eventId > this.lastEventId) this.lastEventId = eventId;
    this.save();
  }

  /**
   * A message known to be finished (read over REST) needs no replay any more.
   * @param {string} messageId
   */
  settled(messageId) {
    if (messageId in this.streams) {
      delete this.streams[messageId];
      this.save();
    }
  }

  /**
   * @param {WebSocket} socket
   * @param {number} code
   */
  closed(socket, code) {
    if (socket !== this.socket) return;
    this.socket = null;
    if (!this.running) return;
    if (FINAL.has(code)) {
      this.running = false;
      this.handlers.status("Not connected", false);
      this.handlers.final(code, FINAL.get(code) ?? "");
      return;
    }
    if (code === 4001 || code === 4004) {
      // The token expired or was refused: a fresh one, then the same resume.
      this.handlers.status("Reconnecting…", false);
      this.handlers.expired().then(
        () => this.reconnectSoon(0),
        () => this.stop(),
      );
      return;
    }
    this.reconnectSoon(code === 1001 && this.attempt === 0 ? 0 : null);
  }

  /**
   * Reconnect after `seconds`, or after the next backoff step (0.5 s doubling, jittered).
   * @param {number | null} seconds
   */
  reconnectSoon(seconds) {
    if (!this.running || this.socket) return;
    clearTimeout(this.timer);
    const backoff = Math.min(MAX_BACKOFF_SECONDS, 0.5 * 2 ** this.attempt);
    const delay = seconds ?? backoff * (0.5 + Math.random() / 2);
    this.attempt += 1;
    this.handlers.status(navigator.onLine ? "Reconnecting…" : "Offline", false);
    this.timer = setTimeout(() => this.connect(), delay * 1000);
  }

  /** The network is back: connect now, not after the backoff earned while it was away. */
  backOnline() {
    const pending = this.socket;
    if (pending && pending.readyState !== WebSocket.OPEN) {
      this.socket = null; // an attempt made while offline: it will fail, do not wait for it
      pending.close();
    }
    this.attempt = 0;
    this.reconnectSoon(0);
  }

  /**
   * Give up on the current socket (the network went away) and reconnect when it can.
   * @param {string} text
   */
  drop(text) {
    const socket = this.socket;
    if (!socket) return;
    this.socket = null;
    socket.close(1000);
    this.handlers.status(text, false);
    this.reconnectSoon(null);
  }

  checkAlive() {
    // A server that said nothing for two heartbeats is gone (docs/realtime.md).
    if (this.socket && Date.now() - this.lastHeard > 2 * this.heartbeat * 1000) {
      this.drop("Reconnecting…");
    }
  }
}
