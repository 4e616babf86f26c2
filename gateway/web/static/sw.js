// The pages' service worker: the phone page's shell (and the residents' page's) opens without a
// network, the API is never cached; and web push: a notice arrives as a notification whose tap
// opens the village's page at that notice.
"use strict";

const CACHE = "maeul-phone-v4";
const SHELL = [
  "/phone",
  "/static/css/base.css",
  "/static/css/phone.css",
  "/static/js/maeul.js",
  "/static/js/phone.js",
  "/static/js/phone-live.js",
  "/static/js/talk-core.js",
  "/static/icons/icon.svg",
  "/static/icons/icon-192.png",
  "/manifest.webmanifest",
  "/notices",
  "/static/css/notices.css",
  "/static/js/notices.js",
  "/static/js/push.js",
];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches.keys()
      .then((keys) => Promise.all(keys.filter((k) => k !== CACHE).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

// Network first, so a new release shows at once; the cache only when the network is away.
self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== location.origin) return;
  if (!SHELL.includes(url.pathname)) return;
  event.respondWith(
    fetch(event.request)
      .then((response) => {
        // Only a good answer replaces the kept shell: an error page must not become the app.
        if (response.ok) {
          const copy = response.clone();
          caches.open(CACHE).then((cache) => cache.put(event.request, copy));
        }
        return response;
      })
      .catch(() => caches.match(event.request)),
  );
});

// Only a page of this site opens from a notification: the link's path and fragment on this
// origin (the gateway may know itself by another name), the residents' pages only.
function noticeUrl(raw) {
  try {
    const url = new URL(raw, self.location.origin);
    if (url.pathname.startsWith("/notices")) {
      return new URL(url.pathname + url.hash, self.location.origin).href;
    }
  } catch (e) {
    // an unreadable link: the list of villages instead
  }
  return new URL("/notices", self.location.origin).href;
}

self.addEventListener("push", (event) => {
  let notice = {};
  try {
    notice = event.data ? event.data.json() : {};
  } catch (e) {
    notice = {};
  }
  const disaster = notice.category === "disaster";
  const title = notice.title || (disaster ? "재난 안내" : "마을 방송 안내");
  event.waitUntil(self.registration.showNotification(title, {
    body: notice.body || "새 안내가 있습니다. 눌러서 들어 보세요.",
    icon: "/static/icons/icon-192.png",
    badge: "/static/icons/icon-192.png",
    lang: "ko",
    tag: notice.broadcast_id ? `notice-${notice.broadcast_id}` : undefined,
    requireInteraction: disaster,
    data: { url: noticeUrl(notice.url) },
  }));
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const url = (event.notification.data && event.notification.data.url) || noticeUrl("/notices");
  event.waitUntil(
    self.clients.matchAll({ type: "window", includeUncontrolled: true }).then((windows) => {
      const open = windows.find((w) => w.url === url);
      return open ? open.focus() : self.clients.openWindow(url);
    }),
  );
});
