// A form is sent once. A double click (or an impatient second one) sent it again, and a form
// whose answer rotates the session (the WebSudo prompt, a password change, "log out other
// sessions") then presented the session its first copy had just ended: the person was logged
// out. The server stays correct without this file; it only spares people that surprise.
"use strict";

// A form's answer that opens at its card (account#tokens-card) is scrolled there, and then
// Chromium skips autofocus: the field the answer is about (the new token to copy, the name
// that was refused) got no focus. Given here, as autofocus would, once the page has loaded
// (Chromium's own scroll to the card comes after DOMContentLoaded, and takes the focus back).
window.addEventListener("load", function () {
  var field = document.querySelector("[autofocus]");
  if (field && (document.activeElement === null || document.activeElement === document.body)) {
    field.focus();
    if (field.readOnly) {
      field.select(); // a value to copy: Ctrl+C takes it
    }
  }
});

document.addEventListener("submit", function (event) {
  var form = event.target;
  if (form.method.toLowerCase() !== "post") {
    return; // a GET form only opens a page
  }
  if (form.dataset.sent === "1") {
    event.preventDefault();
    return;
  }
  form.dataset.sent = "1";
  // A form whose answer never came (the network, a stopped page) may be sent again later.
  setTimeout(function () { delete form.dataset.sent; }, 10000);
});

// Back on a page whose form was sent (the browser's page cache keeps its state): sendable.
window.addEventListener("pageshow", function (event) {
  if (event.persisted) {
    document.querySelectorAll("form[data-sent]").forEach(function (form) {
      delete form.dataset.sent;
    });
  }
});
