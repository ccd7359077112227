// Picket portal: the little behaviour htmx does not give. No eval, no inline handlers (the
// Content-Security-Policy forbids both).
(function () {
  "use strict";
  // Live regions ([data-live]) poll a fragment every few seconds. Skip a refresh while the
  // user is in the middle of something inside the region: an open `...` menu, or typing in a
  // field. Focus on a link survives a refresh: htmx refocuses the element with the same id.
  document.addEventListener("htmx:beforeRequest", function (e) {
    var elt = e.detail && e.detail.elt;
    if (!elt || !elt.hasAttribute || !elt.hasAttribute("data-live")) return;
    var active = document.activeElement;
    var typing = active && elt.contains(active) && active.matches("input, select, textarea");
    if (elt.querySelector("details[open]") || typing || document.hidden) e.preventDefault();
  });
  // Menus: Escape closes the open one and returns focus to its button; a click elsewhere
  // closes it; opening one closes the others.
  document.addEventListener("keydown", function (e) {
    if (e.key !== "Escape") return;
    var open = document.activeElement && document.activeElement.closest("details.menu[open]");
    if (open) {
      open.open = false;
      open.querySelector("summary").focus();
    }
  });
  document.addEventListener("click", function (e) {
    document.querySelectorAll("details.menu[open]").forEach(function (d) {
      if (!d.contains(e.target)) d.open = false;
    });
  });
  document.addEventListener("toggle", function (e) {
    var d = e.target;
    if (!d.matches || !d.matches("details.menu") || !d.open) return;
    document.querySelectorAll("details.menu[open]").forEach(function (o) {
      if (o !== d) o.open = false;
    });
  }, true);
})();
