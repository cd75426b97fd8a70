// Spends the token in this page's fragment with one POST, only when the person presses Sign in:
// loading the page (a browser, a link preview) never does. The fragment is dropped from the
// address bar at once, so it stays out of the history and of anything the page is shared to.
"use strict";
(function () {
  const token = decodeURIComponent(window.location.hash.replace(/^#/, ""));
  history.replaceState(null, "", window.location.pathname);
  const button = document.getElementById("sign-in");
  const status = document.getElementById("status");
  if (!token) {
    status.textContent = "This address carries no sign-in token: open the whole link you were given.";
    return;
  }
  button.disabled = false;
  button.addEventListener("click", async function () {
    button.disabled = true;
    status.textContent = "Signing in…";
    let response;
    try {
      response = await fetch("/api/v1/auth/login-link", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ token: token }),
      });
    } catch (error) {
      status.textContent = "The server could not be reached; try again.";
      button.disabled = false;
      return;
    }
    const body = await response.json();
    if (!response.ok) {
      status.textContent = body.detail || "This link cannot be used.";
      return;
    }
    status.textContent = "Done: this link is now used up.";
    document.getElementById("who").textContent = body.user.email || body.user.phone;
    document.getElementById("refresh-token").value = body.refresh_token;
    document.getElementById("access-token").value = body.access_token;
    document.getElementById("result").hidden = false;
  });
})();
