// Residents signing up for notices by SMS or push: consent, number, a code by SMS. No login.
"use strict";

const form = document.getElementById("start");
const verifyForm = document.getElementById("verify");
const villageSelect = document.getElementById("village");
let consentVersion = null;
let signupId = null;

async function call(path, options) {
  const response = await reach(`${API}/${path}`, options);
  const body = await readBody(response);
  if (!response.ok) throw toError(response, body);
  return body;
}

function post(path, data) {
  return call(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(data),
  });
}

function say(id, text, kind) {
  const box = document.getElementById(id);
  box.innerHTML = text ? `<div class="notice ${kind}">${esc(text)}</div>` : "";
}

// keep-all still breaks after a closing bracket ("확인)|나"): such a word is kept on one line.
function whole(text) {
  return esc(text).replace(/[^\s]*[)\]」』][^\s]+/g, (word) => `<span class="whole">${word}</span>`);
}

async function showConsent() {
  const list = document.getElementById("consent-text");
  try {
    const consent = await call("residents/consent");
    consentVersion = consent.version;
    document.getElementById("consent-title").textContent = consent.title;
    list.innerHTML = consent.sections.map((s) => `<dt>${esc(s.heading)}</dt><dd>${whole(s.text)}</dd>`).join("");
  } catch (e) {
    list.innerHTML = `<dd class="notice error" role="alert">${esc(koreanError(e))}</dd>`;
  }
}

async function findVillages(q) {
  try {
    const page = await call(`notices/villages?${new URLSearchParams({ q, limit: "50" })}`);
    villageSelect.innerHTML = page.items.length === 0
      ? '<option value="">찾는 마을이 없습니다</option>'
      : page.items.map((v) => `<option value="${esc(v.id)}">${esc(v.district_name)} ${esc(v.name)}</option>`).join("");
  } catch (e) {
    say("start-status", koreanError(e), "error");
  }
}

document.getElementById("village-find").addEventListener("click", () => {
  findVillages(document.getElementById("village-q").value.trim());
});
document.getElementById("village-q").addEventListener("keydown", (event) => {
  if (event.key === "Enter") {
    event.preventDefault();
    findVillages(event.target.value.trim());
  }
});

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const channels = [...form.querySelectorAll("input[name=channel]:checked")].map((c) => c.value);
  const villageId = Number(villageSelect.value);
  if (!villageId) return say("start-status", "사는 마을을 골라 주세요.", "error");
  if (channels.length === 0) return say("start-status", "받는 방법을 하나 이상 골라 주세요.", "error");
  if (!document.getElementById("agree").checked) {
    return say("start-status", "개인정보 수집·이용에 동의하셔야 신청할 수 있습니다.", "error");
  }
  const button = document.getElementById("start-send");
  button.disabled = true;
  try {
    const started = await post("residents/signup", {
      village_id: villageId,
      phone: document.getElementById("phone").value,
      language: document.getElementById("language").value,
      channels,
      consent_version: consentVersion || "",
      consent: true,
    });
    signupId = started.signup_id;
    say("start-status", "", "");
    document.getElementById("sent-to").textContent = `${started.phone}(으)로 인증번호를 보냈습니다. 5분 안에 입력해 주세요.`;
    form.hidden = true;
    verifyForm.hidden = false;
    document.getElementById("code").focus();
  } catch (e) {
    say("start-status", koreanError(e), "error");
  } finally {
    button.disabled = false;
  }
});

verifyForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    const done = await post("residents/signup/verify", {
      signup_id: signupId,
      code: document.getElementById("code").value.trim(),
    });
    verifyForm.hidden = true;
    const until = new Date(done.consent_expires_at).toLocaleDateString("ko-KR");
    const box = document.getElementById("done");
    box.innerHTML = `<div class="notice ok">${done.renewed ? "동의 기간을 연장했습니다" : "신청을 마쳤습니다"}. ` +
      `${esc(done.phone)}(으)로 마을 방송을 알려 드립니다 (${esc(until)}까지).</div>`;
    box.hidden = false;
  } catch (e) {
    say("verify-status", koreanError(e), "error");
  }
});

document.getElementById("again").addEventListener("click", () => {
  signupId = null;
  verifyForm.hidden = true;
  form.hidden = false;
});

// Withdrawing: a code to the number, then everything personal is erased at once.
let leaveId = null;
document.getElementById("leave").addEventListener("submit", async (event) => {
  event.preventDefault();
  const button = document.getElementById("leave-send");
  button.disabled = true;
  try {
    const started = await post("residents/withdrawal", { phone: document.getElementById("leave-phone").value });
    leaveId = started.signup_id;
    say("leave-status", `${started.phone}(으)로 인증번호를 보냈습니다. 5분 안에 입력해 주세요.`, "info");
    document.getElementById("leave-verify").hidden = false;
    document.getElementById("leave-code").focus();
  } catch (e) {
    say("leave-status", koreanError(e), "error");
  } finally {
    button.disabled = false;
  }
});

document.getElementById("leave-verify").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    const done = await post("residents/withdrawal/verify", {
      signup_id: leaveId,
      code: document.getElementById("leave-code").value.trim(),
    });
    document.getElementById("leave-verify").hidden = true;
    say("leave-status", done.withdrawn ? "동의를 철회했습니다. 전화번호와 선택하신 내용을 모두 지웠습니다." :
      "이 번호로 신청된 내용이 없습니다.", "ok");
  } catch (e) {
    say("leave-status", koreanError(e), "error");
  }
});

const preset = new URLSearchParams(location.search).get("village");
if (preset) {
  villageSelect.innerHTML = `<option value="${esc(preset)}">선택한 마을</option>`;
}
showConsent();
