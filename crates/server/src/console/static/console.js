// Small helpers for the Rampart console; every page works without them.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  // Ask before forms that change something for other people (notices, lifts).
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }
  // The overview refreshes itself while it is open and nothing is being typed.
  const live = document.querySelector("[data-refresh]");
  if (live) {
    const seconds = Number(live.dataset.refresh) || 15;
    setInterval(() => {
      if (document.visibilityState === "visible" && !document.activeElement?.matches("input, textarea")) {
        window.location.reload();
      }
    }, seconds * 1000);
  }
});
