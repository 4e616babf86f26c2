// A live talk from a browser, shared by the talk page (/talk) and the phone page (/phone): the
// microphone as 16-bit PCM over the live WebSocket (the protocol is in gateway/live/messages.py).
// Each page asks for the ticket with its own login and draws its own screen.
// Every message of audio starts with when its last sample reached the page, on the gateway's
// clock (a "stamped" ticket): the page measures that clock with a few "clock" messages once the
// session started, keeping the exchange with the shortest round trip, so that speakers can
// report the latency from this microphone to their horn.
"use strict";

const LIVE_RATES = [8000, 16000, 24000, 48000];
const LIVE_CLOCK_EXCHANGES = 5;

class LiveTalk {
  // ticket(body): POST /live/tickets with the page's login, answering the ticket.
  // onLevel(0..100): the microphone's loudness; onMessage(message): what the gateway says;
  // onClose(): the socket closed (after "ended", or the connection was lost).
  constructor({ ticket, onLevel = () => {}, onMessage = () => {}, onClose = () => {} }) {
    this.ticket = ticket;
    this.onLevel = onLevel;
    this.onMessage = onMessage;
    this.onClose = onClose;
    this.context = null;
    this.stream = null;
    this.rate = 16000;
    this.socket = null;
    this.broadcastId = null;
    this.ready = false;
    this.talking = false;
    this.ended = false;
    this._pending = [];
    this._pendingLength = 0;
    this._step = 1; // input samples per output sample when the device's rate is not sendable
    this._position = 0;
    this._last = 0;
    this.offsetMs = 0; // the gateway's clock minus this one, once measured
    this._clockBest = Infinity;
    this._clockLeft = 0;
  }

  static get supported() {
    return Boolean(navigator.mediaDevices && navigator.mediaDevices.getUserMedia
      && window.AudioContext && window.AudioWorkletNode);
  }

  get open() { return this.context !== null; }

  // Opens the microphone. Call it from the tap itself: Safari on the iPhone lets sound start only
  // inside a user's gesture, so the audio context is made before anything is awaited.
  async openMicrophone() {
    if (this.context) return;
    if (!LiveTalk.supported) throw Object.assign(new Error("unsupported"), { name: "NotSupportedError" });
    let context;
    try {
      context = new AudioContext({ sampleRate: 16000 });
    } catch {
      context = new AudioContext();
    }
    this.context = context;
    const resumed = context.resume().catch(() => {});
    try {
      this.stream = await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
      });
      await resumed;
      await context.audioWorklet.addModule("/talk/pcm-worklet.js");
      const tap = new AudioWorkletNode(context, "pcm-tap");
      tap.port.onmessage = (event) => this._samples(event.data);
      context.createMediaStreamSource(this.stream).connect(tap);
      // A rate the gateway takes is sent as it is; any other (44.1 kHz on some iPhones) is
      // resampled to 16 kHz here.
      const native = context.sampleRate;
      this.rate = LIVE_RATES.includes(native) ? native : 16000;
      this._step = native / this.rate;
    } catch (error) {
      this.close();
      throw error;
    }
  }

  // Asks for a ticket and opens the session: the chime plays on the speakers first, then
  // "ready" says they wait for the voice. `target`: category, village_ids or district_ids, title.
  async start(target) {
    const ticket = await this.ticket({ ...target, format: "pcm", sample_rate: this.rate, stamped: true });
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(`${scheme}//${location.host}${ticket.url}`);
    socket.binaryType = "arraybuffer";
    socket.onmessage = (event) => this._message(JSON.parse(event.data));
    socket.onclose = () => {
      this.socket = null;
      this.ready = false;
      this.talking = false;
      this.onClose();
    };
    this.socket = socket;
    this.ended = false;
  }

  _message(message) {
    if (message.type === "clock") { this._clock(message); return; }
    if (message.type === "started") {
      this.broadcastId = message.broadcast_id;
      this._clockLeft = LIVE_CLOCK_EXCHANGES;
      this._askClock();
    }
    if (message.type === "ready") this.ready = true;
    if (message.type === "ended") this.ended = true;
    if (message.type === "ready" && this.talking) this.control("resume");
    this.onMessage(message);
  }

  // Sends the voice (true) or holds the speakers (false); before "ready" only remembered.
  talk(on) {
    if (this.talking === on) return;
    this.talking = on;
    if (this.ready) this.control(on ? "resume" : "pause");
  }

  // Ends the session: what was said has played, the speakers close the broadcast.
  stop() {
    this.talking = false;
    this.control("stop");
  }

  _askClock() {
    if (this._clockLeft <= 0 || !this.socket || this.socket.readyState !== WebSocket.OPEN) return;
    this._clockLeft -= 1;
    this.socket.send(JSON.stringify({ type: "clock", t: Date.now() }));
  }

  _clock(message) {
    const answered = Date.now();
    const roundTrip = answered - message.t;
    if (roundTrip >= 0 && roundTrip < this._clockBest) {
      this._clockBest = roundTrip;
      this.offsetMs = message.server_ms - (message.t + answered) / 2;
    }
    this._askClock();
  }

  control(type) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) {
      this.socket.send(JSON.stringify({ type }));
    }
  }

  // Lets go of the microphone (the phone's "in use" mark goes off) and of the socket.
  close() {
    if (this.stream) this.stream.getTracks().forEach((track) => track.stop());
    if (this.context) this.context.close().catch(() => {});
    this.stream = null;
    this.context = null;
    if (this.socket && this.socket.readyState <= WebSocket.OPEN) this.socket.close(1000);
  }

  _samples(input) {
    let sum = 0;
    for (let i = 0; i < input.length; i += 1) sum += input[i] * input[i];
    const dbfs = 10 * Math.log10(sum / input.length + 1e-12);
    this.onLevel(Math.max(0, Math.min(100, (dbfs + 60) * (100 / 60))));
    const samples = this._step === 1 ? input : this._resample(input);
    if (!this.ready || !this.talking || !this.socket || this.socket.readyState !== WebSocket.OPEN) return;
    this._pending.push(samples);
    this._pendingLength += samples.length;
    if (this._pendingLength < this.rate / 50) return; // 20 ms
    const message = new ArrayBuffer(8 + this._pendingLength * 2);
    new DataView(message).setBigUint64(0, BigInt(Math.round(Date.now() + this.offsetMs)));
    const pcm = new Int16Array(message, 8);
    let offset = 0;
    for (const part of this._pending) {
      for (let i = 0; i < part.length; i += 1) {
        const s = Math.max(-1, Math.min(1, part[i]));
        pcm[offset] = s < 0 ? s * 0x8000 : s * 0x7fff;
        offset += 1;
      }
    }
    this._pending = [];
    this._pendingLength = 0;
    this.socket.send(message);
  }

  // Linear interpolation across chunk boundaries (the voice band survives it well enough).
  _resample(input) {
    const out = [];
    let position = this._position;
    while (position < input.length) {
      const i = Math.floor(position);
      const before = i === 0 ? this._last : input[i - 1];
      const frac = position - i;
      out.push(before + (input[i] - before) * frac);
      position += this._step;
    }
    this._position = position - input.length;
    this._last = input[input.length - 1];
    return Float32Array.from(out);
  }
}

// Why the microphone would not open, in words a village head can act on.
function microphoneProblem(error) {
  const name = error && error.name;
  if (name === "NotAllowedError" || name === "SecurityError") {
    return "마이크 사용이 막혀 있습니다. 안드로이드(크롬): 주소창 왼쪽의 표시를 누르고 "
      + "'권한'에서 마이크를 '허용'으로 바꾸세요. 아이폰(사파리): 주소창의 '가가' 표시를 누르고 "
      + "'웹 사이트 설정'에서 마이크를 '허용'으로 바꾸세요. 그다음 단추를 다시 누르세요.";
  }
  if (name === "NotFoundError" || name === "OverconstrainedError") {
    return "마이크를 찾지 못했습니다. 이어폰을 뺐다가 다시 끼우거나, 전화기를 껐다 켠 뒤 다시 해 보세요.";
  }
  if (name === "NotReadableError" || name === "AbortError") {
    return "다른 앱이 마이크를 쓰고 있습니다. 통화나 녹음 앱을 끄고 단추를 다시 누르세요.";
  }
  if (name === "NotSupportedError") {
    return "이 화면에서는 마이크를 쓸 수 없습니다. 크롬이나 사파리를 최신으로 바꾸거나, "
      + "녹음해서 보내기를 쓰세요.";
  }
  return "마이크를 켜지 못했습니다. 단추를 다시 눌러 보세요.";
}

// The Korean half of the gateway's "한국어 / English" detail.
function liveDetail(detail, fallback) {
  return String(detail || fallback).split(" / ")[0];
}
