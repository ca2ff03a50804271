// The in-page player of the channels page: hls.js (vendored, light build) playing a
// channel's /live/{id}.m3u8 through the gateway. Safari plays HLS natively.
(() => {
  const section = document.getElementById("player");
  if (!section) return;
  const video = section.querySelector("video");
  const title = section.querySelector("[data-player-name]");
  const problem = section.querySelector("[data-player-error]");
  let hls = null;
  let playing = null;

  function showError(kind) {
    problem.textContent = problem.dataset[kind === "network" ? "messageNetwork" : "messageUnsupported"];
    problem.hidden = false;
  }

  function stop() {
    if (hls) {
      hls.destroy();
      hls = null;
    }
    video.pause();
    video.removeAttribute("src");
    video.load();
    if (playing) playing.removeAttribute("aria-pressed");
    playing = null;
  }

  function play(button) {
    stop();
    const url = button.dataset.play;
    playing = button;
    button.setAttribute("aria-pressed", "true");
    title.textContent = button.dataset.name;
    problem.hidden = true;
    section.hidden = false;
    section.dataset.channel = url;
    if (window.Hls && Hls.isSupported()) {
      hls = new Hls({ liveDurationInfinity: true });
      hls.on(Hls.Events.ERROR, (_event, data) => {
        if (!data.fatal) return;
        console.warn("player:", data.type, data.details, data.reason || (data.error && data.error.message) || "");
        if (data.type === Hls.ErrorTypes.MEDIA_ERROR) {
          hls.recoverMediaError();
        } else {
          showError("network");
          stop();
        }
      });
      // The click's user activation lasts a few seconds: enough to start with sound.
      hls.on(Hls.Events.MANIFEST_PARSED, () => video.play().catch(() => {}));
      hls.loadSource(url);
      hls.attachMedia(video);
    } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
      video.src = url;
      video.play().catch(() => {});
    } else {
      showError("unsupported");
      return;
    }
    section.scrollIntoView({ behavior: "smooth", block: "start" });
  }

  // A failed refresh of the channel list keeps the list it has (no error in its place).
  document.addEventListener("htmx:beforeSwap", (event) => {
    if (event.detail.target.id === "channel-list" && event.detail.xhr.status !== 200) {
      event.detail.shouldSwap = false;
    }
  });

  // The channel list refreshes itself (htmx): mark the playing channel's button again.
  document.addEventListener("htmx:afterSwap", () => {
    if (!playing) return;
    for (const button of document.querySelectorAll("button[data-play]")) {
      if (button.dataset.play === playing.dataset.play) {
        playing = button;
        button.setAttribute("aria-pressed", "true");
      }
    }
  });

  document.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-play]");
    if (button) play(button);
    if (event.target.closest("[data-player-close]")) {
      stop();
      section.hidden = true;
    }
  });
})();
