// The village head's phone page: record, talk live or type, for their own villages only.
"use strict";

// The head's own phone, installed as an app: staying logged in between starts is the point.
const session = new Session("maeul.phone", window.localStorage);
const screen = document.getElementById("screen");
const barTitle = document.getElementById("bar-title");
const backButton = document.getElementById("back");
const logoutButton = document.getElementById("logout");
let me = null;
let villages = [];
let chosen = null; // the village id in use
let leave = () => {};
// Which screen is showing: one still loading when the head moved on must not draw over the next.
let screenSeq = 0;

if ("serviceWorker" in navigator) {
  navigator.serviceWorker.register("/sw.js").catch(() => {});
}

async function start() {
  session.onLogout = () => showLogin("다시 로그인해 주세요.");
  if (!session.loggedIn) return showLogin();
  try {
    me = await session.get("auth/me");
    const all = await session.all("villages");
    villages = all.filter((v) => me.village_ids.includes(v.id) || me.district_ids.includes(v.district_id));
  } catch (e) {
    return showLogin(e.status === 401 ? "" : koreanError(e));
  }
  const saved = Number(localStorage.getItem("maeul.phone.village"));
  chosen = villages.some((v) => v.id === saved) ? saved : (villages[0] || {}).id;
  logoutButton.hidden = false;
  window.onhashchange = () => { if (me) route(); };
  route();
}

function showLogin(message) {
  screenSeq += 1;
  leave();
  leave = () => {};
  me = null;
  villages = [];
  backButton.hidden = true;
  logoutButton.hidden = true;
  barTitle.textContent = "우리 마을 방송";
  screen.innerHTML = `
    <form class="login" id="login">
      <h1>이장님, 반갑습니다</h1>
      <p>아이디와 비밀번호를 넣고 <b>들어가기</b>를 누르세요.</p>
      <label class="field"><span>아이디</span><input id="username" autocomplete="username" autocapitalize="off" required></label>
      <label class="field"><span>비밀번호</span><input id="password" type="password" autocomplete="current-password" required></label>
      <div class="notice error" id="login-error" role="alert" ${message ? "" : "hidden"}>${esc(message || "")}</div>
      <button class="primary-wide" type="submit">들어가기</button>
    </form>`;
  document.getElementById("login").addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      await session.login(document.getElementById("username").value.trim(), document.getElementById("password").value);
      await start();
    } catch (err) {
      const box = document.getElementById("login-error");
      box.textContent = err.status === 401 ? "아이디나 비밀번호가 맞지 않습니다." : koreanError(err);
      box.hidden = false;
    }
  });
}

logoutButton.addEventListener("click", async () => {
  await session.logout();
  localStorage.removeItem("maeul.phone.village");
  location.hash = "";
  showLogin();
});
backButton.addEventListener("click", () => { location.hash = "#/"; });

function route() {
  leave();
  leave = () => {};
  const seq = ++screenSeq;
  const current = () => seq === screenSeq && me !== null;
  const [name, arg] = location.hash.replace(/^#\/?/, "").split("/");
  backButton.hidden = !name;
  const village = villages.find((v) => v.id === chosen);
  barTitle.textContent = village ? `${village.name} 방송` : "우리 마을 방송";
  if (!village) {
    screen.innerHTML = '<div class="notice error">맡은 마을이 없습니다. 읍·면사무소에 문의하세요.</div>';
    return;
  }
  Promise.resolve(({ record: showRecord, text: showText, sent: showSent }[name] || showHome)(arg, current))
    .catch((e) => {
      if (!current()) return;
      screen.innerHTML = `<div class="notice error" role="alert">${esc(koreanError(e))}</div>`;
    });
}

function villagePicker() {
  if (villages.length === 1) {
    const v = villages[0];
    return `<p class="place" data-village-choice="${esc(v.id)}">${esc(v.district_name)} ${esc(v.name)}</p>`;
  }
  return `<div class="villages-pick" role="radiogroup" aria-label="방송할 마을">${villages.map((v) => `
    <label data-village-choice="${esc(v.id)}"><input type="radio" name="village" value="${esc(v.id)}" ${v.id === chosen ? "checked" : ""}>${esc(v.name)}</label>`).join("")}</div>`;
}

function wirePicker() {
  screen.querySelectorAll("input[name=village]").forEach((r) => r.addEventListener("change", () => {
    chosen = Number(r.value);
    localStorage.setItem("maeul.phone.village", chosen);
    route();
  }));
}

async function showHome(_arg, current) {
  const village = villages.find((v) => v.id === chosen);
  const down = village.speaker_count - village.online_count;
  screen.innerHTML = `
    ${villagePicker()}
    <p class="muted flush">스피커 ${esc(village.speaker_count)}대${down ? ` · <b class="danger-text">꺼진 스피커 ${esc(down)}대</b>` : " 모두 켜져 있습니다"}</p>
    <nav class="big-actions">
      <a class="big record" href="#/record" id="go-record"><svg><use href="#i-mic"/></svg>
        <span>녹음해서 보내기<small>말씀을 녹음해 마을에 방송합니다</small></span></a>
      <a class="big live" href="/talk?village=${esc(village.id)}" id="go-live"><svg><use href="#i-live"/></svg>
        <span>지금 바로 말하기<small>말하는 대로 스피커에 나갑니다</small></span></a>
      <a class="big" href="#/text" id="go-text"><svg><use href="#i-text"/></svg>
        <span>글로 써서 보내기<small>쓴 글을 기계 목소리로 읽어 줍니다</small></span></a>
    </nav>
    <section class="history"><h2>지난 방송</h2><ol id="history"><li class="muted">불러오는 중...</li></ol></section>`;
  wirePicker();
  try {
    const page = await session.get("broadcasts", { limit: 10, mine: true });
    if (!current()) return;
    const list = document.getElementById("history");
    list.innerHTML = page.items.length === 0 ? '<li class="muted">아직 보낸 방송이 없습니다.</li>' :
      page.items.map((b) => `<li><a href="#/sent/${esc(b.id)}">
        <span class="t">${modeBadge(b.mode)}${esc(b.title || shorten(b.text) || "녹음 방송")}</span>
        <span class="m">${when(b.created_at)} · ${esc(WORDS.category[b.category] || b.category)} · 스피커 ${esc(b.speakers.total)}대 중 ${esc(b.speakers.played + (b.speakers.played_late || 0))}대 방송</span></a></li>`).join("");
  } catch (e) {
    if (!current()) return;
    document.getElementById("history").innerHTML =
      `<li class="notice error" role="alert">지난 방송을 불러오지 못했습니다. ${esc(koreanError(e))}</li>`;
  }
}

function shorten(text, n = 30) {
  if (!text) return "";
  return text.length > n ? text.slice(0, n) + "…" : text;
}

function kindPicker() {
  return `<div class="kind" role="radiogroup" aria-label="방송 종류">
    <label><input type="radio" name="category" value="village_notice" checked> 마을 소식</label>
    <label class="urgent"><input type="radio" name="category" value="disaster"> 긴급·재난</label></div>`;
}

async function send(data, button, messageBox) {
  data.append("category", screen.querySelector("input[name=category]:checked").value);
  data.append("village_ids", chosen);
  button.disabled = true;
  button.textContent = "보내는 중...";
  try {
    const { status, body } = await session.request("broadcasts", {
      method: "POST", body: data, headers: { "Idempotency-Key": newKey() },
    });
    if (status === 202) {
      messageBox.innerHTML = '<div class="notice ok">지금은 방송 금지 시간이라 끝나는 대로 보내도록 예약했습니다.</div>';
      button.textContent = "예약됨";
      return;
    }
    location.hash = `#/sent/${body.id}`;
  } catch (e) {
    messageBox.innerHTML = `<div class="notice error" role="alert">${esc(koreanError(e))}</div>`;
    button.disabled = false;
    button.textContent = "다시 보내기";
  }
}

function showRecord() {
  screen.innerHTML = `
    ${villagePicker()}
    <p class="hint" id="hint">빨간 단추를 누르고 말씀하세요.<br>다 말하면 한 번 더 누르세요.</p>
    <button class="mic" type="button" id="mic">녹음 시작</button>
    <div class="timer" id="timer">0:00</div>
    <div id="after" hidden>
      <audio id="playback" class="playback" controls></audio>
      ${kindPicker()}
      <button class="primary-wide" type="button" id="send">마을에 방송하기</button>
    </div>
    <div id="message" role="status"></div>`;
  wirePicker();
  const mic = document.getElementById("mic");
  const recorder = new Recorder();
  let file = null;
  let timer = null;
  leave = () => {
    clearInterval(timer);
    if (recorder.stream) recorder.stream.getTracks().forEach((t) => t.stop());
  };
  mic.addEventListener("click", async () => {
    if (mic.classList.contains("on")) {
      clearInterval(timer);
      file = await recorder.stop();
      mic.classList.remove("on");
      mic.textContent = "다시 녹음";
      document.getElementById("hint").textContent = "들어 보시고 괜찮으면 방송하기를 누르세요.";
      const playback = document.getElementById("playback");
      playback.src = URL.createObjectURL(file);
      document.getElementById("after").hidden = false;
      return;
    }
    if (!Recorder.supported) {
      document.getElementById("message").innerHTML = '<div class="notice error">이 전화기에서는 녹음할 수 없습니다. 글로 써서 보내 주세요.</div>';
      return;
    }
    try {
      await recorder.start();
    } catch {
      document.getElementById("message").innerHTML = '<div class="notice error">마이크를 쓸 수 없습니다. 마이크 사용을 허용해 주세요.</div>';
      return;
    }
    document.getElementById("after").hidden = true;
    mic.classList.add("on");
    mic.textContent = "녹음 끝";
    document.getElementById("hint").textContent = "녹음하고 있습니다. 말씀하세요.";
    timer = setInterval(() => {
      const s = Math.round((Date.now() - recorder.startedAt) / 1000);
      document.getElementById("timer").textContent = `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
    }, 250);
  });
  document.getElementById("send").addEventListener("click", (e) => {
    if (!file) return;
    const data = new FormData();
    data.append("file", file);
    send(data, e.currentTarget, document.getElementById("message"));
  });
}

function showText() {
  screen.innerHTML = `
    ${villagePicker()}
    <label class="field"><span class="big-label">방송할 말</span>
      <textarea class="message" id="message-text" maxlength="5000" placeholder="예: 내일 아침 7시에 마을회관 앞 청소를 합니다."></textarea></label>
    ${kindPicker()}
    <button class="secondary-wide" type="button" id="preview">미리 들어 보기</button>
    <audio id="preview-audio" hidden></audio>
    <button class="primary-wide" type="button" id="send">마을에 방송하기</button>
    <div id="message" role="status"></div>`;
  wirePicker();
  const box = document.getElementById("message");
  document.getElementById("preview").addEventListener("click", async () => {
    const text = document.getElementById("message-text").value.trim();
    if (!text) { box.innerHTML = '<div class="notice error">먼저 방송할 말을 써 주세요.</div>'; return; }
    try {
      const response = await session.fetch("speech/preview", { method: "POST", json: { text } });
      if (!response.ok) throw toError(response, await readBody(response));
      const audio = document.getElementById("preview-audio");
      audio.src = URL.createObjectURL(await response.blob());
      audio.play().catch(() => {});
    } catch (e) {
      box.innerHTML = `<div class="notice error" role="alert">${esc(koreanError(e))}</div>`;
    }
  });
  document.getElementById("send").addEventListener("click", (e) => {
    const text = document.getElementById("message-text").value.trim();
    if (!text) { box.innerHTML = '<div class="notice error">방송할 말을 써 주세요.</div>'; return; }
    const data = new FormData();
    data.append("text", text);
    send(data, e.currentTarget, box);
  });
}

// Up to this many villages, the page follows every speaker of a broadcast (see showSent).
const PHONE_DETAIL_VILLAGES = 20;

// What the head reads under the count, by where the broadcast stands (see progressState).
function progressLine(state, c) {
  const late = c.played_late || 0;
  const missed = c.failed + c.expired;
  switch (state) {
    case "queued": return "방송을 보내고 있습니다...";
    case "sent": return "스피커에 보냈습니다. 스피커가 받기를 기다립니다...";
    case "received": return `스피커 ${c.received}대가 받았습니다. 곧 나옵니다.`;
    case "playing": return `지금 ${c.playing + c.preempted}대에서 나오고 있습니다.`;
    case "offline": return "스피커가 모두 꺼져 있습니다. 켜지면 받습니다.";
    case "played": return "모든 스피커가 방송했습니다.";
    case "played_late": return `모든 스피커가 방송했습니다. ${late}대는 늦게 방송했습니다.`;
    case "partial": case "failed": return `끝났습니다. ${missed}대는 못 받았습니다.`;
    case "cancelled": return "방송을 멈췄습니다.";
    default: return "";
  }
}

async function showSent(id, current) {
  const controller = new AbortController();
  let alive = true;
  let detail = null;
  // How long speakers have been silent grows while nothing else changes: count it every second.
  const ticker = setInterval(() => { if (alive && detail) renderSilence(); }, 1000);
  leave = () => { alive = false; controller.abort(); clearInterval(ticker); };
  screen.innerHTML = `
    <div class="progress-big" id="progress" aria-live="polite">
      <div class="of" id="sent-title"></div>
      <div class="n" id="played-count">…</div>
      <div class="of" id="played-of"></div>
      <div class="meter"><i id="meter"></i></div>
      <p class="status-line" id="status-line">방송을 보내고 있습니다...</p>
    </div>
    <p class="notice warn" id="silence" hidden></p>
    <div id="message" role="status"></div>
    <button class="secondary-wide" type="button" id="cancel" hidden>방송 멈추기</button>
    <a class="primary-wide home-link" href="#/">처음으로</a>`;
  function renderSilence() {
    const box = document.getElementById("silence");
    const found = silence(detail);
    box.hidden = !found;
    if (found) {
      box.textContent = `스피커 ${found.speakers}대가 응답하지 않습니다 (${howLong(found.since, session.now())}). 스피커 전원을 확인해 주세요.`;
    }
  }
  const render = (s) => {
    if (s.village_deliveries) detail = s;
    const c = s.speakers;
    const late = c.played_late || 0;
    const state = progressState(s);
    document.getElementById("progress").dataset.state = state;
    document.getElementById("sent-title").textContent = s.title || shorten(s.text, 24) || "녹음 방송";
    document.getElementById("played-count").textContent = `${c.played + late}대`;
    document.getElementById("played-of").textContent =
      `스피커 ${c.total}대 중 ${c.played + late}대 방송했습니다${late ? ` (늦게 ${late}대)` : ""}`;
    document.getElementById("played-count").dataset.played = c.played + late;
    document.getElementById("played-count").dataset.total = c.total;
    document.getElementById("meter").style.width = `${c.total ? (100 * (c.played + late)) / c.total : 0}%`;
    let line = progressLine(state, c);
    if (c.offline > 0 && state !== "offline" && s.state !== "completed" && s.state !== "cancelled") {
      line += ` 꺼진 스피커 ${c.offline}대는 켜지면 받습니다.`;
    }
    document.getElementById("status-line").textContent = line;
    document.getElementById("cancel").hidden = s.state === "completed" || s.state === "cancelled";
    if (detail) renderSilence();
  };
  // The detail (every speaker) tells which speakers do not answer; a head's own broadcast
  // reaches a few villages, but a city-wide alert's detail is too much for a phone to follow.
  let summary = await session.get(`broadcasts/${id}`, { detail: false });
  if (!current()) return;
  const detailed = summary.villages.total <= PHONE_DETAIL_VILLAGES;
  if (detailed) summary = await session.get(`broadcasts/${id}`, { detail: true });
  if (!current()) return;
  render(summary);
  document.getElementById("cancel").addEventListener("click", async () => {
    try {
      const { body } = await session.request(`broadcasts/${id}/cancel`, { method: "POST" });
      render(body);
    } catch (e) {
      document.getElementById("message").innerHTML = `<div class="notice error" role="alert">${esc(koreanError(e))}</div>`;
    }
  });
  const message = document.getElementById("message");
  // The stream pushes the whole detail each time it changes: the page shows what it is sent.
  while (alive && summary.state !== "completed" && summary.state !== "cancelled") {
    try {
      await session.follow(`broadcasts/${id}/events?detail=${detailed}`, (s) => { summary = s; if (alive) render(s); }, controller.signal);
    } catch (e) {
      if (!alive) return;
      message.innerHTML = `<div class="notice error" role="alert">${esc(koreanError(e))} 다시 연결하는 중입니다...</div>`;
      await new Promise((r) => setTimeout(r, 1500));
    }
    if (!alive) return;
    try {
      summary = await session.get(`broadcasts/${id}`, { detail: detailed });
      message.textContent = "";
    } catch { /* said above; the loop tries again */ }
    render(summary);
    // Closed before the end (a proxy's timeout, a replica stopping): follow again, not in a
    // tight loop.
    if (summary.state !== "completed" && summary.state !== "cancelled") await new Promise((r) => setTimeout(r, 1000));
  }
}

start();
