// The console's compose view: what to say, to which villages, of which kind and when; then send.
"use strict";

// ---------------------------------------------------------------- compose

async function showCompose(_arg, current) {
  const { districts, villages } = await loadPlaces(true);
  if (!current()) return;
  const allowed = ROLE_CATEGORIES[me.role] || [];
  const canAll = CITY_WIDE.includes(me.role);
  // Steps read left to right, 1 2 3; the send bar stays at the foot of the window, with what
  // will be sent and any problem beside the button.
  main.innerHTML = `
    <h1>방송 보내기</h1>
    <form id="compose" class="compose" novalidate>
      <section class="card step" aria-labelledby="step-1">
        <h2 id="step-1"><span class="num">1</span> 방송 내용</h2>
        <div class="tabs" role="tablist" aria-label="방송 내용을 만드는 방법">
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
      <section class="card step" aria-labelledby="step-2">
        <h2 id="step-2"><span class="num">2</span> 받을 마을</h2>
        <div class="tree-tools">
          <input type="search" id="village-search" placeholder="마을 이름 찾기" aria-label="마을 이름 찾기">
          ${canAll ? '<button type="button" class="btn small" id="select-city">시 전체</button>' : ""}
          <button type="button" class="btn small" id="select-none">모두 해제</button>
          <button type="button" class="btn" id="select-map">지도에서 고르기</button>
        </div>
        <label class="check muted">
          <input type="checkbox" id="only-offline"> 꺼진 스피커가 있는 마을만 보기</label>
        <div class="tree" id="tree">${treeHtml(districts, villages)}</div>
        <div class="area-summary" id="area-summary" hidden></div>
        <div class="selected-summary" id="selected-summary"></div>
      </section>
      <section class="card step" aria-labelledby="step-3">
        <h2 id="step-3"><span class="num">3</span> 종류와 시간</h2>
        <div class="cats" role="radiogroup" aria-label="방송 종류">
          ${allowed.map((c, i) => `<label><input type="radio" name="category" value="${esc(c)}" ${i === 0 ? "checked" : ""}>
            <span class="badge cat-${esc(c)}">${esc(WORDS.category[c])}</span></label>`).join("")}
        </div>
        <div class="modes spaced" role="radiogroup" aria-label="방송 구분">
          ${Object.entries(WORDS.mode).map(([m, label]) => `<label><input type="radio" name="mode" value="${m}" ${m === "live" ? "checked" : ""}>
            ${label}</label>`).join("")}
        </div>
        <div class="when spaced" role="radiogroup" aria-label="보낼 때">
          <label><input type="radio" name="when" value="now" checked> 지금 보내기</label>
          <label><input type="radio" name="when" value="later"> 예약해서 보내기</label>
          <div class="schedule-opts" id="schedule-opts" hidden>
            <label class="field full-row"><span>보낼 시각</span><input type="datetime-local" id="send-at"></label>
            <label class="field"><span>모두 몇 번</span><input type="number" id="repeat-count" min="1" max="100" value="1"></label>
            <label class="field"><span>몇 분마다</span><input type="number" id="repeat-every" min="1" max="1440" value="10"></label>
          </div>
        </div>
      </section>
      <div class="sendbar" id="sendbar">
        <div id="compose-message" role="status"></div>
        <div class="sendbar-row">
          <button type="submit" class="btn primary" id="send">방송 보내기</button>
          <span id="send-summary" class="send-summary"></span>
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
  let area = null; // { shape, villages } chosen on the map, sent as the form's `area`

  form.querySelectorAll("[data-tab]").forEach((button) => button.addEventListener("click", () => {
    tab = button.dataset.tab;
    form.querySelectorAll("[data-tab]").forEach((b) => b.setAttribute("aria-selected", String(b === button)));
    form.querySelectorAll("[data-pane]").forEach((p) => { p.hidden = p.dataset.pane !== tab; });
  }));

  // Spoken preview by the gateway's own voice.
  document.getElementById("preview").addEventListener("click", async () => {
    const text = document.getElementById("text").value.trim();
    if (!text) {
      return showProblem({
        message: "미리 들을 내용을 먼저 쓰세요.",
        field: document.getElementById("text"),
        holds: () => !document.getElementById("text").value.trim(),
      });
    }
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
    setArea(null);
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
    setArea(null);
    villageBoxes().forEach((b) => { b.checked = false; });
    syncDistricts();
  });
  const cityButton = document.getElementById("select-city");
  if (cityButton) cityButton.addEventListener("click", () => {
    villageBoxes().forEach((b) => { b.checked = true; });
    setArea(null);
    syncDistricts();
    allCity = true;
    summarize();
  });

  form.querySelectorAll("input[name=when]").forEach((r) => r.addEventListener("change", () => {
    document.getElementById("schedule-opts").hidden = form.querySelector("input[name=when]:checked").value !== "later";
  }));
  form.addEventListener("change", summarize);

  document.getElementById("select-map").addEventListener("click", () => openAreaMap({
    villages: [...places.byVillage.values()],
    districts: [...places.byDistrict.values()],
    own: (v) => villages.some((mine) => mine.id === v.id),
    onChoose: (shape, covered) => {
      allCity = false;
      villageBoxes().forEach((b) => { b.checked = false; });
      setArea({ shape, villages: covered });
      syncDistricts();
    },
  }));

  function setArea(chosen) {
    area = chosen;
    const box = document.getElementById("area-summary");
    box.hidden = !area;
    if (!area) return box.replaceChildren();
    box.innerHTML = `<span>지도에서 고른 지역: ${area.villages.map((v) => esc(v.name)).join(", ")}</span>
      <button type="button" class="btn small" id="area-clear">지역 지우기</button>`;
    document.getElementById("area-clear").addEventListener("click", () => { setArea(null); summarize(); });
  }

  function target() {
    if (area) {
      const ids = new Set(area.villages.map((v) => v.id));
      const speakers = villages.filter((v) => ids.has(v.id)).reduce((n, v) => n + v.speaker_count, 0);
      return { all: false, area: area.shape, districtIds: [], villageIds: [], count: ids.size, speakers };
    }
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
      `${t.all ? "시 전체, " : ""}${t.area ? "지도에서 고른 지역, " : ""}마을 ${t.count}곳 · 스피커 ${t.speakers}대`;
    document.getElementById("selected-summary").textContent = text;
    const mode = form.querySelector("input[name=mode]:checked").value;
    const rehearsal = mode === "live" ? "" : `${WORDS.mode[mode]}(실제 상황 아님)으로 `;
    document.getElementById("send-summary").textContent = t.count && category ?
      `${WORDS.category[category.value]} 방송을 ${rehearsal}${text}에 보냅니다.` : "";
    recheck();
  }

  // What stops the send now, and where to fix it (null: nothing). Checked again on every change,
  // so a problem once fixed leaves the screen instead of sitting beside a valid summary.
  function problem() {
    if (!form.querySelector("input[name=category]:checked")) {
      return { message: "보낼 수 있는 방송 종류가 없습니다.", field: null };
    }
    // In reading order: step 1 (what to say) before step 2 (who hears it).
    if (tab === "text" && !document.getElementById("text").value.trim()) {
      return { message: "방송할 말을 쓰세요.", field: document.getElementById("text") };
    }
    if (tab === "record" && !recorded) return { message: "먼저 녹음하세요.", field: recStart };
    if (tab === "file" && !document.getElementById("file").files[0]) {
      return { message: "보낼 음성 파일을 고르세요.", field: document.getElementById("file") };
    }
    if (target().count === 0) {
      return { message: "받을 마을을 하나 이상 고르세요.", field: document.getElementById("village-search") };
    }
    if (form.querySelector("input[name=when]:checked").value === "later" && !document.getElementById("send-at").value) {
      return { message: "보낼 시각을 고르세요.", field: document.getElementById("send-at") };
    }
    return null;
  }

  let shown = null; // the problem on screen, if any, and how to tell it still holds
  function recheck() {
    if (!shown) return;
    const holds = shown.holds || (() => (problem() || {}).message === shown.message);
    if (!holds()) {
      shown = null;
      document.getElementById("compose-message").innerHTML = "";
    }
  }
  form.addEventListener("input", recheck);
  form.querySelectorAll("[data-tab]").forEach((b) => b.addEventListener("click", recheck));

  function say(kind, message) {
    shown = null;
    const box = document.getElementById("compose-message");
    box.innerHTML = `<div class="notice ${kind}"${kind === "error" ? ' role="alert"' : ""}>${esc(message)}</div>`;
  }

  // The problem beside the send button, and the place to fix it brought into view.
  function showProblem(found) {
    say("error", found.message);
    shown = found;
    if (found.field) {
      found.field.scrollIntoView({ block: "center" });
      found.field.focus({ preventScroll: true });
    }
  }

  summarize();

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const found = problem();
    if (found) return showProblem(found);
    const t = target();
    const category = form.querySelector("input[name=category]:checked");
    const data = new FormData();
    data.append("category", category.value);
    const title = document.getElementById("title").value.trim();
    if (title) data.append("title", title);
    if (tab === "text") {
      data.append("text", document.getElementById("text").value.trim());
      if (document.getElementById("repeat").checked) data.append("repeat", "true");
    } else if (tab === "record") {
      data.append("file", recorded);
    } else {
      data.append("file", document.getElementById("file").files[0]);
    }
    const mode = form.querySelector("input[name=mode]:checked").value;
    if (t.area) data.append("area", JSON.stringify(t.area));
    else if (t.all) data.append("all_villages", "true");
    else {
      t.districtIds.forEach((id) => data.append("district_ids", id));
      t.villageIds.forEach((id) => data.append("village_ids", id));
    }
    const later = form.querySelector("input[name=when]:checked").value === "later";
    let path = "broadcasts";
    if (later) {
      path = "schedules";
      data.append("send_at", document.getElementById("send-at").value);
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
        say("ok", `지금은 방송 금지 시간이라 바로 보내지 않고 ${when(body.next_fire_at)}에 보내도록 예약했습니다. '예약 방송'에서 보거나 취소할 수 있습니다.`);
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
