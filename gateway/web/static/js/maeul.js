// Shared by every page: the API client (tokens refreshed before they lapse), words and formats.
"use strict";

const API = "/api/v1";

const WORDS = {
  category: {
    village_notice: "마을 소식",
    administrative: "행정 안내",
    crime_prevention: "범죄 예방",
    disaster: "재난 경보",
  },
  role: {
    city_admin: "시 관리자",
    district_officer: "읍·면·동 담당",
    village_head: "이장·통장",
    police_officer: "경찰",
    safety_officer: "시 안전 담당",
    auditor: "감사",
  },
  tile: {
    queued: "대기",
    sent: "보냄",
    received: "받음",
    playing: "방송 중",
    played: "방송 완료",
    played_late: "늦게 방송됨",
    partial: "일부 완료",
    failed: "실패",
    offline: "꺼짐",
    cancelled: "취소됨",
    no_speakers: "스피커 없음",
    unanswered: "응답 없음",
  },
  // Why a delivery ended without playing (the delivery's reason; "no_ack": the gateway gave up).
  reason: {
    no_ack: "응답 없음 (재시도 끝, 취소 보냄)",
    no_played_ack: "방송 끝 응답 없음",
    offline: "꺼져 있었음",
    expired: "유효 시간 지남",
    cancelled: "취소됨",
  },
  mode: {
    live: "실제 방송",
    test: "시험 방송",
    exercise: "훈련 방송",
  },
  broadcast: {
    queued: "보내는 중",
    in_progress: "진행 중",
    completed: "끝남",
    cancelled: "취소됨",
  },
  schedule: {
    active: "예약됨",
    paused: "일시 중지",
    completed: "끝남",
    cancelled: "취소됨",
  },
  // Why a schedule is paused (its paused_reason).
  paused: {
    owner_suspended: "만든 사람의 계정 정지",
    owner_removed: "만든 사람의 계정 없음",
    owner_rights_changed: "만든 사람의 방송 권한 변경",
  },
};

// What each role may send, as the gateway enforces it (gateway/scopes.py).
const ROLE_CATEGORIES = {
  city_admin: ["village_notice", "administrative", "crime_prevention", "disaster"],
  district_officer: ["village_notice", "administrative", "crime_prevention", "disaster"],
  village_head: ["village_notice", "administrative", "disaster"],
  police_officer: ["crime_prevention"],
  safety_officer: ["disaster"],
  auditor: [],
};

class ApiError extends Error {
  constructor(status, code, detail) {
    super(detail || code);
    this.status = status;
    this.code = code;
  }
  // The Korean half of the gateway's "Korean / English" message.
  get korean() {
    const text = String(this.message || "");
    return text.split(" / ")[0] || "요청을 처리하지 못했습니다.";
  }
}

const UNREACHABLE = "서버에 연결하지 못했습니다. 인터넷 연결을 확인하고 다시 해 보세요.";

// What to tell the user about any failure, in Korean: the gateway's own words when it answered,
// otherwise (no network, a fault of the page) a plain sentence rather than English or nothing.
function koreanError(error) {
  if (error instanceof ApiError) return error.korean;
  // Browsers say a lost connection in a TypeError of their own words (a stream cut midway).
  if (error instanceof TypeError && /fetch|network|load failed/i.test(String(error.message))) {
    return UNREACHABLE;
  }
  console.error(error);
  return "요청을 처리하지 못했습니다. 화면을 새로 고친 뒤 다시 해 보세요.";
}

// fetch, with "no answer at all" turned into an error that says so (an abort stays an abort).
async function reach(url, options) {
  try {
    return await fetch(url, options);
  } catch (error) {
    if (error && error.name === "AbortError") throw error;
    throw new ApiError(0, "unreachable", UNREACHABLE);
  }
}

// The tokens live in the storage the page chooses: the console keeps them per tab
// (sessionStorage: shared office PCs, closed tab = logged out), the installed phone app across
// starts (localStorage: the head's own phone). Logging out removes them either way.
class Session {
  constructor(storageKey, storage = window.sessionStorage) {
    this.key = storageKey;
    this.storage = storage;
    this.onLogout = () => {};
    this._refreshing = null;
    // The gateway's clock minus this computer's, from each answer's Date header: how long
    // speakers have been silent is counted on the gateway's clock, not a badly set office PC's.
    this.clockOffset = 0;
    this.state = this._load();
  }

  // Now, in milliseconds, on the gateway's clock.
  now() { return Date.now() + this.clockOffset; }

  _clock(response) {
    const date = Date.parse(response.headers.get("Date") || "");
    // The header has whole seconds: the middle of that second is the better guess.
    if (!Number.isNaN(date)) this.clockOffset = date + 500 - Date.now();
  }

  _load() {
    try {
      return JSON.parse(this.storage.getItem(this.key) || "null");
    } catch {
      return null;
    }
  }

  get loggedIn() { return Boolean(this.state && this.state.refresh); }

  _save(body) {
    this.state = {
      access: body.access_token,
      refresh: body.refresh_token,
      // Refresh a minute early so that a request never leaves with a lapsing token.
      expiresAt: Date.now() + Math.max(30, body.expires_in - 60) * 1000,
      role: body.role,
      username: body.username,
    };
    this.storage.setItem(this.key, JSON.stringify(this.state));
  }

  async login(username, password) {
    const form = new URLSearchParams({ username, password, grant_type: "password" });
    const response = await reach(`${API}/auth/token`, { method: "POST", body: form });
    const body = await readBody(response);
    if (!response.ok) throw toError(response, body);
    this._save(body);
  }

  async logout() {
    const refresh = this.state && this.state.refresh;
    this.state = null;
    this.storage.removeItem(this.key);
    if (refresh) {
      fetch(`${API}/auth/logout`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ refresh_token: refresh }),
      }).catch(() => {});
    }
  }

  // One refresh at a time: each refresh token works once.
  refresh() {
    if (!this._refreshing) {
      this._refreshing = (async () => {
        // Another tab of the same storage may have used the refresh token already (each works
        // once): take the newest one it saved.
        const stored = this._load();
        if (stored && stored.refresh) this.state = stored;
        if (!this.state) throw new ApiError(401, "unauthorized", "다시 로그인해 주세요.");
        const response = await reach(`${API}/auth/refresh`, {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ refresh_token: this.state.refresh }),
        });
        const body = await readBody(response);
        if (!response.ok) {
          this.state = null;
          this.storage.removeItem(this.key);
          this.onLogout();
          throw toError(response, body);
        }
        this._save(body);
      })().finally(() => { this._refreshing = null; });
    }
    return this._refreshing;
  }

  async token() {
    if (!this.state) throw new ApiError(401, "unauthorized", "다시 로그인해 주세요.");
    if (Date.now() >= this.state.expiresAt) await this.refresh();
    return this.state.access;
  }

  async fetch(path, options = {}, retried = false) {
    const headers = new Headers(options.headers || {});
    headers.set("Authorization", `Bearer ${await this.token()}`);
    let body = options.body;
    if (options.json !== undefined) {
      headers.set("Content-Type", "application/json");
      body = JSON.stringify(options.json);
    }
    const response = await reach(path.startsWith("/") ? path : `${API}/${path}`, {
      method: options.method || "GET",
      headers,
      body,
      signal: options.signal,
    });
    this._clock(response);
    if (response.status === 401 && !retried && this.state) {
      await this.refresh();
      return this.fetch(path, options, true);
    }
    return response;
  }

  async request(path, options = {}) {
    const response = await this.fetch(path, options);
    const body = await readBody(response);
    if (!response.ok) throw toError(response, body);
    return { status: response.status, body };
  }

  async get(path, query) {
    return (await this.request(withQuery(path, query))).body;
  }

  // Server-sent events through fetch, so that the token travels in a header.
  async follow(path, onEvent, signal) {
    const response = await this.fetch(path, { signal, headers: { Accept: "text/event-stream" } });
    if (!response.ok || !response.body) throw toError(response, await readBody(response));
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const chunk = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = chunk.split("\n").filter((l) => l.startsWith("data:"))
          .map((l) => l.slice(5).trim()).join("\n");
        if (data) onEvent(JSON.parse(data));
      }
    }
  }

  // Every page of a listing (the API caps page sizes).
  async all(path, query = {}, pageSize = 1000) {
    const items = [];
    for (let offset = 0; ; offset += pageSize) {
      const page = await this.get(path, { ...query, limit: pageSize, offset });
      items.push(...page.items);
      if (items.length >= page.total || page.items.length === 0) return items;
    }
  }
}

async function readBody(response) {
  const type = response.headers.get("Content-Type") || "";
  if (type.includes("application/json")) return response.json();
  return response.text();
}

function toError(response, body) {
  if (body && typeof body === "object") {
    const error = new ApiError(response.status, body.error, body.detail);
    // A refusal for now (429, 503) says in seconds when to come back.
    const seconds = Number(response.headers.get("Retry-After"));
    if (seconds > 0) error.retryAt = new Date(Date.now() + seconds * 1000);
    return error;
  }
  return new ApiError(response.status, "http_" + response.status, "서버에 연결하지 못했습니다.");
}

function withQuery(path, query) {
  if (!query) return path;
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value === undefined || value === null || value === "") continue;
    if (Array.isArray(value)) value.forEach((v) => params.append(key, v));
    else params.append(key, value);
  }
  const text = params.toString();
  return text ? `${path}?${text}` : path;
}

function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => ({
    "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;",
  })[c]);
}

const TIME = new Intl.DateTimeFormat("ko-KR", {
  timeZone: "Asia/Seoul", month: "long", day: "numeric", weekday: "short",
  hour: "numeric", minute: "2-digit",
});
const TIME_FULL = new Intl.DateTimeFormat("ko-KR", {
  timeZone: "Asia/Seoul", year: "numeric", month: "2-digit", day: "2-digit",
  hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false,
});

function when(iso) { return iso ? TIME.format(new Date(iso)) : "-"; }
function whenFull(iso) { return iso ? TIME_FULL.format(new Date(iso)) : ""; }

// Deliveries that can still change; a pre-empted one waits to play again from the start.
const OPEN_STATES = ["queued", "sent", "received", "playing", "preempted"];
const DONE_STATES = ["played", "played_late"];

// A speaker is not answering when the gateway has asked it twice without an answer: the first
// send and the ask after its ack deadline passed (the gateway's ack timeout), or, once it said
// it had the message, two asks after the message should have ended. `attempts` counts asks
// left unanswered and any answer starts it again, so this needs no clock of the page's own (one
// ask alone is not enough: a speaker busy with a long queue is asked once and answers).
const AWAITING_STATES = ["sent", "received", "playing"];
const UNANSWERED_ASKS = 2;

function isUnanswered(speaker) {
  return Boolean(speaker.online && AWAITING_STATES.includes(speaker.state)
    && (speaker.attempts || 0) >= UNANSWERED_ASKS);
}

// Since when (ms, gateway clock) a silent speaker has been awaited: since the broadcast went out
// for one that never answered, since its message should have ended for one that said it had it.
function silentSince(speaker, detail) {
  if (speaker.state === "sent") return Date.parse(detail.created_at);
  return Date.parse(speaker.updated_at) + (detail.duration_ms || 0);
}

// The speakers of a broadcast's detail that have not answered: how many, in how many villages,
// and since when (null when all answer).
function silence(detail) {
  let speakers = 0;
  let since = Infinity;
  const villages = new Set();
  for (const village of detail.village_deliveries || []) {
    for (const speaker of village.speakers || []) {
      if (!isUnanswered(speaker)) continue;
      speakers += 1;
      villages.add(village.village_id);
      since = Math.min(since, silentSince(speaker, detail));
    }
  }
  return speakers ? { speakers, villages: villages.size, since } : null;
}

// "40초째", "3분 5초째": how long, from `since` to `now` (both ms).
function howLong(since, now) {
  const s = Math.max(0, Math.floor((now - since) / 1000));
  return s < 60 ? `${s}초째` : `${Math.floor(s / 60)}분 ${s % 60}초째`;
}

// A village's tile from its speakers' delivery states.
function villageState(village) {
  const speakers = village.speakers || [];
  if (speakers.length === 0) return "no_speakers";
  const open = speakers.filter((s) => OPEN_STATES.includes(s.state));
  const played = speakers.filter((s) => s.state === "played").length;
  const late = speakers.filter((s) => s.state === "played_late").length;
  if (open.length === 0) {
    if (played + late === speakers.length) return late ? "played_late" : "played";
    if (played + late > 0) return "partial";
    if (speakers.every((s) => s.state === "cancelled")) return "cancelled";
    return "failed";
  }
  const reachable = open.filter((s) => s.online);
  if (reachable.length === 0) return "offline";
  if (reachable.every(isUnanswered)) return "unanswered";
  for (const state of ["playing", "received", "sent"]) {
    if (open.some((s) => s.state === state || (state === "playing" && s.state === "preempted"))) {
      return state;
    }
  }
  return "queued";
}

// Where a whole broadcast stands, from its summary's counts (for one line or one colour).
function progressState(summary) {
  const c = summary.speakers;
  const late = c.played_late || 0;
  const done = c.played + late;
  if (summary.state === "cancelled") return "cancelled";
  if (summary.state === "completed") {
    if (c.total > 0 && done === c.total) return late ? "played_late" : "played";
    return done > 0 ? "partial" : "failed";
  }
  if (c.playing + c.preempted > 0) return "playing";
  if (c.received > 0) return "received";
  if (c.offline > 0 && c.queued + c.sent === 0) return "offline";
  return c.sent > 0 ? "sent" : "queued";
}

// Tests and exercises are never taken for the real thing: they carry a mark wherever listed.
// A delivery's reason in words: "already_played_as:<id>" and "failed: x" keep their detail.
function reasonWords(reason) {
  if (!reason) return "";
  if (reason.startsWith("already_played_as:")) return "앞선 방송으로 이미 방송함";
  return WORDS.reason[reason] || reason;
}

function modeBadge(mode) {
  return mode && mode !== "live" ? `<span class="badge mode-${esc(mode)}">${esc(WORDS.mode[mode] || mode)}</span> ` : "";
}

// A cell that a spreadsheet would run as a formula (typed text such as "=HYPERLINK(...)" from
// any sender) is kept as text by a leading apostrophe.
function csvCell(cell) {
  let value = String(cell ?? "");
  if (typeof cell === "string" && /^[=+\-@\t\r]/.test(value)) value = "'" + value;
  return /[",\r\n]/.test(value) ? `"${value.replace(/"/g, '""')}"` : value;
}

function csvText(rows) {
  return rows.map((row) => row.map(csvCell).join(",")).join("\r\n");
}

function csvDownload(filename, rows) {
  const text = csvText(rows);
  // The byte-order mark makes spreadsheet programs read the Korean correctly.
  const blob = new Blob(["\ufeff" + text], { type: "text/csv;charset=utf-8" });
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = filename;
  link.hidden = true; // never a nameless link in the page's tab order, even for a second
  document.body.appendChild(link);
  link.click();
  setTimeout(() => { URL.revokeObjectURL(link.href); link.remove(); }, 1000);
}

function newKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
}

// A recording in the browser: MediaRecorder where it exists (Opus in WebM or Ogg, AAC in MP4).
class Recorder {
  constructor() { this.chunks = []; this.recorder = null; this.stream = null; }
  static get supported() { return Boolean(navigator.mediaDevices && window.MediaRecorder); }
  async start() {
    this.stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    this.chunks = [];
    this.recorder = new MediaRecorder(this.stream);
    this.recorder.ondataavailable = (e) => { if (e.data.size) this.chunks.push(e.data); };
    this.recorder.start();
    this.startedAt = Date.now();
  }
  stop() {
    return new Promise((resolve) => {
      this.recorder.onstop = () => {
        this.stream.getTracks().forEach((t) => t.stop());
        const type = this.recorder.mimeType || "audio/webm";
        const ext = type.includes("mp4") ? "m4a" : type.includes("ogg") ? "ogg" : "webm";
        resolve(new File(this.chunks, `recording.${ext}`, { type }));
      };
      this.recorder.stop();
    });
  }
}
