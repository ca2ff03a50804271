// ytproxy's own script, on every page (loaded after htmx). Small on purpose: the pages
// render on the server; this only adds what HTML cannot do by itself.

// htmx 2 does not swap 4xx/5xx responses by default; ours carry an error fragment
// (templates/_error.html) meant to be shown inline. They are expected answers, not
// faults, so htmx is not told to log them as errors.
htmx.config.responseHandling = [
  { code: "204", swap: false },
  { code: "[23]..", swap: true },
  { code: "[45]..", swap: true, error: false },
];

// Copy buttons: <button data-copy="/path" data-copied="Copied">. The value is made
// absolute, so a copied download link works in another app or on another device.
async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    await navigator.clipboard.writeText(text);
    return;
  }
  // Plain-http gateways (a LAN address) have no Clipboard API: the old way still works.
  const field = document.createElement("textarea");
  field.value = text;
  field.setAttribute("readonly", "");
  field.style.position = "fixed";
  field.style.opacity = "0";
  document.body.append(field);
  field.select();
  const copied = document.execCommand("copy");
  field.remove();
  if (!copied) throw new Error("copy refused");
}

document.addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-copy]");
  if (!button) return;
  const text = new URL(button.dataset.copy, document.baseURI).href;
  const label = button.getAttribute("aria-label");
  try {
    await copyText(text);
    button.dataset.state = "copied";
    button.setAttribute("aria-label", button.dataset.copied);
    button.title = button.dataset.copied;
  } catch {
    button.dataset.state = "failed";
    window.prompt(button.dataset.copyFailed, text);
  }
  setTimeout(() => {
    delete button.dataset.state;
    button.setAttribute("aria-label", label);
    button.title = label;
  }, 2000);
});

// Thumbnails and logos come from the video site, which some viewers cannot reach:
// hide a picture that does not load instead of showing a broken image.
document.addEventListener(
  "error",
  (event) => {
    if (event.target instanceof HTMLImageElement && event.target.hasAttribute("data-hide-on-error")) {
      event.target.hidden = true;
    }
  },
  true,
);

// <time data-local datetime="…Z">: shown in the viewer's own time zone and language.
function localTimes(root) {
  for (const node of root.querySelectorAll("time[data-local]")) {
    const when = new Date(node.getAttribute("datetime"));
    if (!Number.isNaN(when.getTime())) {
      node.textContent = when.toLocaleString(document.documentElement.lang, {
        dateStyle: "medium",
        timeStyle: "short",
      });
    }
  }
}
localTimes(document);
document.addEventListener("htmx:afterSettle", (event) => localTimes(event.target));
