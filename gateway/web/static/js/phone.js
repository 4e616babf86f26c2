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
    // No network is not a logout: the saved session stays, and the page says what is wrong.
    if (e.status === 0) return showOffline();
    return showLogin(e.status === 401 ? "" : koreanError(e));
  }
  window.ononline = null;
  const saved = Number(localStorage.getItem("maeul.phone.village"));
  chosen = villages.some((v) => v.id === saved) ? saved : (villages[0] || {}).id;
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

function showOffline() {
  screenSeq += 1;
  leave();
  leave = () => {};
  backButton.hidden = true;
  logoutButton.hidden = true;
  barTitle.textContent = "우리 마을 방송";
  screen.innerHTML = `
    <section class="offline" aria-labelledby="offline-title">
      <h2 id="offline-title">인터넷에 연결되어 있지 않습니다</h2>
      <p>로그인은 그대로 되어 있습니다. 전화기가 인터넷에 연결되면 이 화면이 저절로 다시 열립니다.</p>
      <p class="muted">와이파이나 모바일 데이터가 켜져 있는지 확인해 주세요.</p>
      <button class="primary-wide" type="button" id="retry">다시 해 보기</button>
    </section>`;
  document.getElementById("retry").addEventListener("click", () => start());
  window.ononline = () => start();
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
  // One button in the header at a time, so the village's name fits on a small phone.
  logoutButton.hidden = Boolean(name);
  const village = villages.find((v) => v.id === chosen);
  barTitle.textContent = village ? `${village.name} 방송` : "우리 마을 방송";
  if (!village) {
    screen.innerHTML = '<div class="notice error">맡은 마을이 없습니다. 읍·면사무소에 문의하세요.</div>';
    return;
  }
  Promise.resolve(({ record: showRecord, live: showLive, text: showText, sent: showSent }[name] || showHome)(arg, current))
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

// A message in its box, brought into view: an error below the fold is an error never read.
function say(box, kind, text) {
  box.innerHTML = `<div class="notice ${kind}" ${kind === "error" ? 'role="alert"' : ""}>${esc(text)}</div>`;
  box.scrollIntoView({ block: "center" });
}

// Asks before anything is lost, saying what; the safe answer comes first and has the focus.
function ask(question, detail, yes, no) {
  return new Promise((resolve) => {
    const dialog = document.createElement("dialog");
    dialog.className = "ask";
    dialog.setAttribute("aria-labelledby", "ask-question");
    dialog.setAttribute("aria-describedby", "ask-detail");
    dialog.innerHTML = `
      <h2 id="ask-question">${esc(question)}</h2>
      <p id="ask-detail">${esc(detail)}</p>
      <button class="secondary-wide" type="button" value="no" autofocus>${esc(no)}</button>
      <button class="primary-wide danger" type="button" value="yes">${esc(yes)}</button>`;
    screen.appendChild(dialog);
    const answer = (yes) => { dialog.close(); dialog.remove(); resolve(yes); };
    dialog.querySelectorAll("button").forEach((b) => b.addEventListener("click", () => answer(b.value === "yes")));
    dialog.addEventListener("cancel", (e) => { e.preventDefault(); answer(false); });
    dialog.showModal();
  });
}

// How the gateway names this person as a creator (see Principal.actor).
function actor() {
  return me.user_id === null ? me.name : `${me.name}#${me.user_id}`;
}

// The head's own sends still waiting to go out to the chosen village: above all those held
// until quiet hours end.
async function waitingSends() {
  const page = await session.get("schedules", { state: "active", limit: 200 });
  return page.items.filter((s) => s.created_by === actor() && s.next_fire_at
    && (s.target.all || s.target.village_ids.includes(chosen)));
}

function waitingLabel(s) {
  return s.title || shorten(s.text) || "녹음 방송";
}

async function showHome(_arg, current) {
  const village = villages.find((v) => v.id === chosen);
  const down = village.speaker_count - village.online_count;
  screen.innerHTML = `
    ${villagePicker()}
    <p class="muted flush">스피커 ${esc(village.speaker_count)}대${down ? ` · <b class="danger-text">꺼진 스피커 ${esc(down)}대</b>` : " 모두 켜져 있습니다"}</p>
    <section class="waiting" id="waiting" aria-labelledby="waiting-title" hidden>
      <h2 id="waiting-title">나갈 예정인 방송</h2>
      <ol id="waiting-list"></ol>
    </section>
    <div id="message" role="status"></div>
    <nav class="big-actions" aria-label="방송 보내기">
      <a class="big record" href="#/record" id="go-record"><svg aria-hidden="true"><use href="#i-mic"/></svg>
        <span>녹음해서 보내기<small>말씀을 녹음해 마을에 방송합니다</small></span></a>
      <a class="big live" href="#/live" id="go-live"><svg aria-hidden="true"><use href="#i-live"/></svg>
        <span>지금 바로 말하기<small>말하는 대로 스피커에 나갑니다</small></span></a>
      <a class="big" href="#/text" id="go-text"><svg aria-hidden="true"><use href="#i-text"/></svg>
        <span>글로 써서 보내기<small>쓴 글을 기계 목소리로 읽어 줍니다</small></span></a>
    </nav>
    <section class="history" aria-labelledby="history-title"><h2 id="history-title">지난 방송</h2><ol id="history"><li class="muted">불러오는 중...</li></ol></section>`;
  wirePicker();
  let waiting = [];
  try {
    waiting = await waitingSends();
    if (!current()) return;
    renderWaiting(waiting);
  } catch (e) {
    if (!current()) return;
    say(document.getElementById("message"), "error", `예약된 방송을 불러오지 못했습니다. ${koreanError(e)}`);
  }
  try {
    const page = await session.get("broadcasts", { limit: 10, mine: true });
    if (!current()) return;
    const list = document.getElementById("history");
    // Says nothing of the waiting list above: a cancel can empty it while this stays.
    const none = waiting.length ? "아직 나간 방송이 없습니다." : "아직 보낸 방송이 없습니다.";
    list.innerHTML = page.items.length === 0 ? `<li class="muted">${none}</li>` :
      page.items.map((b) => `<li><a href="#/sent/${esc(b.id)}">
        <span class="t">${modeBadge(b.mode)}${esc(b.title || shorten(b.text) || "녹음 방송")}</span>
        <span class="m">${when(b.created_at)} · ${esc(WORDS.category[b.category] || b.category)} · 스피커 ${esc(b.speakers.total)}대 중 ${esc(b.speakers.played + (b.speakers.played_late || 0))}대 방송</span></a></li>`).join("");
  } catch (e) {
    if (!current()) return;
    document.getElementById("history").innerHTML =
      `<li class="notice error" role="alert">지난 방송을 불러오지 못했습니다. ${esc(koreanError(e))}</li>`;
  }
}

function renderWaiting(waiting) {
  const section = document.getElementById("waiting");
  section.hidden = waiting.length === 0;
  document.getElementById("waiting-list").innerHTML = waiting.map((s) => `
    <li data-schedule="${esc(s.id)}">
      <span class="t">${modeBadge(s.mode)}${esc(waitingLabel(s))}</span>
      <span class="m"><b>${when(s.next_fire_at)}</b>에 나갑니다 · ${esc(WORDS.category[s.category] || s.category)}</span>
      <button class="cancel-wide" type="button" data-cancel="${esc(s.id)}">예약 취소</button>
    </li>`).join("");
  section.querySelectorAll("[data-cancel]").forEach((button) => button.addEventListener("click", async () => {
    const s = waiting.find((w) => w.id === button.dataset.cancel);
    const message = document.getElementById("message");
    const sure = await ask("이 예약 방송을 취소할까요?",
      `${when(s.next_fire_at)}에 나갈 "${waitingLabel(s)}" 방송이 나가지 않습니다. 취소한 예약은 되살릴 수 없습니다.`,
      "예약 취소하기", "그대로 두기");
    if (!sure) return;
    try {
      await session.request(`schedules/${s.id}/cancel`, { method: "POST" });
      waiting = waiting.filter((w) => w.id !== s.id);
      renderWaiting(waiting);
      say(message, "ok", `"${waitingLabel(s)}" 예약을 취소했습니다. 이 방송은 나가지 않습니다.`);
    } catch (e) {
      say(message, "error", `예약을 취소하지 못했습니다. ${koreanError(e)}`);
    }
  }));
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

// Sends what the screen holds. `key` stays the same for the same recording or text, so sending
// again after a lost answer is answered with the first send, never sent twice; `same` tells a
// waiting send of the same thing, asked about before a second one is made.
async function send(data, button, messageBox, key, same) {
  const category = screen.querySelector("input[name=category]:checked").value;
  data.append("category", category);
  data.append("village_ids", chosen);
  button.disabled = true;
  button.textContent = "보내는 중...";
  const twin = (await waitingSends().catch(() => [])).find(same);
  if (twin) {
    const again = await ask("같은 방송이 이미 예약되어 있습니다",
      `"${waitingLabel(twin)}" 방송이 ${when(twin.next_fire_at)}에 나갈 예정입니다. 또 보내면 마을에 두 번 나갑니다.`,
      "그래도 한 번 더 보내기", "보내지 않기");
    if (!again) {
      button.disabled = false;
      button.textContent = "마을에 방송하기";
      say(messageBox, "info", "보내지 않았습니다. 예약된 방송은 처음 화면에서 보고 취소할 수 있습니다.");
      return;
    }
    key = newKey();
  }
  try {
    const { status, body } = await session.request("broadcasts", {
      method: "POST", body: data, headers: { "Idempotency-Key": key },
    });
    if (status === 202) {
      button.textContent = "예약됨";
      if (body.next_fire_at) {
        say(messageBox, "ok", `지금은 방송 금지 시간입니다. ${when(body.next_fire_at)}에 나가도록 예약했습니다. `
          + "예약한 방송은 처음 화면에서 보고 취소할 수 있습니다.");
      } else {
        say(messageBox, "ok", "두 사람의 승인이 필요한 방송입니다. 승인되면 나갑니다.");
      }
      return;
    }
    location.hash = `#/sent/${body.id}`;
  } catch (e) {
    if (e.retryAt) {
      // Sending again cannot work before then: the head is offered the way home instead.
      say(messageBox, "error", `보내지 못했습니다. ${koreanError(e)} ${clock(e.retryAt)}부터 다시 보낼 수 있습니다.`);
      button.hidden = true;
      button.insertAdjacentHTML("afterend", '<a class="primary-wide home-link" href="#/">처음으로</a>');
      return;
    }
    say(messageBox, "error", `보내지 못했습니다. ${koreanError(e)}`);
    button.disabled = false;
    button.textContent = "다시 보내기";
  }
}

const CLOCK = new Intl.DateTimeFormat("ko-KR", { timeZone: "Asia/Seoul", hour: "numeric", minute: "2-digit" });

// "오후 3:42", never split across two lines.
function clock(date) { return CLOCK.format(date).replace(/\s/g, "\u00a0"); }

function showRecord() {
  screen.innerHTML = `
    ${villagePicker()}
    <p class="hint" id="hint">빨간 단추를 누르고 말씀하세요.<br>다 말하면 한 번 더 누르세요.</p>
    <button class="mic" type="button" id="mic">녹음 시작</button>
    <div class="timer" id="timer" aria-label="녹음 시간">0:00</div>
    <div id="after" hidden>
      <audio id="playback" class="playback" controls aria-label="녹음한 말씀 들어 보기"></audio>
      ${kindPicker()}
      <button class="primary-wide" type="button" id="send">마을에 방송하기</button>
    </div>
    <div id="message" role="status"></div>`;
  wirePicker();
  const mic = document.getElementById("mic");
  const recorder = new Recorder();
  let file = null;
  let seconds = 0;
  let key = null;
  let timer = null;
  leave = () => {
    clearInterval(timer);
    if (recorder.stream) recorder.stream.getTracks().forEach((t) => t.stop());
  };
  const message = document.getElementById("message");
  mic.addEventListener("click", async () => {
    if (mic.classList.contains("on")) {
      clearInterval(timer);
      seconds = Math.max(1, Math.round((Date.now() - recorder.startedAt) / 1000));
      file = await recorder.stop();
      key = newKey();
      mic.classList.remove("on");
      mic.classList.add("again");
      mic.textContent = "다시 녹음";
      document.getElementById("hint").textContent = "들어 보시고 괜찮으면 방송하기를 누르세요.";
      const playback = document.getElementById("playback");
      playback.src = URL.createObjectURL(file);
      document.getElementById("after").hidden = false;
      const send = document.getElementById("send");
      send.disabled = false;
      send.textContent = "마을에 방송하기";
      return;
    }
    if (file) {
      const long = seconds >= 60 ? `${Math.floor(seconds / 60)}분 ${seconds % 60}초` : `${seconds}초`;
      const sure = await ask("녹음을 지우고 다시 할까요?",
        `방금 녹음한 말씀(${long})이 지워집니다. 지운 녹음은 되살릴 수 없습니다.`,
        "지우고 다시 녹음", "그대로 두기");
      if (!sure) return;
    }
    if (!Recorder.supported) {
      say(message, "error", "이 전화기에서는 녹음할 수 없습니다. 글로 써서 보내 주세요.");
      return;
    }
    try {
      await recorder.start();
    } catch {
      say(message, "error", "마이크를 쓸 수 없습니다. 마이크 사용을 허용해 주세요.");
      return;
    }
    file = null;
    message.textContent = "";
    document.getElementById("playback").removeAttribute("src");
    document.getElementById("after").hidden = true;
    mic.classList.remove("again");
    mic.classList.add("on");
    mic.textContent = "녹음 끝";
    document.getElementById("hint").textContent = "녹음하고 있습니다. 말씀하세요.";
    document.getElementById("timer").textContent = "0:00";
    timer = setInterval(() => {
      const s = Math.round((Date.now() - recorder.startedAt) / 1000);
      document.getElementById("timer").textContent = `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
    }, 250);
  });
  document.getElementById("send").addEventListener("click", (e) => {
    if (!file) return;
    const data = new FormData();
    data.append("file", file);
    // A new recording is never the same as one waiting: only a retry (same key) could be.
    send(data, e.currentTarget, message, key, () => false);
  });
}

function showText() {
  screen.innerHTML = `
    ${villagePicker()}
    <label class="field"><span class="big-label">방송할 말</span>
      <textarea class="message" id="message-text" maxlength="5000" placeholder="예: 내일 아침 7시에 마을회관 앞 청소를 합니다."></textarea></label>
    <div id="text-error"></div>
    ${kindPicker()}
    <button class="secondary-wide" type="button" id="preview">미리 들어 보기</button>
    <p class="notice info playing-now" id="preview-playing" role="status" hidden>
      <span class="sound" aria-hidden="true"><i></i><i></i><i></i></span> 미리 듣기 소리가 나오고 있습니다</p>
    <audio id="preview-audio" hidden></audio>
    <button class="primary-wide" type="button" id="send">마을에 방송하기</button>
    <div id="message" role="status"></div>`;
  wirePicker();
  const box = document.getElementById("message");
  const textError = document.getElementById("text-error");
  const textarea = document.getElementById("message-text");
  const preview = document.getElementById("preview");
  const audio = document.getElementById("preview-audio");
  const sendButton = document.getElementById("send");
  let key = newKey();
  leave = () => { audio.pause(); };
  const wanted = () => textarea.value.trim();
  const missing = (first) => say(textError, "error", first ? "먼저 방송할 말을 써 주세요." : "방송할 말을 써 주세요.");
  textarea.addEventListener("input", () => {
    // The error is about the empty box: gone as soon as there is something to send.
    if (wanted()) textError.textContent = "";
    // Another text is another broadcast: a key of its own, and the button back.
    key = newKey();
    if (sendButton.textContent === "예약됨") {
      sendButton.disabled = false;
      sendButton.textContent = "마을에 방송하기";
    }
  });
  const playing = (on) => {
    document.getElementById("preview-playing").hidden = !on;
    preview.textContent = on ? "■ 듣기 멈추기" : "미리 들어 보기";
  };
  audio.addEventListener("playing", () => playing(true));
  audio.addEventListener("pause", () => playing(false));
  audio.addEventListener("ended", () => playing(false));
  preview.addEventListener("click", async () => {
    if (!audio.paused) { audio.pause(); return; }
    const text = wanted();
    if (!text) { missing(true); return; }
    preview.disabled = true;
    preview.textContent = "목소리를 만드는 중...";
    try {
      const response = await session.fetch("speech/preview", { method: "POST", json: { text } });
      if (!response.ok) throw toError(response, await readBody(response));
      audio.src = URL.createObjectURL(await response.blob());
      await audio.play().catch(() => {
        say(box, "error", "소리를 틀 수 없습니다. 전화기 소리가 켜져 있는지 확인해 주세요.");
      });
    } catch (e) {
      say(box, "error", koreanError(e));
    } finally {
      preview.disabled = false;
      playing(!audio.paused);
    }
  });
  sendButton.addEventListener("click", () => {
    const text = wanted();
    if (!text) { missing(false); return; }
    audio.pause();
    const data = new FormData();
    data.append("text", text);
    send(data, sendButton, box, key, (s) => s.source === "text" && s.text === text);
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
    const sure = await ask("방송을 멈출까요?",
      "아직 방송하지 않은 스피커에는 이 방송이 나가지 않습니다. 멈춘 방송은 다시 이어지지 않습니다.",
      "방송 멈추기", "계속 방송하기");
    if (!sure || !alive) return;
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
