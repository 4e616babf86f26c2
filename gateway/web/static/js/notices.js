// Residents' notices: every notice to the village, played by its speakers or not, to read and
// hear again, in the resident's language where there is one (?lang=). No login.
"use strict";

const content = document.getElementById("content");
const villageId = Number(location.pathname.split("/")[2]) || null;
// The resident's language: ?lang= first, else the one picked here before (see pickLanguage).
const lang = new URLSearchParams(location.search).get("lang") || storedLanguage();
const PLAY = '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M7 4l13 8-13 8z" fill="currentColor"/></svg>';
const STOP = '<svg viewBox="0 0 24 24" aria-hidden="true"><rect x="6" y="6" width="12" height="12" fill="currentColor"/></svg>';

// The service worker keeps the page for offline starts and shows push notices.
if ("serviceWorker" in navigator) navigator.serviceWorker.register("/sw.js").catch(() => {});

async function getJson(path) {
  const response = await reach(`${API}/${path}`);
  const body = await readBody(response);
  if (!response.ok) throw toError(response, body);
  return body;
}

async function showVillage() {
  let data;
  try {
    data = await getJson(`notices/villages/${villageId}${lang ? `?${new URLSearchParams({ lang })}` : ""}`);
  } catch (e) {
    content.innerHTML = `<div class="notice error" role="alert">${e.status === 404 ? "없는 마을입니다." : esc(koreanError(e))}</div>
      <a href="/notices">마을 찾기</a>`;
    return;
  }
  const village = data.village;
  document.querySelector(".head").append(pickLanguage());
  document.title = `${village.name} 방송 다시 듣기`;
  document.getElementById("title").textContent = `${village.name} 방송`;
  document.getElementById("subtitle").textContent = `${village.district_name} ${village.name}에 보낸 안내 (최근 한 달)`;
  const listed = new Set(data.items.map((n) => n.id));
  // Installed from here, the app opens on this village.
  document.querySelector("link[rel=manifest]").href = `/notices/${encodeURIComponent(village.id)}/manifest.webmanifest`;
  content.innerHTML = '<section class="alerts" id="alerts" hidden></section>' + (data.items.length === 0 ? '<p class="empty">최근 한 달 동안 나간 방송이 없습니다.</p>' :
    data.items.map((n) => `
      <article class="item cat-${esc(n.category)}${n.all_clear_of ? " all-clear" : ""}" id="notice-${esc(n.id)}" data-notice="${esc(n.id)}" lang="${esc(n.language)}" data-played="${n.played}">
        <div class="meta"><span class="badge cat-${esc(n.category)}">${esc(WORDS.category[n.category] || n.category)}</span>
          ${n.all_clear_of ? '<span class="badge cleared">해제</span>' : ""}
          ${n.all_cleared_at ? `<span class="badge cleared">해제됨 <time datetime="${esc(n.all_cleared_at)}">${when(n.all_cleared_at)}</time></span>` : ""}
          <time datetime="${esc(n.played_at || n.sent_at)}">${when(n.played_at || n.sent_at)}</time></div>
        ${n.played ? "" : '<p class="unplayed">스피커로 방송되지 않았습니다</p>'}
        ${n.cancelled ? '<p class="unplayed">보낸 뒤 취소된 방송입니다</p>' : ""}
        ${n.all_clear_of && listed.has(n.all_clear_of) ? `<a class="alert-link" href="#notice-${esc(n.all_clear_of)}">해제된 경보 보기</a>` : ""}
        ${n.title ? `<h2>${esc(n.title)}</h2>` : ""}
        ${n.text ? `<p>${esc(n.text)}</p>` : (n.title ? "" : "<p>녹음 방송입니다. 들어 보세요.</p>")}
        ${n.audio_url ? `<button class="play" type="button" data-src="${esc(n.audio_url)}" aria-pressed="false">${PLAY} 다시 듣기</button>` : ""}
      </article>`).join("")) +
    '<p class="foot">이 화면에는 개인 정보가 없습니다. <a href="/notices">다른 마을 보기</a></p>';
  offerPush(document.getElementById("alerts"), village.id).catch(() => {});
  const target = location.hash && document.getElementById(decodeURIComponent(location.hash.slice(1)));
  if (target) target.scrollIntoView();
  const audio = new Audio();
  let current = null;
  const reset = () => {
    if (current) { current.setAttribute("aria-pressed", "false"); current.innerHTML = `${PLAY} 다시 듣기`; }
    current = null;
  };
  audio.addEventListener("ended", reset);
  content.addEventListener("click", (e) => {
    const button = e.target.closest("button.play");
    if (!button) return;
    const again = current === button;
    audio.pause();
    reset();
    if (again) return;
    current = button;
    audio.src = button.dataset.src;
    audio.play().then(() => {
      button.setAttribute("aria-pressed", "true");
      button.innerHTML = `${STOP} 멈추기`;
      button.dataset.playing = "true";
    }).catch(() => {
      reset();
      if (!(button.nextElementSibling && button.nextElementSibling.dataset.playError)) {
        button.insertAdjacentHTML("afterend", '<p class="notice error" role="alert" data-play-error="true">소리를 틀 수 없습니다.</p>');
      }
    });
  });
}

async function showDirectory() {
  content.innerHTML = `
    <form class="search" id="search"><input type="search" id="q" placeholder="예: 상촌" aria-label="마을 이름">
      <button class="play" type="submit">찾기</button></form>
    <div class="list" id="list"></div>`;
  const list = document.getElementById("list");
  const load = async () => {
    const q = document.getElementById("q").value.trim();
    const page = await getJson(`notices/villages?${new URLSearchParams({ q, limit: 50 })}`);
    list.innerHTML = page.items.length === 0 ? '<p class="empty">찾는 마을이 없습니다.</p>' :
      page.items.map((v) => `<a href="/notices/${esc(encodeURIComponent(v.id))}">${esc(v.name)} <span>${esc(v.district_name)}</span></a>`).join("");
  };
  const failed = (e) => { list.innerHTML = `<div class="notice error" role="alert">${esc(koreanError(e))}</div>`; };
  document.getElementById("search").addEventListener("submit", (e) => { e.preventDefault(); load().catch(failed); });
  await load();
}

// The languages a notice may be in, as the gateway's table (audio/speech/languages.py) has them.
const LANGUAGES = [["ko", "한국어"], ["en", "English"], ["vi", "Tiếng Việt"], ["zh", "中文"],
  ["th", "ไทย"], ["ne", "नेपाली"], ["uz", "Oʻzbekcha"], ["ja", "日本語"], ["ru", "Русский"],
  ["tl", "Filipino"]];

function storedLanguage() {
  try { return localStorage.getItem("maeul.lang"); } catch { return null; }
}

function pickLanguage() {
  const chosen = lang || "ko";
  const picker = document.createElement("div");
  picker.className = "lang";
  picker.innerHTML = `<label for="lang">언어 · Language</label><select id="lang">${LANGUAGES.map(([tag, name]) =>
    `<option value="${tag}" lang="${tag}"${tag === chosen ? " selected" : ""}>${esc(name)}</option>`).join("")}</select>`;
  picker.querySelector("select").addEventListener("change", (e) => {
    try { localStorage.setItem("maeul.lang", e.target.value); } catch { /* private mode: this visit only */ }
    const params = new URLSearchParams(location.search);
    params.set("lang", e.target.value);
    location.search = params.toString();
  });
  return picker;
}

(villageId ? showVillage() : showDirectory()).catch((e) => {
  content.innerHTML = `<div class="notice error" role="alert">${esc(koreanError(e))}</div>`;
});
