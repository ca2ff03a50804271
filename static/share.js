// The installable app's two small jobs (see ytproxy/pages.py): register the service
// worker (browsers offer "Install" only with one), and start the analysis of a link
// that arrived in the address (/?url=… from the bookmarklet, /?text=… from a share).

if ("serviceWorker" in navigator && window.isSecureContext) {
  navigator.serviceWorker.register("/sw.js", { scope: "/" }).catch(() => {});
}

document.addEventListener("DOMContentLoaded", () => {
  const form = document.querySelector("form[data-autostart]");
  if (!form || !form.checkValidity()) return;
  // Reloading the page should not analyse the link again.
  history.replaceState(null, "", location.pathname);
  form.requestSubmit();
});
