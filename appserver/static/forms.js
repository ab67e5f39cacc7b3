// A form is sent once. A double click (or an impatient second one) sent it again, and a form
// whose answer rotates the session (the WebSudo prompt, a password change, "log out other
// sessions") then presented the session its first copy had just ended: the person was logged
// out. The server stays correct without this file; it only spares people that surprise.
"use strict";

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
