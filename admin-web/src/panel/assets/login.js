// Login page: posts the credentials to /api/v1/session; the server sets the session
// cookie (HttpOnly) and the panel fetches its CSRF token itself, so nothing is stored here.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("login-form");
  const error = document.getElementById("login-error");
  const button = document.getElementById("login-button");
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    error.hidden = true;
    button.disabled = true;
    try {
      const resp = await fetch("/api/v1/session", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        credentials: "same-origin",
        body: JSON.stringify({
          username: document.getElementById("username").value,
          password: document.getElementById("password").value,
        }),
      });
      if (resp.ok) {
        window.location.assign("/");
        return;
      }
      let message = "Sign-in failed (" + resp.status + ").";
      try {
        const body = await resp.json();
        if (body && body.error && body.error.message) message = body.error.message;
      } catch (_) { /* not JSON: keep the status text */ }
      if (resp.status === 429) message = "Too many attempts. Wait a minute and try again.";
      error.textContent = message;
      error.hidden = false;
      document.getElementById("password").select();
    } catch (e) {
      error.textContent = "Cannot reach the node: " + e.message;
      error.hidden = false;
    } finally {
      button.disabled = false;
    }
  });
});
