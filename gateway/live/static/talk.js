// The talk page, for office PCs: log in, pick a district or a village, open the microphone, hold
// to talk. The microphone and the socket are talk-core.js's (the phone page talks through it too).
"use strict";

const API = "/api/v1";
const AUTH_KEY = "maeul.talk.auth";
const $ = (id) => document.getElementById(id);

const ui = {
  login: $("login"), talk: $("talk"), who: $("who"), logout: $("logout"),
  category: $("category"), district: $("district"), village: $("village"), setup: $("setup"),
  mic: $("mic"), meter: $("meter"), level: $("level"), start: $("start"), ptt: $("ptt"), latch: $("latch"),
  stop: $("stop"), state: $("state"), playing: $("playing"), speakers: $("speakers"),
  played: $("played"), sent: $("sent"), message: $("message"),
};

let auth = null;
try { auth = JSON.parse(sessionStorage.getItem(AUTH_KEY) || "null"); } catch { auth = null; }


function say(text, error = false) {
  ui.message.textContent = text;
  ui.message.classList.toggle("error", error);
}

async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  if (auth) headers.set("Authorization", `Bearer ${auth.access}`);
  if (options.json !== undefined) headers.set("Content-Type", "application/json");
  const response = await fetch(`${API}${path}`, {
    method: options.method || "GET",
    headers,
    body: options.json !== undefined ? JSON.stringify(options.json) : options.body,
  });
  const text = await response.text();
  const body = text ? JSON.parse(text) : {};
  if (response.status === 401 && auth) {
    logout();
    throw new Error("다시 로그인해 주세요.");
  }
  if (!response.ok) throw new Error(liveDetail(body.detail, "요청을 처리하지 못했습니다."));
  return body;
}

function showLogin() {
  ui.login.hidden = false;
  ui.talk.hidden = true;
}

function logout() {
  auth = null;
  sessionStorage.removeItem(AUTH_KEY);
  showLogin();
}

ui.login.addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(ui.login);
  const body = new URLSearchParams({
    username: String(form.get("username")), password: String(form.get("password")),
    grant_type: "password",
  });
  try {
    const response = await fetch(`${API}/auth/token`, { method: "POST", body });
    const answer = await response.json();
    if (!response.ok) throw new Error(liveDetail(answer.detail, "로그인하지 못했습니다."));
    auth = { access: answer.access_token, username: answer.username || String(form.get("username")) };
    sessionStorage.setItem(AUTH_KEY, JSON.stringify(auth));
    await showTalk();
  } catch (error) {
    say(error.message, true);
  }
});

ui.logout.addEventListener("click", logout);

async function showTalk() {
  ui.login.hidden = true;
  ui.talk.hidden = false;
  ui.who.textContent = `${auth.username} 님`;
  say("");
  const districts = (await api("/districts?limit=1000")).items;
  ui.district.replaceChildren(...districts.map((d) => new Option(d.name, d.id)));
  // From the phone page: /talk?village=ID talks to that village.
  const wanted = Number(new URLSearchParams(location.search).get("village"));
  let village = null;
  if (wanted) {
    village = await api(`/villages/${wanted}`).catch(() => null);
    if (village) ui.district.value = String(village.district_id);
  }
  await loadVillages();
  if (village) ui.village.value = String(village.id);
}

async function loadVillages() {
  const villages = (await api(`/villages?district_id=${ui.district.value}&limit=1000`)).items;
  ui.village.replaceChildren(
    new Option("읍·면·동 전체", ""), ...villages.map((v) => new Option(v.name, v.id)),
  );
}

ui.district.addEventListener("change", () => loadVillages().catch((e) => say(e.message, true)));

// -- the microphone and the session (talk-core.js) ------------------------------------------

const live = new LiveTalk({
  ticket: (body) => api("/live/tickets", { method: "POST", json: body }),
  onLevel: (level) => {
    ui.level.style.width = `${level}%`;
    ui.meter.setAttribute("aria-valuenow", String(Math.round(level)));
  },
  onMessage: (message) => onMessage(message),
  onClose: () => finish(),
});

ui.mic.addEventListener("click", async () => {
  if (live.open) return;
  try {
    await live.openMicrophone();
    ui.mic.textContent = "마이크 켜짐";
    ui.mic.disabled = true;
    ui.start.disabled = false;
    say("마이크가 켜졌습니다. 방송을 시작하세요.");
  } catch (error) {
    say(microphoneProblem(error), true);
  }
});

ui.start.addEventListener("click", async () => {
  const body = { category: ui.category.value };
  if (ui.village.value) body.village_ids = [Number(ui.village.value)];
  else body.district_ids = [Number(ui.district.value)];
  ui.start.disabled = true;
  try {
    await live.start(body);
    ui.setup.disabled = true;
    ui.state.textContent = "연결 중";
  } catch (error) {
    ui.start.disabled = false;
    say(error.message, true);
  }
});

function onMessage(message) {
  switch (message.type) {
    case "started":
      document.querySelector("main").dataset.broadcast = message.broadcast_id;
      ui.speakers.textContent = message.speakers;
      ui.played.textContent = "0";
      ui.state.textContent = "시작 알림음 재생 중";
      ui.stop.disabled = false;
      break;
    case "queued":
      ui.state.textContent = "앞선 방송이 끝나기를 기다리는 중";
      break;
    case "ready":
      ui.ptt.disabled = false;
      ui.state.textContent = "말씀하세요";
      say("버튼을 누르고 있는 동안 방송됩니다.");
      break;
    case "status":
      ui.speakers.textContent = message.speakers;
      ui.playing.textContent = message.playing;
      ui.played.textContent = message.played;
      ui.sent.textContent = (message.frames * 0.02).toFixed(1);
      break;
    case "warning":
      say(liveDetail(message.detail, "보낸 오디오 일부를 버렸습니다."), true);
      break;
    case "error":
      say(liveDetail(message.detail, "방송이 중단되었습니다."), true);
      break;
    case "ended":
      ui.sent.textContent = (message.frames * 0.02).toFixed(1);
      ui.state.textContent = "방송이 끝났습니다";
      // Ended from outside (the account was suspended): say why, as an error.
      if (message.detail) say(liveDetail(message.detail, "방송이 중단되었습니다."), true);
      else say(`${(message.duration_ms / 1000).toFixed(1)}초 분량이 녹음되어 보관되었습니다.`);
      settle(message.broadcast_id);
      break;
    default:
      break;
  }
}

// Speakers report "played" only once the session has ended, after the last status message:
// the final count comes from the broadcast itself, followed until every speaker has answered.
async function settle(id) {
  for (let i = 0; i < 300; i += 1) {
    const broadcast = await api(`/broadcasts/${id}`).catch(() => null);
    if (broadcast) {
      const c = broadcast.speakers;
      ui.playing.textContent = String(c.playing);
      ui.played.textContent = String(c.played + (c.played_late || 0));
      if (broadcast.state === "completed" || broadcast.state === "cancelled") {
        document.querySelector("main").dataset.settled = "true";
        return;
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

function finish() {
  setTalking(false);
  ui.ptt.disabled = true;
  ui.stop.disabled = true;
  ui.start.disabled = !live.open;
  ui.setup.disabled = false;
  if (!live.ended) ui.state.textContent = "연결이 끊겼습니다";
}

function setTalking(talking) {
  live.talk(talking);
  ui.ptt.setAttribute("aria-pressed", String(talking));
  ui.ptt.textContent = talking ? "방송 중 (손을 떼면 멈춤)" : "누르고 말하기";
  if (!live.ready) return;
  ui.state.textContent = talking ? "방송 중" : "잠시 멈춤";
}

ui.ptt.addEventListener("pointerdown", (event) => {
  if (ui.ptt.disabled) return;
  event.preventDefault();
  if (ui.latch.checked && live.talking) setTalking(false);
  else setTalking(true);
});
for (const type of ["pointerup", "pointerleave", "pointercancel"]) {
  ui.ptt.addEventListener(type, () => { if (!ui.latch.checked) setTalking(false); });
}
document.addEventListener("keydown", (event) => {
  if (event.code === "Space" && !event.repeat && !ui.ptt.disabled && event.target === document.body) {
    event.preventDefault();
    setTalking(true);
  }
});
document.addEventListener("keyup", (event) => {
  if (event.code === "Space" && !ui.latch.checked) setTalking(false);
});

ui.stop.addEventListener("click", () => {
  setTalking(false);
  live.stop();
  ui.stop.disabled = true;
  ui.state.textContent = "끝내는 중";
});

if (auth) showTalk().catch(() => showLogin());
else showLogin();
