// Notices by web push on the residents' page: the "알림 받기" button, its permission, the
// browser's subscription with the gateway's VAPID key, and telling the gateway about it.
"use strict";

const PUSH_VILLAGE = "maeul-push-village";

function pushSupported() {
  return "serviceWorker" in navigator && "PushManager" in window && "Notification" in window;
}

// The VAPID key as pushManager.subscribe() wants it: bytes, from base64url.
function keyBytes(base64url) {
  const base64 = (base64url + "===".slice((base64url.length + 3) % 4)).replace(/-/g, "+").replace(/_/g, "/");
  return Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
}

// The resident's language, when the browser says one the gateway takes ("ko", "vi", "en").
function pushLanguage() {
  const primary = String(navigator.language || "").split("-")[0].toLowerCase();
  return /^[a-z]{2,3}$/.test(primary) ? primary : null;
}

async function pushCall(method, path, body) {
  const response = await reach(`${API}/${path}`, {
    method,
    headers: { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const answer = response.status === 204 ? null : await readBody(response);
  if (!response.ok) throw toError(response, answer);
  return answer;
}

// Shows the button in `box` when this browser can take push and the gateway sends it.
async function offerPush(box, villageId) {
  if (!pushSupported() || !box) return;
  let publicKey;
  try {
    publicKey = (await pushCall("GET", "push/vapid-public-key")).public_key;
  } catch (e) {
    return; // this gateway sends no push: no button
  }
  box.innerHTML = `
    <button class="push" type="button" id="push-toggle" aria-pressed="false">알림 받기</button>
    <p class="push-status" id="push-status" role="status"></p>`;
  box.hidden = false;
  const button = document.getElementById("push-toggle");
  const status = document.getElementById("push-status");
  const show = (on, text) => {
    button.setAttribute("aria-pressed", on ? "true" : "false");
    button.textContent = on ? "알림 끄기" : "알림 받기";
    status.textContent = text || "";
  };
  const registration = await navigator.serviceWorker.register("/sw.js");
  const current = await registration.pushManager.getSubscription();
  const here = current && localStorage.getItem(PUSH_VILLAGE) === String(villageId);
  show(here, here ? "이 마을의 새 방송을 알림으로 받고 있습니다." : "");

  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      if (button.getAttribute("aria-pressed") === "true") {
        const subscription = await registration.pushManager.getSubscription();
        if (subscription) {
          await pushCall("DELETE", "push/subscriptions", { endpoint: subscription.endpoint });
          await subscription.unsubscribe();
        }
        localStorage.removeItem(PUSH_VILLAGE);
        show(false, "알림을 껐습니다.");
        return;
      }
      const permission = await Notification.requestPermission();
      if (permission !== "granted") {
        show(false, "알림이 허용되지 않았습니다. 브라우저 설정에서 이 사이트의 알림을 허용해 주세요.");
        return;
      }
      const ready = await navigator.serviceWorker.ready;
      const subscription = await ready.pushManager.subscribe({
        userVisibleOnly: true,
        applicationServerKey: keyBytes(publicKey),
      });
      await pushCall("POST", "push/subscriptions", {
        village_id: villageId,
        language: pushLanguage(),
        subscription: subscription.toJSON(),
      });
      localStorage.setItem(PUSH_VILLAGE, String(villageId));
      show(true, "알림을 받습니다. 새 방송이 나가면 이 휴대전화로 알려 드립니다.");
    } catch (e) {
      show(button.getAttribute("aria-pressed") === "true",
        e instanceof ApiError || e instanceof TypeError ? koreanError(e) : "이 브라우저에서는 알림을 켤 수 없습니다.");
    } finally {
      button.disabled = false;
    }
  });
}
