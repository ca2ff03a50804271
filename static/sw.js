// ytproxy's service worker: it exists so that browsers offer to install the gateway
// (and list it in the share sheet). It caches nothing: every request, the API's and
// the media's above all, goes to the network as if there were no worker.

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));
// A fetch handler that does not call respondWith: the browser fetches as usual.
self.addEventListener("fetch", () => {});
