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
  const dialog = document.getElementById("confirm");
  if (dialog.open) dialog.close(); // answered "no": what it asked about is off screen
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

// ---------------------------------------------------------------- asking first

// Before anything that cannot be undone: a modal that says what will happen, with "no" focused
// (Enter on a stray key press keeps things as they are). Resolves true only for "yes".
function askFirst({ title, body, yes, no = "돌아가기" }) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-body").innerHTML = body;
  const yesButton = document.getElementById("confirm-yes");
  const noButton = document.getElementById("confirm-no");
  yesButton.textContent = yes;
  noButton.textContent = no;
  return new Promise((resolve) => {
    const done = (answer) => {
      yesButton.onclick = null;
      noButton.onclick = null;
      dialog.onclose = null;
      if (dialog.open) dialog.close();
      resolve(answer);
    };
    yesButton.onclick = () => done(true);
    noButton.onclick = () => done(false);
    dialog.onclose = () => done(false); // Escape
    dialog.showModal();
    noButton.focus();
  });
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
  document.getElementById("officer-alert-list").innerHTML = items.map((a) => `
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
    if (verb === "cancel" && !(await askFirst({
      title: "이 예약을 취소할까요?",
      body: "<p>취소하면 이 예약으로 아직 나가지 않은 방송은 모두 나가지 않습니다. 되돌릴 수 없습니다.</p>",
      yes: "예약 취소하기",
    }))) return;
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

// A speaker clock off by more than 50 ms starts its horn out of step with its neighbours.
function clockCell(s) {
  if (s.clock_offset_ms === null || s.clock_offset_ms === undefined) return "-";
  const text = `${s.clock_offset_ms > 0 ? "+" : ""}${s.clock_offset_ms} ms`;
  return s.clock_off ? `<span class="badge off">시계 어긋남</span> ${esc(text)}` : esc(text);
}

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
      <table class="data"><thead><tr><th>상태</th><th>스피커</th><th>마을</th><th>종류</th><th>마지막 연결</th><th>코덱</th><th>펌웨어</th><th>시계</th></tr></thead>
      <tbody>${page.items.map((s) => {
        const v = byVillage.get(s.village_id);
        return `<tr><td><span class="dot ${s.online ? "on" : "off"}"></span>${s.online ? "켜짐" : "<b>꺼짐</b>"}</td>
          <td>${esc(s.code)}</td><td>${esc(v ? `${v.district_name} ${v.name}` : s.village_id)}</td>
          <td>${s.kind === "loudspeaker" ? "옥외 스피커" : "가정 수신기"}</td>
          <td>${s.last_seen_at ? when(s.last_seen_at) : "-"}</td><td>${esc(s.codecs.join(", "))}</td>
          <td>${esc(s.firmware || "-")}</td><td>${clockCell(s)}</td></tr>`;
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
