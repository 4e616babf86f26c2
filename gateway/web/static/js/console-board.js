// The console's live board of one broadcast, and the history of broadcasts that leads to it.
"use strict";

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
        <p class="notice info resend-of" id="board-resend-of" hidden></p>
        <p class="notice info all-clear-note" id="board-all-clear" hidden></p>
      </div>
      <div class="actions">
        <button class="btn" id="resend" type="button">놓친 곳에 다시 보내기</button>
        <span class="why" id="resend-why" hidden>놓친 스피커가 없습니다</span>
        <button class="btn danger" id="cancel" type="button">방송 취소</button>
        <button class="btn all-clear" id="all-clear" type="button" hidden>해제 방송</button>
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
    const lost = typeof v.live_frames_lost === "number" ? v.live_frames_lost : null;
    // Mouth to horn: the village's slowest speaker's p95 (its speakers' reports of a live talk).
    if (typeof v.live_mouth_p95_ms === "number") {
      notes.push(`입에서 스피커까지 p95 ${v.live_mouth_p95_ms}ms, 손실 ${lost === null ? "알 수 없음" : lost}`);
    } else {
      if (typeof v.live_latency_ms === "number") notes.push("입에서 스피커까지 알 수 없음");
      if (lost) notes.push(`끊김 ${lost}`);
    }
    return notes.length ? `<span class="note">${esc(notes.join(" · "))}</span>` : "";
  }

  function render() {
    const d = detail;
    const resendOf = d.target && d.target.resend_of;
    document.getElementById("board-title").innerHTML =
      `${modeBadge(d.mode)}${categoryBadge(d.category)} ${resendOf ? '<span class="resend-mark">다시 보낸 방송</span> ' : ""}${esc(d.title || firstWords(d.text) || "녹음 방송")}`;
    document.getElementById("board-meta").innerHTML =
      `${when(d.created_at)} · <span class="state-pill" data-broadcast-state="${esc(d.state)}">${esc(WORDS.broadcast[d.state] || d.state)}</span>${d.text ? ` · “${esc(firstWords(d.text, 80))}”` : ""}`;
    renderResendOf();
    renderAllClear();
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
      ...(s.held ? [["held", "가정 수신기 보류 (가구 설정)", s.held]] : []),
    ];
    document.getElementById("counts").innerHTML = counts.map(([k, label, n]) =>
      `<div class="c-${k}" data-count="${k}"><b>${esc(n)}</b><span>${label}</span></div>`).join("");
    document.getElementById("tiles").innerHTML = d.village_deliveries.map((v) => {
      const state = villageState(v);
      const done = v.speakers.filter((x) => DONE_STATES.includes(x.state)).length;
      return `<div class="tile" data-village="${esc(v.village_id)}" data-state="${state}" title="${esc(v.code)}">
        <span class="name">${esc(v.name || v.code)}</span>
        <span class="st">${WORDS.tile[state]}</span>${tileNotes(v)}
        <span class="spk">스피커 ${done}/${v.speakers.length}대 완료${phoned(v) ? ` · 문자 ${esc(phoned(v))}명` : ""}${v.households_confirmed ? ` · 들었어요 ${esc(v.households_confirmed)}가구` : ""}</span></div>`;
    }).join("");
    const final = d.state === "completed" || d.state === "cancelled";
    document.getElementById("cancel").disabled = final;
    // A greyed-out button says why beside it, and to a screen reader.
    const nothingMissed = s.failed + s.expired === 0;
    const resend = document.getElementById("resend");
    resend.disabled = nothingMissed;
    document.getElementById("resend-why").hidden = !nothingMissed;
    if (nothingMissed) resend.setAttribute("aria-describedby", "resend-why");
    else resend.removeAttribute("aria-describedby");
    renderSilence();
  }

  // A resend says what it repeats: the first broadcast's title and time, and a way back to it.
  function renderResendOf() {
    const box = document.getElementById("board-resend-of");
    const resendOf = detail.target && detail.target.resend_of;
    box.hidden = !resendOf;
    if (!resendOf) return;
    const first = original && original.id === resendOf ? original : null;
    const what = first ? `${when(first.created_at)}에 보낸 「${esc(first.title || firstWords(first.text) || "녹음 방송")}」` : "앞서 보낸 방송";
    box.innerHTML = `이 방송은 ${what} 방송을 놓친 스피커 ${esc(detail.speakers.total)}대에 다시 보낸 것입니다. <a href="#/board/${esc(resendOf)}">처음 방송 보기</a>`;
  }
  // An alert's all clear ("해제"): the button on a live disaster alert not yet cleared, and the
  // link between the two boards.
  function renderAllClear() {
    const d = detail;
    const box = document.getElementById("board-all-clear");
    const button = document.getElementById("all-clear");
    button.hidden = !(d.category === "disaster" && d.mode === "live" && !d.cancelled_at && !d.all_clear_of && !d.all_cleared_at);
    if (d.all_cleared_at) {
      box.innerHTML = `<span class="badge cleared">해제됨</span> ${when(d.all_cleared_at)}에 해제 방송을 보냈습니다. <a href="#/board/${esc(d.all_cleared_in)}">해제 방송 보기</a>`;
    } else if (d.all_clear_of) {
      box.innerHTML = `<span class="badge cleared">해제</span> 앞서 보낸 경보를 해제하는 방송입니다. <a href="#/board/${esc(d.all_clear_of)}">경보 보기</a>`;
    }
    box.hidden = !(d.all_cleared_at || d.all_clear_of);
  }
  let original = null;
  if (detail.target && detail.target.resend_of) {
    session.get(`broadcasts/${detail.target.resend_of}`).then((body) => {
      original = body;
      if (alive) renderResendOf();
    }).catch(() => { /* the sentence stays without the title */ });
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
    const s = detail.speakers;
    const open = s.total - s.played - (s.played_late || 0) - s.failed - s.expired - s.cancelled;
    const disaster = detail.category === "disaster";
    const yes = await askFirst({
      title: disaster ? "이 재난 경보를 취소할까요?" : "이 방송을 취소할까요?",
      body: `<p>아직 방송하지 않은 스피커 <strong>${esc(open)}대</strong>는 이 방송을 하지 않습니다. 지금 방송 중인 스피커도 바로 멈춥니다.</p>
        <p>${s.played + (s.played_late || 0) ? `이미 방송한 스피커 ${esc(s.played + (s.played_late || 0))}대의 기록은 그대로 남습니다. ` : ""}취소는 되돌릴 수 없습니다.</p>`,
      yes: disaster ? "재난 경보 취소하기" : "방송 취소하기",
    });
    if (!yes || !alive) return;
    try {
      await session.request(`broadcasts/${id}/cancel`, { method: "POST" });
      say("ok", "방송을 취소했습니다. 방송 중인 스피커도 멈춥니다.");
      await reload();
    } catch (e) { say("error", koreanError(e)); }
  });
  document.getElementById("all-clear").addEventListener("click", async () => {
    const yes = await askFirst({
      title: "이 재난 경보를 해제할까요?",
      body: `<p>이 경보가 나간 마을 <strong>${esc(detail.villages.total)}곳</strong>에 해제 방송(“${esc(clearText(detail))}”)을 보냅니다.</p>
        <p>해제 방송은 이 경보와 연결되어 기록과 주민 화면에 함께 보입니다.</p>`,
      yes: "해제 방송 보내기",
    });
    if (!yes || !alive) return;
    try {
      const { status, body } = await session.request(`broadcasts/${id}/all-clear`, {
        method: "POST", json: {}, headers: { "Idempotency-Key": newKey() },
      });
      if (status === 202) { say("ok", "해제 방송이 승인을 기다리거나 예약되었습니다."); await reload(); return; }
      location.hash = `#/board/${body.id}`;
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
      "재생 증명 서명", "실시간 지연 (ms)", "실시간 손실 프레임", "입에서 스피커까지 p50 (ms)",
      "입에서 스피커까지 p95 (ms)", "마을 스피커 방송 완료", "마을 확인한 가구", "마을 문자로 알린 주민",
      "마을 문자 도착", "마을 문자 실패", "마을 입에서 스피커까지 p95 (ms, 가장 느린 스피커)",
      "마을 실시간 손실 프레임"]];
    const signed = (p) => (!p ? "" : p.verified === true ? "검증됨" : "등록된 키 없음");
    const blank = (x) => (x === null || x === undefined ? "" : x);
    for (const v of detail.village_deliveries) {
      const phone = v.phone || { delivered: 0, failed: 0 };
      const village = [v.speakers_played || 0, v.households_confirmed || 0, phoned(v),
        phone.delivered, phone.failed, blank(v.live_mouth_p95_ms), blank(v.live_frames_lost)];
      for (const sp of v.speakers) {
        const p = sp.proof;
        rows.push([v.name, v.code, sp.code, WORDS.tile[sp.state] || sp.state, sp.sends,
          whenFull(sp.played_at), reasonWords(sp.reason), sp.reason || "", sp.resent_in || "",
          sp.resend_of || "", p ? p.audio_sha256 : "", p ? p.played_ms : "",
          p ? blank(p.level_dbfs) : "", signed(p), blank(sp.live_latency_ms),
          blank(sp.live_frames_lost), blank(sp.live_mouth_p50_ms), blank(sp.live_mouth_p95_ms),
          ...village]);
      }
      // A village with no speaker still has its line: its residents may have been told by SMS.
      if (!v.speakers.length) rows.push([v.name, v.code, ...Array(16).fill(""), ...village]);
    }
    csvDownload(`broadcast-${id}.csv`, rows);
  });
}

// What an all clear says by default (the gateway's own default text, for the confirm dialog).
function clearText(d) {
  const subject = (d.title || "").trim().replace(/경보$/, "").trim() || (WORDS.category[d.category] || "").replace(/경보$/, "").trim();
  return `${subject} 경보를 해제합니다.`;
}

// Residents a village's fallback told by SMS (queued, sent or delivered; failures not counted).
function phoned(village) {
  const p = village.phone;
  return p ? p.queued + p.sent + p.delivered : 0;
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
  // Only the newest request's answer is shown: the first page's answer arriving after a
  // search's (or an older search's after a newer one) must not replace it.
  let asked = 0;
  async function load() {
    document.getElementById("history-message").textContent = "";
    const mine = ++asked;
    const page = await session.get("broadcasts", { ...query(), limit, offset });
    if (!current() || mine !== asked) return;
    document.getElementById("history-table").innerHTML = page.items.length === 0 ?
      '<p class="muted">방송 기록이 없습니다.</p>' : `
      <table class="data"><thead><tr><th>보낸 때</th><th>종류</th><th>내용</th><th>마을</th><th>스피커 결과</th><th>상태</th></tr></thead>
      <tbody>${page.items.map((b) => `<tr class="link" data-id="${esc(b.id)}" tabindex="0">
        <td>${when(b.created_at)}</td><td>${categoryBadge(b.category)}</td>
        <td>${modeBadge(b.mode)}${esc(b.title || firstWords(b.text) || "녹음 방송")}${b.target.resend_of ? ' <span class="badge">다시 보냄</span>' : ""}${b.all_clear_of ? ' <span class="badge cleared">해제</span>' : ""}${b.all_cleared_at ? ` <span class="badge cleared">해제됨 ${when(b.all_cleared_at)}</span>` : ""}</td>
        <td class="nowrap">${esc(b.villages.total)}곳</td>
        <td><span class="nowrap">${esc(b.speakers.played + (b.speakers.played_late || 0))}/${esc(b.speakers.total)}대</span> 완료${b.speakers.played_late ? ` <span class="nowrap">(늦게 ${esc(b.speakers.played_late)})</span>` : ""}${b.speakers.failed + b.speakers.expired ? ` · <b class="danger-text nowrap">실패 ${esc(b.speakers.failed + b.speakers.expired)}</b>` : ""}</td>
        <td class="nowrap">${esc(WORDS.broadcast[b.state] || b.state)}</td></tr>`).join("")}</tbody></table>`;
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
