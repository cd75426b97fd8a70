// @ts-check
// Target profiles: who the user is talking to.

import { api } from "./api.js";
import { $, choiceItem, el, handle, notify } from "./views.js";

/** @typedef {import("./api.js").Schemas} Schemas */

/**
 * @type {{ profiles: Schemas["ProfileOut"][], profilesCursor: string | null,
 *   editingProfile: string | null }}
 */
const state = {
  profiles: [],
  profilesCursor: null,
  editingProfile: null,
};

// Told when the list changed (the chat list shows profile names).
/** @type {() => void} */
let changed = () => {};

/** @param {string | null} id */
export function profileName(id) {
  return state.profiles.find((profile) => profile.id === id)?.name ?? null;
}

export async function loadProfiles({ more = false } = {}) {
  const after = more && state.profilesCursor;
  const cursor = after ? `&cursor=${encodeURIComponent(after)}` : "";
  /** @type {Schemas["ProfilePage"]} */
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
  changed();
}

/** @param {Schemas["ProfileOut"] | null} profile */
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
  /** @satisfies {Schemas["ProfileIn"] & Schemas["ProfilePatch"]} */
  const body = {
    name,
    notes: $("profile-notes").value.trim() || null,
    interests: $("profile-interests")
      .value.split(",")
      .map((/** @type {string} */ s) => s.trim())
      .filter(Boolean),
  };
  /** @type {Schemas["ProfileOut"]} */
  const saved = state.editingProfile
    ? await api.request("PATCH", `/profiles/${state.editingProfile}`, body)
    : await api.request("POST", "/profiles", body);
  state.editingProfile = saved.id;
  await loadProfiles();
  $("profile-form-title").textContent = `Edit ${saved.name}`;
  notify(`Saved ${saved.name}.`, { kind: "info" });
}

export function resetProfiles() {
  state.profiles = [];
  state.editingProfile = null;
}

/** @param {{ changed: () => void }} hooks */
export function wireProfiles(hooks) {
  changed = hooks.changed;
  $("profile-form").addEventListener("submit", handle(saveProfile));
  $("profile-new").addEventListener("click", () => editProfile(null));
  $("more-profiles").addEventListener("click", handle(() => loadProfiles({ more: true })));
}
