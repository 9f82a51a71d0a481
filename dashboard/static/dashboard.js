// vinr Dashboard: refreshes the parts of a page marked data-poll without a reload.
// No framework, no build step; the server renders every fragment (HTML and SVG).
(function () {
  "use strict";
  var INTERVAL_MS = 2000;

  function poll(region) {
    var url = region.getAttribute("data-poll");
    var status = document.getElementById(region.getAttribute("data-status") || "");
    var last = region.innerHTML;
    var busy = false;
    var timer = null;

    function tick() {
      if (busy || document.hidden) return;
      busy = true;
      fetch(url, { credentials: "same-origin", cache: "no-store", headers: { "Accept": "text/html" } })
        .then(function (response) {
          if (response.status === 401) {
            window.clearInterval(timer);
            window.location.assign("/dashboard/login");
            return null;
          }
          return response.ok ? response.text() : null;
        })
        .then(function (html) {
          // Keep keyboard focus where it is: a region is replaced only while focus is outside it.
          if (html === null || html === last || region.contains(document.activeElement)) return;
          region.innerHTML = html;
          last = html;
          region.setAttribute("data-updated", String(Date.now()));
          if (status) status.textContent = "Usage and invoices updated.";
        })
        .catch(function () { /* offline for a moment: the next tick tries again */ })
        .then(function () { busy = false; });
    }

    timer = window.setInterval(tick, INTERVAL_MS);
    document.addEventListener("visibilitychange", tick);
  }

  function selectOnFocus(input) {
    input.addEventListener("focus", function () { input.select(); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    Array.prototype.forEach.call(document.querySelectorAll("[data-poll]"), poll);
    Array.prototype.forEach.call(document.querySelectorAll("[data-secret]"), selectOnFocus);
  });
})();
