// ytproxy's own script (loaded after htmx). htmx 2 does not swap 4xx/5xx responses by
// default; ours carry an error fragment (templates/_error.html) meant to be shown.
htmx.config.responseHandling = [
  { code: "204", swap: false },
  { code: "[23]..", swap: true },
  { code: "[45]..", swap: true, error: true },
];
