// The office console: compose and send, watch every village live, history, devices, approvals.
"use strict";

const session = new Session("maeul.console", window.sessionStorage);
const main = document.getElementById("main");
const CITY_WIDE = ["city_admin", "safety_officer", "auditor"];
let me = null;
let places = null; // {districts, villages, byVillage}
let leaveView = () => {};
// Which view is on screen: a view still loading when the user moved on must not draw over the
// next one (each view checks `current()` after every wait).
let viewSeq = 0;
// Officers see village heads' disaster alerts in a banner (see pollOfficerAlerts).
const OFFICER_ROLES = ["district_officer", "safety_officer"];
const ALERT_POLL_MS = 5000;
let alertTimer = null;

// ---------------------------------------------------------------- start, login, navigation

async function start() {
  session.onLogout = () => showLogin("다시 로그인해 주세요.");
  if (!session.loggedIn) return showLogin();
  try {
    me = await session.get("auth/me");
  } catch (e) {
    return showLogin(e.status === 401 ? "" : koreanError(e));
  }
  document.getElementById("login-view").hidden = true;
  document.getElementById("app").hidden = false;
  document.getElementById("who").textContent = `${me.name} · ${WORDS.role[me.role] || me.role}`;
  document.querySelector("[data-admin]").hidden = me.role !== "city_admin";
  places = null; // another person may have used this tab before
  route();
  countApprovals();
  pollOfficerAlerts();
}

function showLogin(message) {
  viewSeq += 1;
  clearTimeout(alertTimer);
  showOfficerAlerts([]);
  leaveView();
  leaveView = () => {};
  me = null;
  places = null;
  document.getElementById("app").hidden = true;
  document.getElementById("login-view").hidden = false;
  const error = document.getElementById("login-error");
  error.hidden = !message;
  error.textContent = message || "";
  document.getElementById("username").focus();
}

document.getElementById("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const error = document.getElementById("login-error");
  error.hidden = true;
  try {
    await session.login(
      document.getElementById("username").value.trim(),
      document.getElementById("password").value,
    );
    document.getElementById("password").value = "";
    await start();
  } catch (e) {
    error.textContent = e.status === 401 ? "아이디나 비밀번호가 맞지 않습니다." : koreanError(e);
    error.hidden = false;
  }
});

window.addEventListener("hashchange", () => { if (me) route(); });

document.getElementById("logout").addEventListener("click", async () => {
  await session.logout();
  location.hash = "";
  showLogin();
});

const VIEWS = {
  compose: showCompose,
  board: showBoard,
  history: showHistory,
  schedules: showSchedules,
  devices: showDevices,
  approvals: showApprovals,
  users: showUsers,
};

function route() {
  leaveView();
  leaveView = () => {};
  const seq = ++viewSeq;
  const current = () => seq === viewSeq && me !== null;
  const [name, arg] = location.hash.replace(/^#\/?/, "").split("/");
  const view = VIEWS[name] ? name : "compose";
  document.querySelectorAll("#nav a").forEach((a) => {
    const active = a.dataset.view === view || (view === "board" && a.dataset.view === "history");
    a.classList.toggle("active", active);
    if (active) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  });
  main.innerHTML = '<p class="muted">불러오는 중...</p>';
  VIEWS[view](arg, current).catch((e) => {
    if (!current()) return;
    main.innerHTML = `<div class="notice error" role="alert">${esc(koreanError(e))}</div>`;
  });
}

async function loadPlaces(force = false) {
  if (places && !force) return places;
  const [districts, villages] = await Promise.all([
    session.all("districts"),
    session.all("villages"),
  ]);
  const mine = (v) => {
    if (CITY_WIDE.includes(me.role)) return true;
    return me.village_ids.includes(v.id) || me.district_ids.includes(v.district_id);
  };
  const visible = villages.filter(mine);
  const ids = new Set(visible.map((v) => v.district_id));
  places = {
    districts: districts.filter((d) => ids.has(d.id)),
    villages: visible,
    byVillage: new Map(villages.map((v) => [v.id, v])),
    byDistrict: new Map(districts.map((d) => [d.id, d])),
  };
  return places;
}

async function countApprovals() {
  try {
    const page = await session.get("approvals", { state: "pending", limit: 1 });
    const badge = document.getElementById("approval-count");
    badge.textContent = page.total;
    badge.hidden = page.total === 0;
  } catch { /* not every role may read them */ }
}

// ---------------------------------------------------------------- officer alerts

// A village head's disaster alert in the officer's area: a banner over every view until the
// officer presses 확인. Asked for every few seconds; the console is the channel today.
async function pollOfficerAlerts() {
  clearTimeout(alertTimer);
  if (!me || !OFFICER_ROLES.includes(me.role)) return showOfficerAlerts([]);
  const who = me;
  try {
    const page = await session.get("officer-alerts", { unacknowledged: true, limit: 20 });
    if (me === who) showOfficerAlerts(page.items);
  } catch { /* asked again at the next turn */ }
  if (me === who) alertTimer = setTimeout(pollOfficerAlerts, ALERT_POLL_MS);
}

function showOfficerAlerts(items) {
  const box = document.getElementById("officer-alerts");
  box.hidden = items.length === 0;
  box.innerHTML = items.map((a) => `
    <div class="officer-alert" data-alert="${esc(a.id)}">
      <strong>${esc(a.message)}</strong>
      <span class="at">${when(a.created_at)}</span>
      <a href="#/board/${esc(a.broadcast_id)}">방송 보기</a>
      <button class="btn" type="button" data-ack="${esc(a.id)}">확인</button>
    </div>`).join("");
}

document.getElementById("officer-alerts").addEventListener("click", async (e) => {
  const id = e.target.dataset.ack;
  if (!id) return;
  e.target.disabled = true;
  try {
    await session.request(`officer-alerts/${id}/ack`, { method: "POST" });
  } catch { /* still waiting: it stays on screen */ }
  pollOfficerAlerts();
});

// ---------------------------------------------------------------- compose

async function showCompose(_arg, current) {
  const { districts, villages } = await loadPlaces(true);
  if (!current()) return;
  const allowed = ROLE_CATEGORIES[me.role] || [];
  const canAll = CITY_WIDE.includes(me.role);
  main.innerHTML = `
    <h1>방송 보내기</h1>
    <form id="compose" class="compose" novalidate>
      <div>
        <section class="card step">
          <h2><span class="num">1</span> 방송 내용</h2>
          <div class="tabs" role="tablist">
            <button type="button" role="tab" data-tab="text" aria-selected="true">글자로 쓰기</button>
            <button type="button" role="tab" data-tab="record" aria-selected="false">녹음하기</button>
            <button type="button" role="tab" data-tab="file" aria-selected="false">파일 올리기</button>
          </div>
          <label class="field"><span>제목 (선택)</span>
            <input type="text" id="title" maxlength="200" placeholder="예: 폭염 주의 안내"></label>
          <div data-pane="text">
            <label class="field"><span>방송할 말</span>
              <textarea id="text" maxlength="5000" placeholder="스피커에서 읽어 줄 내용을 쓰세요."></textarea></label>
            <label class="check">
              <input type="checkbox" id="repeat"> 두 번 읽기</label>
            <div class="recorder">
              <button type="button" class="btn" id="preview">▶ 미리 듣기</button>
              <audio id="preview-audio" controls hidden></audio>
            </div>
          </div>
          <div data-pane="record" hidden>
            <div class="recorder">
              <button type="button" class="btn" id="rec-start">● 녹음 시작</button>
              <button type="button" class="btn danger" id="rec-stop" hidden>■ 녹음 끝</button>
              <span id="rec-status" class="muted">마이크로 말한 내용을 녹음합니다.</span>
            </div>
            <audio id="rec-audio" class="playback" controls hidden></audio>
          </div>
          <div data-pane="file" hidden>
            <label class="field"><span>음성 파일 (m4a, mp3, wav, ogg, 3gp...)</span>
              <input type="file" id="file" accept="audio/*,.m4a,.3gp,.amr"></label>
          </div>
        </section>
        <section class="card step">
          <h2><span class="num">3</span> 종류와 시간</h2>
          <div class="cats">
            ${allowed.map((c, i) => `<label><input type="radio" name="category" value="${esc(c)}" ${i === 0 ? "checked" : ""}>
              <span class="badge cat-${esc(c)}">${esc(WORDS.category[c])}</span></label>`).join("")}
          </div>
          <div class="modes spaced" role="radiogroup" aria-label="방송 구분">
            ${Object.entries(WORDS.mode).map(([m, label]) => `<label><input type="radio" name="mode" value="${m}" ${m === "live" ? "checked" : ""}>
              ${label}</label>`).join("")}
          </div>
          <div class="when spaced">
            <label><input type="radio" name="when" value="now" checked> 지금 보내기</label>
            <label><input type="radio" name="when" value="later"> 예약해서 보내기</label>
            <div class="schedule-opts" id="schedule-opts" hidden>
              <label class="field"><span>보낼 시각</span><input type="datetime-local" id="send-at"></label>
              <span></span>
              <label class="field"><span>모두 몇 번</span><input type="number" id="repeat-count" min="1" max="100" value="1"></label>
              <label class="field"><span>몇 분마다</span><input type="number" id="repeat-every" min="1" max="1440" value="10"></label>
            </div>
          </div>
        </section>
      </div>
      <section class="card step">
        <h2><span class="num">2</span> 받을 마을</h2>
        <div class="tree-tools">
          <input type="search" id="village-search" placeholder="마을 이름 찾기" aria-label="마을 이름 찾기">
          ${canAll ? '<button type="button" class="btn small" id="select-city">시 전체</button>' : ""}
          <button type="button" class="btn small" id="select-none">모두 해제</button>
        </div>
        <label class="check muted">
          <input type="checkbox" id="only-offline"> 꺼진 스피커가 있는 마을만 보기</label>
        <div class="tree" id="tree">${treeHtml(districts, villages)}</div>
        <div class="selected-summary" id="selected-summary"></div>
      </section>
      <div class="full-row">
        <div id="compose-message" role="status"></div>
        <div class="sendbar">
          <button type="submit" class="btn primary" id="send">방송 보내기</button>
          <span id="send-summary" class="muted"></span>
        </div>
      </div>
    </form>`;
  wireCompose(districts, villages);
}

function treeHtml(districts, villages) {
  return districts.map((d) => {
    const own = villages.filter((v) => v.district_id === d.id);
    const off = own.reduce((n, v) => n + (v.speaker_count - v.online_count), 0);
    return `<div class="district" data-district="${esc(d.id)}">
      <div class="row">
        <button type="button" class="toggle" aria-expanded="false" aria-label="${esc(d.name)} 펼치기">▸</button>
        <label><input type="checkbox" data-district-box="${esc(d.id)}"> ${esc(d.name)}
          <span class="speakers">마을 ${own.length}곳</span>
          ${off ? `<span class="badge off">꺼짐 ${off}대</span>` : ""}</label>
      </div>
      <div class="villages" hidden>
        ${own.map((v) => {
          const down = v.speaker_count - v.online_count;
          return `<div class="row" data-village-row="${esc(v.id)}" data-name="${esc(v.name)}" data-off="${esc(down)}">
            <label><input type="checkbox" data-village-box="${esc(v.id)}" data-of="${esc(d.id)}"> ${esc(v.name)}
              <span class="speakers">스피커 ${esc(v.speaker_count)}대</span>
              ${down ? `<span class="badge off">꺼짐 ${esc(down)}</span>` : ""}</label></div>`;
        }).join("")}
      </div></div>`;
  }).join("");
}

function wireCompose(districts, villages) {
  const form = document.getElementById("compose");
  const tree = document.getElementById("tree");
  let tab = "text";
  let recorded = null;
  let allCity = false;

  form.querySelectorAll("[data-tab]").forEach((button) => button.addEventListener("click", () => {
    tab = button.dataset.tab;
    form.querySelectorAll("[data-tab]").forEach((b) => b.setAttribute("aria-selected", String(b === button)));
    form.querySelectorAll("[data-pane]").forEach((p) => { p.hidden = p.dataset.pane !== tab; });
  }));

  // Spoken preview by the gateway's own voice.
  document.getElementById("preview").addEventListener("click", async () => {
    const text = document.getElementById("text").value.trim();
    if (!text) return say("error", "미리 들을 내용을 먼저 쓰세요.");
    const button = document.getElementById("preview");
    button.disabled = true;
    try {
      const response = await session.fetch("speech/preview", {
        method: "POST", json: { text, repeat: document.getElementById("repeat").checked },
      });
      if (!response.ok) throw toError(response, await readBody(response));
      const audio = document.getElementById("preview-audio");
      audio.src = URL.createObjectURL(await response.blob());
      audio.hidden = false;
      audio.play().catch(() => {});
    } catch (e) {
      say("error", koreanError(e));
    } finally {
      button.disabled = false;
    }
  });

  // Recording in the browser.
  const recorder = new Recorder();
  const recStart = document.getElementById("rec-start");
  const recStop = document.getElementById("rec-stop");
  const recStatus = document.getElementById("rec-status");
  let timer = null;
  recStart.addEventListener("click", async () => {
    if (!Recorder.supported) return say("error", "이 브라우저는 녹음을 지원하지 않습니다. 파일을 올려 주세요.");
    try {
      await recorder.start();
    } catch {
      return say("error", "마이크를 쓸 수 없습니다. 브라우저의 마이크 권한을 확인하세요.");
    }
    recStart.hidden = true;
    recStop.hidden = false;
    timer = setInterval(() => {
      const s = Math.round((Date.now() - recorder.startedAt) / 1000);
      recStatus.innerHTML = `<span class="rec-dot"></span> 녹음 중 ${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
    }, 250);
  });
  recStop.addEventListener("click", async () => {
    clearInterval(timer);
    recorded = await recorder.stop();
    recStop.hidden = true;
    recStart.hidden = false;
    recStart.textContent = "● 다시 녹음";
    recStatus.textContent = "녹음했습니다. 들어 보고 보내세요.";
    const audio = document.getElementById("rec-audio");
    audio.src = URL.createObjectURL(recorded);
    audio.hidden = false;
  });

  // The tree: a district's box selects all its villages.
  const villageBoxes = () => [...tree.querySelectorAll("[data-village-box]")];
  const syncDistricts = () => {
    tree.querySelectorAll("[data-district-box]").forEach((box) => {
      const own = villageBoxes().filter((b) => b.dataset.of === box.dataset.districtBox);
      const on = own.filter((b) => b.checked).length;
      box.checked = own.length > 0 && on === own.length;
      box.indeterminate = on > 0 && on < own.length;
    });
    summarize();
  };
  tree.addEventListener("change", (event) => {
    const box = event.target;
    allCity = false;
    if (box.dataset.districtBox) {
      villageBoxes().filter((b) => b.dataset.of === box.dataset.districtBox)
        .forEach((b) => { b.checked = box.checked; });
    }
    syncDistricts();
  });
  tree.addEventListener("click", (event) => {
    const toggle = event.target.closest(".toggle");
    if (!toggle) return;
    const list = toggle.closest(".district").querySelector(".villages");
    list.hidden = !list.hidden;
    toggle.textContent = list.hidden ? "▸" : "▾";
    toggle.setAttribute("aria-expanded", String(!list.hidden));
  });
  const filter = () => {
    const term = document.getElementById("village-search").value.trim();
    const offline = document.getElementById("only-offline").checked;
    tree.querySelectorAll(".district").forEach((d) => {
      let shown = 0;
      d.querySelectorAll("[data-village-row]").forEach((row) => {
        const ok = (!term || row.dataset.name.includes(term)) && (!offline || row.dataset.off !== "0");
        row.hidden = !ok;
        if (ok) shown += 1;
      });
      d.hidden = shown === 0;
      if (term || offline) {
        d.querySelector(".villages").hidden = false;
        d.querySelector(".toggle").textContent = "▾";
      }
    });
  };
  document.getElementById("village-search").addEventListener("input", filter);
  document.getElementById("only-offline").addEventListener("change", filter);
  document.getElementById("select-none").addEventListener("click", () => {
    allCity = false;
    villageBoxes().forEach((b) => { b.checked = false; });
    syncDistricts();
  });
  const cityButton = document.getElementById("select-city");
  if (cityButton) cityButton.addEventListener("click", () => {
    villageBoxes().forEach((b) => { b.checked = true; });
    syncDistricts();
    allCity = true;
    summarize();
  });

  form.querySelectorAll("input[name=when]").forEach((r) => r.addEventListener("change", () => {
    document.getElementById("schedule-opts").hidden = form.querySelector("input[name=when]:checked").value !== "later";
  }));
  form.addEventListener("change", summarize);

  function target() {
    const chosen = new Set(villageBoxes().filter((b) => b.checked).map((b) => Number(b.dataset.villageBox)));
    const districtIds = [];
    const villageIds = [];
    for (const d of districts) {
      const own = villages.filter((v) => v.district_id === d.id);
      if (own.length && own.every((v) => chosen.has(v.id))) districtIds.push(d.id);
      else own.filter((v) => chosen.has(v.id)).forEach((v) => villageIds.push(v.id));
    }
    const speakers = villages.filter((v) => chosen.has(v.id)).reduce((n, v) => n + v.speaker_count, 0);
    return { all: allCity, districtIds, villageIds, count: chosen.size, speakers };
  }

  function summarize() {
    const t = target();
    const category = form.querySelector("input[name=category]:checked");
    const text = t.count === 0 ? "받을 마을을 고르세요." :
      `${t.all ? "시 전체, " : ""}마을 ${t.count}곳 · 스피커 ${t.speakers}대`;
    document.getElementById("selected-summary").textContent = text;
    const mode = form.querySelector("input[name=mode]:checked").value;
    const rehearsal = mode === "live" ? "" : `${WORDS.mode[mode]}(실제 상황 아님)으로 `;
    document.getElementById("send-summary").textContent = t.count && category ?
      `${WORDS.category[category.value]} 방송을 ${rehearsal}${text}에 보냅니다.` : "";
  }
  summarize();

  function say(kind, message) {
    document.getElementById("compose-message").innerHTML = `<div class="notice ${kind}">${esc(message)}</div>`;
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const t = target();
    const category = form.querySelector("input[name=category]:checked");
    if (!category) return say("error", "보낼 수 있는 방송 종류가 없습니다.");
    if (t.count === 0) return say("error", "받을 마을을 하나 이상 고르세요.");
    const data = new FormData();
    data.append("category", category.value);
    const title = document.getElementById("title").value.trim();
    if (title) data.append("title", title);
    if (tab === "text") {
      const text = document.getElementById("text").value.trim();
      if (!text) return say("error", "방송할 말을 쓰세요.");
      data.append("text", text);
      if (document.getElementById("repeat").checked) data.append("repeat", "true");
    } else if (tab === "record") {
      if (!recorded) return say("error", "먼저 녹음하세요.");
      data.append("file", recorded);
    } else {
      const file = document.getElementById("file").files[0];
      if (!file) return say("error", "보낼 음성 파일을 고르세요.");
      data.append("file", file);
    }
    const mode = form.querySelector("input[name=mode]:checked").value;
    if (t.all) data.append("all_villages", "true");
    else {
      t.districtIds.forEach((id) => data.append("district_ids", id));
      t.villageIds.forEach((id) => data.append("village_ids", id));
    }
    const later = form.querySelector("input[name=when]:checked").value === "later";
    let path = "broadcasts";
    if (later) {
      const at = document.getElementById("send-at").value;
      if (!at) return say("error", "보낼 시각을 고르세요.");
      path = "schedules";
      data.append("send_at", at);
      const count = Number(document.getElementById("repeat-count").value || 1);
      if (count > 1) {
        data.append("repeat_count", count);
        data.append("repeat_every_min", Number(document.getElementById("repeat-every").value || 10));
      }
    }
    data.append("mode", mode);
    const button = document.getElementById("send");
    button.disabled = true;
    say("info", "보내는 중입니다...");
    try {
      const { status, body } = await session.request(path, {
        method: "POST", body: data, headers: { "Idempotency-Key": newKey() },
      });
      if (later) {
        say("ok", `예약했습니다. 처음 보낼 때: ${when(body.next_fire_at || body.send_at)}`);
      } else if (status === 202 && body.requested_by) {
        say("ok", "두 사람 승인이 필요한 방송입니다. 다른 담당자가 '승인 대기'에서 승인하면 나갑니다.");
        countApprovals();
      } else if (status === 202) {
        say("ok", "지금은 방송 금지 시간입니다. 금지 시간이 끝나면 보내도록 예약했습니다.");
      } else {
        location.hash = `#/board/${body.id}`;
      }
    } catch (e) {
      say("error", koreanError(e));
    } finally {
      button.disabled = false;
    }
  });
}

// ---------------------------------------------------------------- live board

async function showBoard(id, current) {
  let detail = await session.get(`broadcasts/${id}`);
  if (!current()) return;
  const controller = new AbortController();
  let alive = true;
  // How long speakers have been silent grows while nothing else changes: count it every second.
  const ticker = setInterval(() => { if (alive) renderSilence(); }, 1000);
  leaveView = () => { alive = false; controller.abort(); clearInterval(ticker); };
  main.innerHTML = `
    <div class="board-head">
      <div class="title">
        <h1 id="board-title"></h1>
        <p class="muted" id="board-meta"></p>
      </div>
      <div class="actions">
        <button class="btn" id="resend" type="button">놓친 곳에 다시 보내기</button>
        <button class="btn danger" id="cancel" type="button">방송 취소</button>
        <button class="btn" id="report" type="button">보고서 내려받기 (CSV)</button>
      </div>
    </div>
    <div id="board-message" role="status"></div>
    <div id="board-silence" class="notice warn" role="status" hidden></div>
    <div class="counts" id="counts"></div>
    <div class="legend">${["queued", "sent", "received", "playing", "played", "played_late", "partial", "failed", "offline", "unanswered"]
      .map((s) => `<span><i class="swatch" data-state="${s}"></i>${WORDS.tile[s]}</span>`).join("")}</div>
    <div class="tiles" id="tiles" aria-live="polite"></div>`;

  const say = (kind, message) => {
    document.getElementById("board-message").innerHTML = `<div class="notice ${kind}">${esc(message)}</div>`;
  };

  function renderSilence() {
    const box = document.getElementById("board-silence");
    if (!box) return;
    const found = silence(detail);
    const key = found ? `${found.villages}/${found.speakers}` : "";
    if (box.dataset.key !== key) {
      box.dataset.key = key;
      box.hidden = !found;
      // The running count of seconds is kept out of the live region, which would read it out
      // every second: the sentence is announced when the number of silent speakers changes.
      box.innerHTML = found ? `스피커 응답 없음 (${esc(found.villages)}곳, <span aria-hidden="true" id="silent-for"></span>): 스피커 ${esc(found.speakers)}대가 답하지 않습니다. 전원과 통신을 확인하세요.` : "";
    }
    if (found) document.getElementById("silent-for").textContent = howLong(found.since, session.now());
  }

  function tileNotes(v) {
    const notes = [];
    const silent = v.speakers.filter(isUnanswered).length;
    if (silent) notes.push(`응답 없음 ${silent}대`);
    if (typeof v.live_latency_ms === "number") notes.push(`지연 ${(v.live_latency_ms / 1000).toFixed(1)}초`);
    if (typeof v.live_frames_lost === "number" && v.live_frames_lost > 0) notes.push(`끊김 ${v.live_frames_lost}`);
    return notes.length ? `<span class="note">${esc(notes.join(" · "))}</span>` : "";
  }

  function render() {
    const d = detail;
    document.getElementById("board-title").innerHTML =
      `${modeBadge(d.mode)}${categoryBadge(d.category)} ${esc(d.title || firstWords(d.text) || "음성 방송")}`;
    const resendOf = d.target && d.target.resend_of;
    document.getElementById("board-meta").innerHTML =
      `${when(d.created_at)} · <span class="state-pill" data-broadcast-state="${esc(d.state)}">${esc(WORDS.broadcast[d.state] || d.state)}</span>${d.text ? ` · “${esc(firstWords(d.text, 80))}”` : ""}${
        resendOf ? ` · <a href="#/board/${esc(resendOf)}">처음 방송 보기</a>` : ""}`;
    const s = d.speakers;
    const found = silence(d);
    const counts = [
      ["total", "스피커", s.total], ["played", "방송 완료", s.played],
      ["played_late", "늦게 방송됨", s.played_late || 0],
      ["playing", "방송 중", s.playing + s.preempted], ["received", "받음", s.received],
      ["sent", "보냄", s.sent + s.queued], ["unanswered", "응답 없음", found ? found.speakers : 0],
      ["failed", "실패", s.failed + s.expired],
      ["no_ack", "응답 없어 포기", d.village_deliveries.flatMap((v) => v.speakers)
        .filter((x) => x.reason === "no_ack" || x.reason === "no_played_ack").length],
      ["offline", "꺼짐", s.offline],
    ];
    document.getElementById("counts").innerHTML = counts.map(([k, label, n]) =>
      `<div class="c-${k}" data-count="${k}"><b>${esc(n)}</b><span>${label}</span></div>`).join("");
    document.getElementById("tiles").innerHTML = d.village_deliveries.map((v) => {
      const state = villageState(v);
      const done = v.speakers.filter((x) => DONE_STATES.includes(x.state)).length;
      return `<div class="tile" data-village="${esc(v.village_id)}" data-state="${state}" title="${esc(v.code)}">
        <span class="name">${esc(v.name || v.code)}</span>
        <span class="st">${WORDS.tile[state]}</span>${tileNotes(v)}
        <span class="spk">스피커 ${done}/${v.speakers.length}대 완료</span></div>`;
    }).join("");
    const final = d.state === "completed" || d.state === "cancelled";
    document.getElementById("cancel").disabled = final;
    document.getElementById("resend").disabled = s.failed + s.expired === 0;
    renderSilence();
  }

  function show(next) {
    detail = next;
    render();
    const lost = document.querySelector("#board-message [data-reconnecting]");
    if (lost) lost.remove();
  }
  render();

  async function reload() {
    const next = await session.get(`broadcasts/${id}`);
    if (alive) show(next);
  }

  (async () => {
    // The stream pushes the whole detail each time it changes: the board draws what it is
    // sent, never a second read that a cache could answer with the state before.
    while (alive && detail.state !== "completed" && detail.state !== "cancelled") {
      try {
        await session.follow(`broadcasts/${id}/events?detail=true`, (next) => { if (alive) show(next); }, controller.signal);
      } catch (e) {
        if (!alive) return;
        say("error", `${koreanError(e)} 다시 연결하는 중입니다...`);
        document.querySelector("#board-message .notice").dataset.reconnecting = "true";
        await new Promise((r) => setTimeout(r, 1500));
      }
      if (!alive) return;
      await reload().catch(() => {});
      // Closed before the end (a proxy's timeout, a replica stopping): follow again, not in a
      // tight loop.
      if (detail.state !== "completed" && detail.state !== "cancelled") await new Promise((r) => setTimeout(r, 1000));
    }
  })();

  document.getElementById("cancel").addEventListener("click", async () => {
    try {
      await session.request(`broadcasts/${id}/cancel`, { method: "POST" });
      say("ok", "방송을 취소했습니다. 방송 중인 스피커도 멈춥니다.");
      await reload();
    } catch (e) { say("error", koreanError(e)); }
  });
  document.getElementById("resend").addEventListener("click", async () => {
    try {
      const { body } = await session.request(`broadcasts/${id}/resend`, {
        method: "POST", json: {}, headers: { "Idempotency-Key": newKey() },
      });
      location.hash = `#/board/${body.id}`;
    } catch (e) { say("error", koreanError(e)); }
  });
  document.getElementById("report").addEventListener("click", () => {
    const rows = [["마을", "마을 코드", "스피커", "상태", "시도 횟수", "재생 시각", "사유", "사유 코드",
      "다시 보낸 방송", "원래 방송", "재생한 오디오 (sha256)", "재생 시간 (ms)", "출력 레벨 (dBFS)",
      "재생 증명 서명", "실시간 지연 (ms)", "실시간 손실 프레임"]];
    const signed = (p) => (!p ? "" : p.verified === true ? "검증됨" : "등록된 키 없음");
    const blank = (x) => (x === null || x === undefined ? "" : x);
    for (const v of detail.village_deliveries) {
      for (const sp of v.speakers) {
        const p = sp.proof;
        rows.push([v.name, v.code, sp.code, WORDS.tile[sp.state] || sp.state, sp.sends,
          whenFull(sp.played_at), reasonWords(sp.reason), sp.reason || "", sp.resent_in || "",
          sp.resend_of || "", p ? p.audio_sha256 : "", p ? p.played_ms : "",
          p ? blank(p.level_dbfs) : "", signed(p), blank(sp.live_latency_ms),
          blank(sp.live_frames_lost)]);
      }
    }
    csvDownload(`broadcast-${id}.csv`, rows);
  });
}

function categoryBadge(category) {
  return `<span class="badge cat-${esc(category)}">${esc(WORDS.category[category] || category)}</span>`;
}

function firstWords(text, n = 40) {
  if (!text) return "";
  return text.length > n ? text.slice(0, n) + "…" : text;
}

// ---------------------------------------------------------------- history

async function showHistory(_arg, current) {
  main.innerHTML = `
    <h1>방송 기록</h1>
    <form class="filters" id="filters">
      <label class="field"><span>종류</span><select id="f-category"><option value="">전체</option>
        ${Object.entries(WORDS.category).map(([k, v]) => `<option value="${k}">${v}</option>`).join("")}</select></label>
      <label class="field"><span>구분</span><select id="f-mode"><option value="">전체</option>
        ${Object.entries(WORDS.mode).map(([k, v]) => `<option value="${k}">${v}</option>`).join("")}</select></label>
      <label class="field"><span>시작일</span><input type="date" id="f-since"></label>
      <label class="field"><span>종료일</span><input type="date" id="f-until"></label>
      <button class="btn primary" type="submit">찾기</button>
      <button class="btn" type="button" id="export">보고서 내려받기 (CSV)</button>
    </form>
    <div id="history-message" role="alert"></div>
    <div id="history-table"></div>
    <div class="pager"><button class="btn small" id="prev" type="button">이전</button>
      <span id="page-info" class="muted"></span><button class="btn small" id="next" type="button">다음</button></div>`;
  let offset = 0;
  const limit = 50;
  const query = () => {
    const day = (id, add) => {
      const value = document.getElementById(id).value;
      if (!value) return undefined;
      const date = new Date(`${value}T00:00:00+09:00`);
      date.setDate(date.getDate() + add);
      return date.toISOString();
    };
    return {
      category: document.getElementById("f-category").value,
      mode: document.getElementById("f-mode").value,
      since: day("f-since", 0),
      until: day("f-until", 1),
    };
  };
  const failed = (e) => {
    document.getElementById("history-message").innerHTML = `<div class="notice error">${esc(koreanError(e))}</div>`;
  };
  async function load() {
    document.getElementById("history-message").textContent = "";
    const page = await session.get("broadcasts", { ...query(), limit, offset });
    if (!current()) return;
    document.getElementById("history-table").innerHTML = page.items.length === 0 ?
      '<p class="muted">방송 기록이 없습니다.</p>' : `
      <table class="data"><thead><tr><th>보낸 때</th><th>종류</th><th>내용</th><th>마을</th><th>스피커 결과</th><th>상태</th></tr></thead>
      <tbody>${page.items.map((b) => `<tr class="link" data-id="${esc(b.id)}" tabindex="0">
        <td>${when(b.created_at)}</td><td>${categoryBadge(b.category)}</td>
        <td>${modeBadge(b.mode)}${esc(b.title || firstWords(b.text) || "음성 방송")}${b.target.resend_of ? ' <span class="badge">다시 보냄</span>' : ""}</td>
        <td>${esc(b.villages.total)}곳</td>
        <td>${esc(b.speakers.played + (b.speakers.played_late || 0))}/${esc(b.speakers.total)}대 완료${b.speakers.played_late ? ` (늦게 ${esc(b.speakers.played_late)})` : ""}${b.speakers.failed + b.speakers.expired ? ` · <b class="danger-text">실패 ${esc(b.speakers.failed + b.speakers.expired)}</b>` : ""}</td>
        <td>${esc(WORDS.broadcast[b.state] || b.state)}</td></tr>`).join("")}</tbody></table>`;
    document.getElementById("page-info").textContent =
      `전체 ${page.total}건 중 ${page.total ? offset + 1 : 0}-${offset + page.items.length}`;
    document.getElementById("prev").disabled = offset === 0;
    document.getElementById("next").disabled = offset + limit >= page.total;
  }
  document.getElementById("history-table").addEventListener("click", (e) => {
    const row = e.target.closest("tr[data-id]");
    if (row) location.hash = `#/board/${row.dataset.id}`;
  });
  document.getElementById("history-table").addEventListener("keydown", (e) => {
    const row = e.target.closest("tr[data-id]");
    if (row && e.key === "Enter") location.hash = `#/board/${row.dataset.id}`;
  });
  document.getElementById("filters").addEventListener("submit", (e) => { e.preventDefault(); offset = 0; load().catch(failed); });
  document.getElementById("prev").addEventListener("click", () => { offset = Math.max(0, offset - limit); load().catch(failed); });
  document.getElementById("next").addEventListener("click", () => { offset += limit; load().catch(failed); });
  document.getElementById("export").addEventListener("click", () => exportAll().catch(failed));
  async function exportAll() {
    const items = [];
    for (let at = 0; ; at += 200) {
      const page = await session.get("broadcasts", { ...query(), limit: 200, offset: at });
      items.push(...page.items);
      if (items.length >= page.total || page.items.length === 0) break;
    }
    csvDownload("broadcasts.csv", [
      ["방송 ID", "보낸 때", "구분", "종류", "제목", "내용", "상태", "마을 수", "마을 완료", "스피커 수",
        "방송 완료", "늦게 방송됨", "실패", "만료", "취소", "다시 보낸 원래 방송"],
      ...items.map((b) => [b.id, whenFull(b.created_at), WORDS.mode[b.mode] || b.mode, WORDS.category[b.category], b.title || "",
        b.text || "", WORDS.broadcast[b.state], b.villages.total, b.villages.played, b.speakers.total,
        b.speakers.played, b.speakers.played_late || 0, b.speakers.failed, b.speakers.expired, b.speakers.cancelled,
        b.target.resend_of || ""]),
    ]);
  }
  await load();
}

// ---------------------------------------------------------------- schedules

async function showSchedules(_arg, current) {
  const page = await session.get("schedules", { limit: 200 });
  if (!current()) return;
  const stateCell = (s) => {
    const label = `<span class="badge${s.state === "paused" ? " off" : ""}">${esc(WORDS.schedule[s.state] || s.state)}</span>`;
    const why = s.state === "paused" && s.paused_reason ?
      ` <span class="muted">${esc(WORDS.paused[s.paused_reason] || s.paused_reason)}</span>` : "";
    return label + why;
  };
  const actions = (s) => [
    s.state === "paused" ? `<button class="btn small" data-resume="${esc(s.id)}" type="button">다시 시작</button>` : "",
    ["active", "paused"].includes(s.state) ? `<button class="btn small danger" data-cancel="${esc(s.id)}" type="button">취소</button>` : "",
  ].join(" ");
  main.innerHTML = `
    <h1>예약 방송</h1>
    <p class="muted">계정이 정지된 사람의 예약은 일시 중지됩니다. 정지를 풀어도 저절로 다시 시작하지 않으니, 확인한 뒤 다시 시작하거나 취소해 주세요.</p>
    <div id="schedule-message" role="status"></div>
    <div id="schedule-table">${page.items.length === 0 ? '<p class="card">예약된 방송이 없습니다.</p>' : `
      <table class="data"><thead><tr><th>상태</th><th>종류</th><th>내용</th><th>일정</th><th>다음 방송</th><th>만든 사람</th><th></th></tr></thead>
      <tbody>${page.items.map((s) => `<tr data-schedule="${esc(s.id)}" data-state="${esc(s.state)}">
        <td>${stateCell(s)}</td><td>${categoryBadge(s.category)}</td>
        <td>${modeBadge(s.mode)}${esc(s.title || firstWords(s.text) || "음성 방송")}</td>
        <td>${esc(s.recurrence.description)}</td><td>${s.next_fire_at ? when(s.next_fire_at) : "-"}</td>
        <td>${esc(s.created_by)}</td><td>${actions(s)}</td></tr>`).join("")}</tbody></table>`}</div>`;
  document.getElementById("schedule-table").addEventListener("click", async (e) => {
    const id = e.target.dataset.resume || e.target.dataset.cancel;
    if (!id) return;
    const verb = e.target.dataset.resume ? "resume" : "cancel";
    if (verb === "cancel" && !confirm("이 예약을 취소할까요? 남은 방송이 모두 나가지 않습니다.")) return;
    try {
      await session.request(`schedules/${id}/${verb}`, { method: "POST" });
      route();
    } catch (err) {
      document.getElementById("schedule-message").innerHTML =
        `<div class="notice error" role="alert">${esc(koreanError(err))}</div>`;
    }
  });
}

// ---------------------------------------------------------------- devices

async function showDevices(_arg, current) {
  const { districts, byVillage } = await loadPlaces();
  if (!current()) return;
  main.innerHTML = `
    <h1>장비 상태</h1>
    <div class="counts" id="device-counts"></div>
    <form class="filters" id="device-filters">
      <label class="field"><span>읍·면·동</span><select id="d-district"><option value="">전체</option>
        ${districts.map((d) => `<option value="${esc(d.id)}">${esc(d.name)}</option>`).join("")}</select></label>
      <label class="field"><span>상태</span><select id="d-online"><option value="">전체</option>
        <option value="false">꺼짐만</option><option value="true">켜짐만</option></select></label>
      <button class="btn primary" type="submit">보기</button>
    </form>
    <div id="device-message" role="alert"></div>
    <div id="device-table"></div>
    <div class="pager"><button class="btn small" id="prev" type="button">이전</button>
      <span id="page-info" class="muted"></span><button class="btn small" id="next" type="button">다음</button></div>`;
  let offset = 0;
  const limit = 100;
  const scope = () => {
    const district = document.getElementById("d-district").value;
    if (district) return { district_id: district };
    if (!CITY_WIDE.includes(me.role) && districts.length === 1) return { district_id: districts[0].id };
    return {};
  };
  const failed = (e) => {
    document.getElementById("device-message").innerHTML = `<div class="notice error">${esc(koreanError(e))}</div>`;
  };
  async function load() {
    document.getElementById("device-message").textContent = "";
    const [page, online] = await Promise.all([
      session.get("speakers", { ...scope(), online: document.getElementById("d-online").value, limit, offset }),
      session.get("speakers", { ...scope(), online: "true", limit: 1 }),
    ]);
    const total = (await session.get("speakers", { ...scope(), limit: 1 })).total;
    if (!current()) return;
    document.getElementById("device-counts").innerHTML = `
      <div><b>${esc(total)}</b><span>스피커</span></div>
      <div class="c-played"><b>${esc(online.total)}</b><span>켜짐</span></div>
      <div class="c-failed"><b>${esc(total - online.total)}</b><span>꺼짐</span></div>`;
    document.getElementById("device-table").innerHTML = `
      <table class="data"><thead><tr><th>상태</th><th>스피커</th><th>마을</th><th>종류</th><th>마지막 연결</th><th>코덱</th><th>펌웨어</th></tr></thead>
      <tbody>${page.items.map((s) => {
        const v = byVillage.get(s.village_id);
        return `<tr><td><span class="dot ${s.online ? "on" : "off"}"></span>${s.online ? "켜짐" : "<b>꺼짐</b>"}</td>
          <td>${esc(s.code)}</td><td>${esc(v ? `${v.district_name} ${v.name}` : s.village_id)}</td>
          <td>${s.kind === "loudspeaker" ? "옥외 스피커" : "가정 수신기"}</td>
          <td>${s.last_seen_at ? when(s.last_seen_at) : "-"}</td><td>${esc(s.codecs.join(", "))}</td>
          <td>${esc(s.firmware || "-")}</td></tr>`;
      }).join("")}</tbody></table>`;
    document.getElementById("page-info").textContent =
      `${page.total}대 중 ${page.total ? offset + 1 : 0}-${offset + page.items.length}`;
    document.getElementById("prev").disabled = offset === 0;
    document.getElementById("next").disabled = offset + limit >= page.total;
  }
  document.getElementById("device-filters").addEventListener("submit", (e) => { e.preventDefault(); offset = 0; load().catch(failed); });
  document.getElementById("prev").addEventListener("click", () => { offset = Math.max(0, offset - limit); load().catch(failed); });
  document.getElementById("next").addEventListener("click", () => { offset += limit; load().catch(failed); });
  await load();
}

// ---------------------------------------------------------------- approvals

async function showApprovals(_arg, current) {
  const { byVillage, byDistrict } = await loadPlaces();
  const page = await session.get("approvals", { state: "pending", limit: 100 });
  if (!current()) return;
  const targetText = (t) => {
    if (t.all) return "시 전체";
    const ds = (t.district_ids || []).map((id) => (byDistrict.get(id) || {}).name || id);
    const vs = (t.village_ids || []).map((id) => (byVillage.get(id) || {}).name || id);
    return [...ds, ...vs].join(", ") || "-";
  };
  main.innerHTML = `
    <h1>승인 대기</h1>
    <p class="muted">두 사람 규칙: 여러 읍·면·동이나 시 전체에 보내는 재난 경보는 다른 담당자가 승인해야 나갑니다.</p>
    <div id="approval-message" role="status"></div>
    <div id="approval-list">${page.items.length === 0 ? '<p class="card">승인을 기다리는 방송이 없습니다.</p>' : page.items.map((a) => `
      <div class="card stacked" data-approval="${esc(a.id)}">
        <h2>${modeBadge(a.mode)}${categoryBadge(a.category)} ${esc(a.title || firstWords(a.text) || "음성 방송")}</h2>
        ${a.text ? `<p>${esc(a.text)}</p>` : ""}
        <p class="muted">요청: ${esc(a.requested_by)} · ${when(a.created_at)} · 대상: ${esc(targetText(a.target))} · 승인 기한: ${when(a.expires_at)}</p>
        <div class="listen">
          <p class="listen-title">나갈 음성 듣기 (${(a.duration_ms / 1000).toFixed(1)}초)</p>
          <audio class="playback" controls preload="none" aria-label="나갈 음성 듣기" data-audio-for="${esc(a.id)}"></audio>
          <p class="muted" data-heard="${esc(a.id)}">음성을 불러오는 중…</p>
        </div>
        ${decisionButtons(a)}
      </div>`).join("")}</div>`;
  const heard = new Map();
  page.items.forEach((a) => loadApprovalAudio(a, heard, current));
  document.getElementById("approval-list").addEventListener("click", async (e) => {
    const id = e.target.dataset.approve || e.target.dataset.reject;
    if (!id) return;
    const verb = e.target.dataset.approve ? "approve" : "reject";
    // Approving names the recording this page offered to hear: if it is not what would go out,
    // the gateway refuses (approval_audio_changed) instead of sending something nobody heard.
    const json = verb === "approve" && heard.has(id) ? { audio_sha256: heard.get(id) } : {};
    try {
      const { body } = await session.request(`approvals/${id}/${verb}`, { method: "POST", json });
      countApprovals();
      // Approving answers with the broadcast it started.
      if (verb === "approve" && body.broadcast) location.hash = `#/board/${body.broadcast.id}`;
      else route();
    } catch (err) {
      document.getElementById("approval-message").innerHTML =
        `<div class="notice error" role="alert">${esc(koreanError(err))}</div>`;
    }
  });
}

// Auditors only read; the person who asked may withdraw, never approve.
function decisionButtons(approval) {
  if (me.role === "auditor") return '<p class="muted">감사 목적의 읽기 전용입니다.</p>';
  if (me.user_id !== null && approval.requested_by.endsWith(`#${me.user_id}`)) {
    return `<div class="button-row">
      <button class="btn danger" data-reject="${esc(approval.id)}" type="button">요청 철회</button>
    </div>`;
  }
  return `<div class="button-row">
    <button class="btn primary" data-approve="${esc(approval.id)}" type="button">승인하고 보내기</button>
    <button class="btn danger" data-reject="${esc(approval.id)}" type="button">거절</button>
  </div>`;
}

// The recording that approving would send, fetched with the token (an <audio src> cannot send
// one) in a format this browser plays; its sha256 is what an approval then signs.
async function loadApprovalAudio(approval, heard, current) {
  const audio = document.querySelector(`[data-audio-for="${approval.id}"]`);
  const status = document.querySelector(`[data-heard="${approval.id}"]`);
  const codecs = approval.audio_sha256 || {};
  const opus = "opus" in codecs && audio.canPlayType('audio/ogg; codecs="opus"') !== "";
  const codec = opus ? "opus" : ("mp3" in codecs ? "mp3" : Object.keys(codecs)[0]);
  try {
    const response = await session.fetch(withQuery(approval.audio_url, { codec }));
    if (!response.ok) throw toError(response, await readBody(response));
    const blob = await response.blob();
    if (!current()) return;
    const digest = (response.headers.get("ETag") || "").replaceAll('"', "") || codecs[codec];
    audio.src = URL.createObjectURL(blob);
    heard.set(approval.id, digest);
    status.textContent = `음성 지문(SHA-256): ${digest.slice(0, 12)}… · 승인하면 이 음성이 나갑니다.`;
  } catch (err) {
    if (current()) status.textContent = `음성을 불러오지 못했습니다: ${koreanError(err)}`;
  }
}

// ---------------------------------------------------------------- users (admins)

async function showUsers(_arg, current) {
  if (me.role !== "city_admin") {
    main.innerHTML = '<div class="notice error">사용자 관리는 시 관리자만 할 수 있습니다.</div>';
    return;
  }
  const { districts, villages, byVillage, byDistrict } = await loadPlaces();
  const page = await session.get("users", { limit: 500 });
  if (!current()) return;
  const area = (u) => [
    ...u.district_ids.map((id) => (byDistrict.get(id) || {}).name || id),
    ...u.village_ids.map((id) => (byVillage.get(id) || {}).name || id),
  ].join(", ") || "시 전체";
  main.innerHTML = `
    <h1>사용자 관리</h1>
    <div id="user-message" role="status"></div>
    <table class="data"><thead><tr><th>아이디</th><th>이름</th><th>역할</th><th>담당 지역</th><th>마지막 로그인</th><th>상태</th><th></th></tr></thead>
    <tbody>${page.items.map((u) => `<tr>
      <td>${esc(u.username)}</td><td>${esc(u.display_name)}</td><td>${esc(WORDS.role[u.role] || u.role)}</td>
      <td>${esc(area(u))}</td><td>${when(u.last_login_at)}</td>
      <td>${u.suspended_at ? `<span class="badge off">정지</span> ${esc(u.suspended_reason || "")}` : '<span class="badge on">사용 중</span>'}</td>
      <td>${u.suspended_at ? `<button class="btn small" data-reinstate="${esc(u.id)}" type="button">정지 풀기</button>`
        : `<button class="btn small danger" data-suspend="${esc(u.id)}" type="button">정지</button>`}</td></tr>`).join("")}
    </tbody></table>
    <form class="card new-user" id="new-user">
      <h2>사용자 추가</h2>
      <div class="grid2">
        <label class="field"><span>아이디</span><input type="text" id="u-name" required></label>
        <label class="field"><span>이름</span><input type="text" id="u-display" required></label>
        <label class="field"><span>역할</span><select id="u-role">
          ${Object.entries(WORDS.role).map(([k, v]) => `<option value="${k}">${v}</option>`).join("")}</select></label>
        <label class="field"><span>처음 비밀번호</span><input type="password" id="u-password" autocomplete="new-password" minlength="8" required></label>
        <label class="field"><span>담당 읍·면·동</span><select id="u-districts" multiple size="5">
          ${districts.map((d) => `<option value="${esc(d.id)}">${esc(d.name)}</option>`).join("")}</select></label>
        <label class="field"><span>담당 마을 (이장·통장)</span><select id="u-villages" multiple size="5">
          ${villages.map((v) => `<option value="${esc(v.id)}">${esc(v.district_name)} ${esc(v.name)}</option>`).join("")}</select></label>
      </div>
      <button class="btn primary" type="submit">추가</button>
    </form>`;
  const say = (kind, message) => {
    document.getElementById("user-message").innerHTML = `<div class="notice ${kind}">${esc(message)}</div>`;
  };
  main.querySelector("table").addEventListener("click", async (e) => {
    try {
      if (e.target.dataset.suspend) {
        const reason = prompt("정지하면 이 사람의 예약 방송은 일시 중지되고 진행 중인 실시간 방송은 바로 끝납니다. 정지하는 까닭을 적어 주세요.");
        if (!reason) return;
        await session.request(`users/${e.target.dataset.suspend}/suspend`, { method: "POST", json: { reason } });
        route();
      } else if (e.target.dataset.reinstate) {
        await session.request(`users/${e.target.dataset.reinstate}/reinstate`, { method: "POST" });
        route();
      }
    } catch (err) { say("error", koreanError(err)); }
  });
  document.getElementById("new-user").addEventListener("submit", async (e) => {
    e.preventDefault();
    const picked = (id) => [...document.getElementById(id).selectedOptions].map((o) => Number(o.value));
    try {
      await session.request("users", {
        method: "POST",
        json: {
          username: document.getElementById("u-name").value.trim(),
          display_name: document.getElementById("u-display").value.trim(),
          role: document.getElementById("u-role").value,
          password: document.getElementById("u-password").value,
          district_ids: picked("u-districts"),
          village_ids: picked("u-villages"),
        },
      });
      route();
    } catch (err) { say("error", koreanError(err)); }
  });
}

start();
