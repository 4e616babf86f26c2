// The phone page's live talk (#/live): one big button, tap to start and tap to end. Tapping twice
// is kept rather than holding down: a thumb held on glass for a whole announcement slips, and
// older heads let go when they look up to think. The microphone and the socket are
// talk-core.js's; the login is the phone page's own (phone.js), and the result is its #/sent screen.
"use strict";

function showLive() {
  screen.innerHTML = `
    ${villagePicker()}
    <p class="hint" id="live-hint">단추를 누르면 스피커에서 시작 알림음이 먼저 나갑니다.<br>
      <b>말씀하세요</b>가 나오면 말씀하시고, 다 말하면 한 번 더 누르세요.</p>
    <button class="mic live-mic" type="button" id="talk">말하기 시작</button>
    <p class="status-line live-state" id="live-state" role="status">말하기 시작을 누르세요</p>
    <div class="meter" id="live-meter" role="meter" aria-label="마이크 소리 크기" aria-valuemin="0"
      aria-valuemax="100" aria-valuenow="0" hidden><i id="live-level"></i></div>
    <p class="status-line" id="live-count" hidden></p>
    <div id="message"></div>`;
  wirePicker();
  const button = document.getElementById("talk");
  const state = document.getElementById("live-state");
  const count = document.getElementById("live-count");
  const meter = document.getElementById("live-meter");
  const level = document.getElementById("live-level");
  const message = document.getElementById("message");
  // idle -> opening -> waiting (the chime, or an earlier broadcast) -> talking -> ending
  let phase = "idle";
  const show = (next, label, line) => {
    phase = next;
    button.textContent = label;
    button.classList.toggle("on", next === "talking");
    button.disabled = next === "opening" || next === "ending";
    state.textContent = line;
    // The village stays as it is while on air.
    screen.querySelectorAll("input[name=village]").forEach((r) => { r.disabled = next !== "idle"; });
  };
  const live = new LiveTalk({
    ticket: async (body) => (await session.request("live/tickets", { method: "POST", json: body })).body,
    onLevel: (value) => {
      level.style.width = `${value}%`;
      meter.setAttribute("aria-valuenow", String(Math.round(value)));
    },
    onMessage: (m) => {
      switch (m.type) {
        case "started":
          button.dataset.broadcast = m.broadcast_id;
          show("waiting", "방송 취소", "시작 알림음이 나가고 있습니다. 잠시 기다리세요.");
          break;
        case "queued":
          show("waiting", "방송 취소", "앞선 방송이 끝나기를 기다리고 있습니다.");
          break;
        case "ready":
          show("talking", "말 끝내기", "말씀하세요");
          break;
        case "status":
          count.hidden = false;
          count.textContent = `스피커 ${m.speakers}대 중 ${m.playing}대에서 나오고 있습니다`;
          break;
        case "warning":
        case "error":
          say(message, "error", liveDetail(m.detail, "방송이 중단되었습니다."));
          break;
        case "ended":
          if (m.detail) {
            live.close();
            meter.hidden = true;
            show("idle", "말하기 시작", "방송이 끝났습니다");
            say(message, "error", liveDetail(m.detail, "방송이 중단되었습니다."));
            break;
          }
          // Speakers say "played" once the session has ended: the result screen follows the
          // broadcast until every one of them has answered.
          live.close();
          leave = () => {};
          location.replace(`#/sent/${m.broadcast_id}`);
          break;
        default:
          break;
      }
    },
    onClose: () => {
      if (live.ended) return;
      live.close();
      meter.hidden = true;
      count.hidden = true;
      show("idle", "다시 말하기", "방송이 끊겼습니다");
      if (!message.textContent) say(message, "error", "연결이 끊겨 방송이 멈췄습니다. 인터넷 연결을 확인하고 다시 누르세요.");
    },
  });
  leave = () => {
    // Leaving while on air ends the talk as said so far, and lets go of the microphone.
    if (phase !== "idle") live.stop();
    live.close();
  };
  button.addEventListener("click", async () => {
    if (phase === "waiting" || phase === "talking") {
      show("ending", "끝내는 중...", "방송을 끝내고 있습니다");
      live.stop();
      return;
    }
    if (phase !== "idle") return;
    message.textContent = "";
    show("opening", "준비 중...", "마이크를 켜고 있습니다");
    try {
      await live.openMicrophone();
    } catch (e) {
      show("idle", "말하기 시작", "마이크를 켜지 못했습니다");
      say(message, "error", microphoneProblem(e));
      return;
    }
    meter.hidden = false;
    live.talk(true);
    try {
      await live.start({ category: "village_notice", village_ids: [chosen], title: "실시간 방송" });
      show("waiting", "방송 취소", "스피커에 연결하고 있습니다");
    } catch (e) {
      live.close();
      meter.hidden = true;
      show("idle", "말하기 시작", "방송을 시작하지 못했습니다");
      say(message, "error", koreanError(e));
    }
  });
}
