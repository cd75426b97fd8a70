// @ts-check
// The REST API: tokens, requests, and errors as sentences a person can read.
//
// Tokens live in sessionStorage: they survive a reload of this tab but are not shared with other
// tabs, so two tabs never present the same refresh token (the server takes a reused refresh
// token for a stolen one and signs the user out everywhere: docs/accounts.md).

// The server's schemas, generated from its OpenAPI document (scripts/web-types): a field renamed
// on the server fails the type check (docs/web-client.md).
/** @typedef {import("../types/api").components["schemas"]} Schemas */
/** @typedef {Schemas["TokensOut"]} TokensOut */
/** @typedef {Schemas["UserOut"]} UserOut */
/** @typedef {Schemas["OtpRequestIn"]} OtpRequestIn */
/** @typedef {Schemas["OtpRequestOut"]} OtpRequestOut */
/** @typedef {Schemas["Problem"]} Problem */
/**
 * The tokens this tab keeps.
 * @typedef {{ access_token: string, refresh_token: string, refresh_at: number, user: UserOut }} KeptTokens
 */
/** @typedef {"GET" | "POST" | "PUT" | "PATCH" | "DELETE"} Method */

const BASE = "/api/v1";
const TOKENS_KEY = "wingman.tokens";

/** An answer that was not a success: `message` is what to show the user. */
export class ApiError extends Error {
  /**
   * @param {number} status the HTTP status; 0 when the server could not be reached
   * @param {string} message
   * @param {{ type?: string | null, retryAfter?: number | null, body?: Problem | null }} [details]
   */
  constructor(status, message, { type = null, retryAfter = null, body = null } = {}) {
    super(message);
    this.status = status;
    this.type = type; // the problem slug, after "urn:wingman:problem:"
    this.retryAfter = retryAfter;
    this.body = body;
  }
}

/**
 * What to tell the user about a refused request (problem details, RFC 9457).
 * @param {number} status
 * @param {Problem | null} problem
 * @param {number | null} retryAfter
 * @returns {string}
 */
export function describeProblem(status, problem, retryAfter) {
  if (status === 429) {
    const wait = retryAfter ? ` Try again in ${formatSeconds(retryAfter)}.` : " Try again later.";
    return `Too many requests.${wait}`;
  }
  const errors = Array.isArray(problem?.errors) ? problem.errors : [];
  const details = errors
    .map((error) => (error.key ? `${error.key}: ${error.message}` : error.message))
    .filter(Boolean);
  const main = problem?.detail || problem?.title || `The server answered ${status}.`;
  return details.length ? `${main} (${details.join("; ")})` : main;
}

/** @param {number} seconds */
function formatSeconds(seconds) {
  if (seconds < 90) return `${seconds} second${seconds === 1 ? "" : "s"}`;
  const minutes = Math.ceil(seconds / 60);
  return `${minutes} minute${minutes === 1 ? "" : "s"}`;
}

/**
 * @param {Response} response
 * @returns {Promise<ApiError>}
 */
async function failure(response) {
  /** @type {Problem | null} */
  let problem = null;
  try {
    problem = await response.json();
  } catch {
    // Not JSON (a proxy's error page): the status says enough.
  }
  const header = response.headers.get("Retry-After");
  const retryAfter = header && /^\d+$/.test(header) ? Number(header) : null;
  const type = typeof problem?.type === "string" ? problem.type.split(":").pop() : null;
  return new ApiError(response.status, describeProblem(response.status, problem, retryAfter), {
    type,
    retryAfter,
    body: problem,
  });
}

export class Api {
  constructor() {
    /** @type {KeptTokens | null} */
    this.tokens = JSON.parse(sessionStorage.getItem(TOKENS_KEY) || "null");
    /** @type {Promise<void> | null} */
    this.refreshing = null; // one refresh at a time: two with one token look like theft
    /** @type {(tokens: KeptTokens) => void} */
    this.onTokens = () => {};
    /** @type {(reason: string) => void} */
    this.onSignedOut = () => {};
  }

  get signedIn() {
    return this.tokens !== null;
  }

  get accessToken() {
    return this.tokens?.access_token ?? null;
  }

  /** @param {TokensOut} tokens */
  keep(tokens) {
    this.tokens = {
      access_token: tokens.access_token,
      refresh_token: tokens.refresh_token,
      // When to refresh: a minute before the access token expires.
      refresh_at: Date.now() + Math.max(tokens.expires_in - 60, 10) * 1000,
      user: tokens.user,
    };
    sessionStorage.setItem(TOKENS_KEY, JSON.stringify(this.tokens));
    this.onTokens(this.tokens);
  }

  forget() {
    this.tokens = null;
    sessionStorage.removeItem(TOKENS_KEY);
  }

  /**
   * A JSON request; resolves to the parsed body (null for 204), rejects with ApiError. The
   * caller names what it expects from types/api.d.ts (`@type` on the result, `@satisfies` on
   * the body).
   * @param {Method} method
   * @param {string} path under /api/v1
   * @param {unknown} [body]
   * @param {{ auth?: boolean, retried?: boolean }} [options]
   * @returns {Promise<any>}
   */
  async request(method, path, body = undefined, { auth = true, retried = false } = {}) {
    /** @type {Record<string, string>} */
    const headers = { Accept: "application/json, application/problem+json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (auth && this.tokens) headers.Authorization = `Bearer ${this.tokens.access_token}`;
    let response;
    try {
      response = await fetch(BASE + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store",
      });
    } catch {
      throw new ApiError(0, "Cannot reach the server. Check your connection and try again.");
    }
    if (response.status === 401 && auth && this.tokens && !retried) {
      await this.refresh();
      return this.request(method, path, body, { auth, retried: true });
    }
    if (!response.ok) {
      const error = await failure(response);
      if (response.status === 401 && auth) this.signedOut(error.message);
      throw error;
    }
    if (response.status === 204) return null;
    return response.json();
  }

  /**
   * The body of an authenticated GET (a download).
   * @param {string} url
   * @returns {Promise<Blob>}
   */
  async download(url) {
    const response = await fetch(url, {
      headers: { Authorization: `Bearer ${this.accessToken}` },
      cache: "no-store",
    });
    if (!response.ok) throw await failure(response);
    return response.blob();
  }

  /**
   * @param {OtpRequestIn["channel"]} channel
   * @param {string} destination
   * @returns {Promise<OtpRequestOut>}
   */
  async requestCode(channel, destination) {
    /** @type {OtpRequestIn} */
    const body = { channel, destination };
    return this.request("POST", "/auth/otp/request", body, { auth: false });
  }

  /**
   * @param {string} requestId
   * @param {string} code
   * @returns {Promise<TokensOut>}
   */
  async verifyCode(requestId, code) {
    /** @type {Schemas["OtpVerifyIn"]} */
    const body = { request_id: requestId, code };
    /** @type {TokensOut} */
    const tokens = await this.request("POST", "/auth/otp/verify", body, { auth: false });
    this.keep(tokens);
    return tokens;
  }

  /**
   * New tokens from the refresh token; shared by everyone who asks while it runs.
   * @returns {Promise<void>}
   */
  refresh() {
    if (!this.refreshing) {
      const token = this.tokens?.refresh_token;
      this.refreshing = (async () => {
        try {
          if (!token) throw new ApiError(401, "Please sign in.");
          /** @type {Schemas["RefreshIn"]} */
          const body = { refresh_token: token };
          this.keep(await this.request("POST", "/auth/refresh", body, { auth: false }));
        } catch (error) {
          if (error instanceof ApiError && error.status === 0) throw error; // offline: keep the tokens and try again later
          this.signedOut("Your sign-in has expired. Please sign in again.");
          throw error;
        } finally {
          this.refreshing = null;
        }
      })();
    }
    return this.refreshing;
  }

  /** @param {string} reason */
  signedOut(reason) {
    this.forget();
    this.onSignedOut(reason);
  }

  async signOut() {
    const token = this.tokens?.refresh_token;
    this.forget();
    if (token) {
      /** @type {Schemas["RefreshIn"]} */
      const body = { refresh_token: token };
      await this.request("POST", "/auth/logout", body, { auth: false }).catch(() => {});
    }
  }
}

/** The page's one API client (one set of tokens, one refresh at a time). */
export const api = new Api();
